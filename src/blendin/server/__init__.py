"""An OpenAI-compatible server over the batched engine (``blendin serve``).

    protocol.py   request models and the OpenAI error shape
    engine.py     the decoding thread: requests join the running batch between rounds
    service.py    requests -> rows (config, rendered prompts, limits); results -> response bodies
    app.py        FastAPI routes, authentication, size limits, streaming

    with ServerThread(build(pair, BlendConfig(), ServeSettings(port=0))) as url:   # tests, benchmarks
        ...  # url = "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import threading
import time

from ..config import BlendConfig
from .settings import ServeSettings


def build(pair, config: BlendConfig, settings: ServeSettings):
    """The app and its engine for an already loaded pair."""
    _require_web()
    from .app import build_app
    from .engine import Engine
    from .service import Service

    engine = Engine(pair, batch_size=settings.batch_size, max_queue=settings.max_queue)
    app = build_app(Service(pair, config, settings), engine)
    app.state.engine = engine
    return app


def serve(config: BlendConfig, settings: ServeSettings) -> None:
    """Load the pair (both models: a request may ask for any method) and serve until interrupted."""
    from ..config import METHODS
    from ..pair import load_pair

    _require_web()  # before minutes of model loading
    pair = load_pair(config, METHODS)
    app = build(pair, config, settings)
    import uvicorn

    print(f"blendin: serving '{settings.model_name}' ({config.base} + {config.guide}, {config.method}) "
          f"at http://{settings.host}:{settings.port}/v1", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    app.state.engine.stop()


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("blendin serve needs FastAPI and uvicorn: pip install 'blendin[serve]'") from None


class ServerThread:
    """Run an app with uvicorn in a background thread on 127.0.0.1 (port 0 = a free one)."""

    def __init__(self, app, port: int = 0):
        from ..testing import free_port

        self.app, self.port = app, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> str:
        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server did not start on port {self.port}")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        engine = getattr(self.app.state, "engine", None)
        if engine is not None:
            engine.stop()
