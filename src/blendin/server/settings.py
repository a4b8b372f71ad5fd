"""The server's own settings (the decoding ones are the ``BlendConfig``); light to import for the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


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


def bindable(host: str, port: int) -> int:
    """The port ``serve`` will listen on, checked by binding it once (and letting go): a port in use
    or a host that is not this machine's fails here, in one line, before minutes of model loading."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
            return s.getsockname()[1]
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
                          "(0 takes a free one) or a --host of this machine (127.0.0.1, 0.0.0.0)") from None
