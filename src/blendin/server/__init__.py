"""An OpenAI-compatible server over the batched engine (``blendin serve``).

    protocol.py   request models and the OpenAI error shape
    engine.py     the decoding thread: requests join the running batch between rounds
    service.py    requests -> rows (config, rendered prompts, limits); results -> response bodies
    app.py        FastAPI routes, authentication, size limits, streaming

    with ServerThread(build(pair, BlendConfig(), ServeSettings(port=0))) as url:   # tests, benchmarks
        ...  # url = "http://127.0.0.1:PORT/v1"

``blendin serve`` logs to stderr on the logger "blendin.server" (INFO): a start-up line with the address
and the models, one line per request (``app.RequestLog``), and the traceback of any fault of the server.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from ..config import BlendConfig
from .settings import ServeSettings


def build(pair, config: BlendConfig, settings: ServeSettings):
    """The app and its engine for an already loaded pair; ConfigError, before anything starts, where
    the pair cannot decode as ``config`` says (``pair.speculation_problem``: rather than answer
    every request 400)."""
    _require_web()
    from ..errors import ConfigError
    from ..pair import speculation_problem

    problem = speculation_problem(config, pair)
    if problem is not None:
        raise ConfigError(problem)
    from .app import build_app
    from .engine import Engine
    from .service import Service

    engine = Engine(pair, batch_size=settings.batch_size, max_queue=settings.max_queue)
    app = build_app(Service(pair, config, settings), engine)
    app.state.engine = engine
    if settings.profile_update and config.profile is None:
        raise ConfigError("--profile-update writes each guide's record into the --profile file: give --profile FILE too")
    return app


def serve(config: BlendConfig, settings: ServeSettings) -> None:
    """Load the pair (both models: a request may ask for any method) and serve until interrupted."""
    from ..config import METHODS
    from ..pair import load_pair

    _require_web()  # before minutes of model loading
    pair = load_pair(config, METHODS)
    app = build(pair, config, settings)
    import uvicorn

    log = configure_logging()
    log.info("%s", startup_line(config, settings, pair))
    # uvicorn's access log stays off: the request lines above carry its fields and the decoding's
    config_ = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                             timeout_graceful_shutdown=settings.drain_seconds)
    DrainingServer(config_, app, log).run()
    app.state.engine.stop()
    log.info("stopped")
    if settings.profile_update and config.profile is not None:  # asked for: never silently
        path = app.state.metrics.ledger.write_into(config.profile.source)
        log.info("wrote each guide's record across answers into %s (\"observed\")", path)


def draining_server_class():
    import contextlib

    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, which on SIGTERM or Ctrl-C first marks the app draining (a request that still
        reaches it gets 503; /health says "draining") and then shuts down as uvicorn does: no new
        connections, the requests in flight given ``timeout_graceful_shutdown`` (``--drain-seconds``)
        to finish before they are cancelled (their rows leave the batch)."""

        def __init__(self, config, app, log):
            super().__init__(config)
            self.app, self.log = app, log

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                # uvicorn raises the signal again once it has shut down (the process then dies by it);
                # a drained shutdown is a clean one: blendin serve returns and exits 0
                getattr(self, "_captured_signals", []).clear()

        def handle_exit(self, sig, frame) -> None:
            if not getattr(self.app.state, "draining", False):
                self.app.state.draining = True
                self.log.info("draining: no new requests; the %d rows in flight have %.0f s to finish",
                              self.app.state.engine.running, self.config.timeout_graceful_shutdown or 0)
            super().handle_exit(sig, frame)

    return DrainingServer


def DrainingServer(config, app, log):  # noqa: N802 - a class made on first use (uvicorn is imported only to serve)
    return draining_server_class()(config, app, log)


def startup_line(config: BlendConfig, settings: ServeSettings, pair=None) -> str:
    """What ``blendin serve`` says once the models are loaded: the name served, models (and, for local
    ones, where they run: 'on cuda:0 bfloat16'), method, address."""
    guides = [f"{g.model}{_where(m)}" for g, m in zip(config.guides, getattr(pair, "guides", None) or [None] * len(config.guides))]
    base, guide = f"{config.base}{_where(getattr(pair, 'base', None))}", " + ".join(guides)
    return (f"serving '{settings.model_name}' (base {base}, guide{'s' if len(guides) > 1 else ''} {guide}, method {config.method}) "
            f"at http://{settings.host}:{settings.port}/v1 (a page to try it: http://{settings.host}:{settings.port}/)")


def _where(model) -> str:
    """' on cpu float32' for a local torch model (``HFModel.device``/``dtype``); '' for a remote or scripted one."""
    dtype, device = getattr(model, "dtype", None), getattr(model, "device", None)
    return f" on {device} {str(dtype).removeprefix('torch.')}" if dtype is not None and device is not None else ""


def configure_logging(level: int = logging.INFO) -> logging.Logger:
    """The "blendin.server" logger, writing to the current stderr at ``level`` (INFO: a line per
    request). It replaces the handler an earlier call added and does not propagate, so a process that
    configured logging itself gets each line once; called by ``serve``, not by ``build`` (an app
    embedded in tests or another program logs wherever that program says)."""
    log = logging.getLogger("blendin.server")
    for handler in [h for h in log.handlers if getattr(h, "_blendin", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s blendin: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler._blendin = True
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    return log


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
