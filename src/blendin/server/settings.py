"""The server's own settings (the decoding ones are the ``BlendConfig``); light to import for the CLI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """How the server is reached and bounded (``blendin serve --help`` has each flag)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str = "blendin"
    batch_size: int = 16
    max_tokens_cap: int = 1024
    max_prompt_tokens: int = 4096
    max_request_bytes: int = 1 << 20
    max_queue: int = 256
    profile_update: bool = False  # at shutdown, write each guide's record across answers into the --profile file
    drain_seconds: float = 30.0  # on SIGTERM / Ctrl-C: how long the rows in flight may take to finish before they are cancelled
