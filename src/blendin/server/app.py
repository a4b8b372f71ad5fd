"""The HTTP layer: routes, authentication, limits and errors in the OpenAI shape.

    app = build_app(Service(pair, config, settings), Engine(pair, settings.batch_size, settings.max_queue))
    uvicorn.run(app, host="127.0.0.1", port=8000)        # what ``blendin serve`` does

Routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both with
``stream: true`` as server-sent events ending with ``data: [DONE]``), vLLM's POST /tokenize and
POST /detokenize (prompts counted as the base reads them) and GET /tokenizer_info, GET /metrics (Prometheus, ``metrics``) and GET
/v1/profile (the reliability profile the guides are weighed by, ``--profile``), and GET / (a page to
try the pair in a browser: ``static/index.html``, streams with ``blendin.steps``). Bodies are read and validated
here (not by FastAPI's automatic validation) so that every failure has the OpenAI error shape:
400 bad JSON or value (``param`` names the field), 401 key, 404 model or route, 413 body too large
(refused as soon as it is, even a chunked one), 429 queue full; 500 only for faults of the server
itself, logged with their traceback and answered with an id, never the exception's text. No request
can load a model or read a file.

Every request is logged as one line when its response has been sent (a stream's at its end), on the
logger "blendin.server" at INFO (``RequestLog``)::

    POST /v1/chat/completions 200 rows=1 method=blendin tokens=64 interventions=6 (9.4%) 2400 ms
    POST /v1/completions 400 2 ms: max_tokens is 5000, above this server's cap of 1024 (...)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import Engine, QueueFull
from .metrics import Metrics
from .protocol import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest, error_body, internal_error,
                       validation_error_body)
from .service import RequestError, Service, chunk_logprobs, finish_reason

PAGE = Path(__file__).with_name("static") / "index.html"

log = logging.getLogger("blendin.server")
NOTE = "blendin.log"  # the scope key where a decoding route leaves its part of the request's log line
RETRY_AFTER = 5  # seconds a 503 asks a client to wait (a model's server restarting)
START = "blendin.start"  # the scope key of the request's start (perf_counter), for the time to first token


def _error(status: int, message: str, type_: str = "invalid_request_error", param=None, code=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def _row_error(event: tuple) -> tuple[dict, int]:
    """The error body and status for an engine's ("error", index, message, status) event."""
    _, _, message, status = event
    if status == 503:  # a model did not answer: not the server's fault, and worth a retry
        return error_body(message, "service_unavailable", code="model_unavailable"), status
    if status >= 500:
        return error_body(f"decoding failed: {message}", "server_error"), status
    return error_body(message), status


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is over ``limit`` bytes: a declared length is
    refused unread, and a chunked body is read only up to the first chunk that passes the limit."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class RequestLog:
    """ASGI middleware: one line per HTTP request on "blendin.server" (INFO), written once the response
    has been sent, so that a stream's line has its tokens and its whole time: method, route, status,
    then what a decoding route noted in ``scope[NOTE]`` (rows: prompts x n, the blending method,
    tokens, interventions), milliseconds, and for an error its message (read from the error body, or
    noted by a stream that failed after its 200). uvicorn's own access log is off: this line has
    more in it."""

    def __init__(self, app, metrics=None):
        self.app, self.metrics = app, metrics  # metrics: counts every request too (``metrics.Metrics``)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = scope[START] = time.perf_counter()
        seen = {"status": None, "body": b""}

        async def watch(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body" and (seen["status"] or 0) >= 400 and len(seen["body"]) < 8192:
                seen["body"] += message.get("body", b"")  # an error body is small JSON: its message goes in the line
            await send(message)

        fault = False
        try:
            await self.app(scope, receive, watch)
        except Exception:
            fault = True  # answered 500 by the app's fault handler, which logs the traceback under an id
            raise
        finally:
            note = scope.get(NOTE, {})
            error = note.get("error") or _error_message(seen["body"])
            if fault:
                error = "a fault of the server (its traceback is logged under an error id)"
            status = 500 if fault and seen["status"] is None else seen["status"]
            seconds = time.perf_counter() - start
            log.info("%s", request_line(scope["method"], scope["path"], status, note, 1000 * seconds, error))
            if self.metrics is not None:
                self.metrics.request(scope["path"], status, seconds)


def request_line(method: str, path: str, status: int | None, note: dict, ms: float, error: str | None = None) -> str:
    """'POST /v1/completions 200 rows=2 method=blendin tokens=32 interventions=3 (9.4%) 812 ms'; an
    error's message after a colon; status '-' where no response was sent (the client left first)."""
    parts = [method, path, "-" if status is None else str(status)]
    if "rows" in note:
        parts += [f"rows={note['rows']}", f"method={note['method']}"]
    if "tokens" in note:
        rate = note["interventions"] / note["tokens"] if note["tokens"] else 0.0
        parts += [f"tokens={note['tokens']}", f"interventions={note['interventions']} ({100 * rate:.1f}%)"]
    line = " ".join(parts) + f" {ms:.0f} ms"
    return f"{line}: {error}" if error else line


def _error_message(body: bytes) -> str | None:
    """The message of an OpenAI-shaped error body, or None (not an error body)."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return None


# (method, path, the ``Routes`` handler), in the order a 404 lists them
ROUTES = (("GET", "/health", "health"), ("GET", "/v1/models", "models"), ("POST", "/v1/completions", "completions"),
          ("POST", "/v1/chat/completions", "chat_completions"), ("POST", "/tokenize", "tokenize"),
          ("POST", "/detokenize", "detokenize"), ("GET", "/tokenizer_info", "tokenizer_info"), ("GET", "/metrics", "scrape"),
          ("GET", "/v1/profile", "profile"), ("GET", "/", "page"))


def build_app(service: Service, engine: Engine) -> FastAPI:
    app = FastAPI(title="blendin", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = app.state.metrics = Metrics(engine, service.config.profile, service.ledger)
    app.add_middleware(RequestLog, metrics=metrics)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _fault)
    routes = Routes(service, engine, metrics)
    for method, path, name in ROUTES:
        app.add_api_route(path, getattr(routes, name), methods=[method])
    return app


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        routes = ", ".join(f"{method} {path}" for method, path, _ in ROUTES)
        return _error(404, f"no route {request.method} {request.url.path}; routes: {routes}", code="not_found")
    return _error(exc.status_code, str(exc.detail))


async def _fault(request: Request, exc: Exception) -> JSONResponse:
    """A fault of the server's own, never a bad request: 500 with an id, the traceback logged under it."""
    return _error(500, internal_error(exc, f"{request.method} {request.url.path} failed"), type_="server_error")


class Routes:
    """The handlers, over one service (requests -> rows -> bodies) and one engine (decoding)."""

    def __init__(self, service: Service, engine: Engine, metrics: Metrics):
        self.service, self.engine, self.metrics = service, engine, metrics
        self.settings, self.started = service.settings, time.time()
        pair = service.pair
        self.loaded = {"base": pair.base.name if pair.base is not None else None, "guides": [g.name for g in pair.guides]}

    # -- no key needed: readiness and counts, no text of any request ---------------------------
    async def health(self, request: Request):
        """200 while the base serves ("ok", or "degraded" with a guide down: the base serves alone where
        it would have guided); 503 while the base is down. The app is built once the models are loaded."""
        state = await asyncio.get_running_loop().run_in_executor(None, self.engine.health.report)  # may ask a server
        if getattr(request.app.state, "draining", False):  # shutting down: take it out of the rotation
            state["status"] = "draining"
        body = {"status": state["status"], "loaded": True, "models": self.loaded, "down": state["down"], "running": self.engine.running,
                "waiting": self.engine.waiting, "uptime_s": round(time.time() - self.started, 1)}
        unready = state["status"] in ("down", "draining")
        return JSONResponse(body, status_code=503 if unready else 200, headers={"Retry-After": str(RETRY_AFTER)} if unready else None)

    async def page(self):
        """The page to try the pair in a browser (static, in the package: no build step, no CDN); its
        requests go to /v1/chat/completions, with the key where the server has one."""
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def scrape(self):
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    # -- with the key -----------------------------------------------------------------------
    async def models(self, request: Request):
        if not self._authorized(request):
            return _unauthorized()
        service = self.service
        config, pair = service.config, service.pair
        base = config.base if pair.base is not None else None
        guide = config.guide if pair.guide is not None else None
        about = {"base": base, "guide": guide, "method": config.method, "guides": [g.model for g in config.guides] if guide else [],
                 "gamma": config.gamma, "alpha": config.alpha_label}
        return {"object": "list", "data": [{"id": self.settings.model_name, "object": "model", "created": int(self.started),
                                            "owned_by": "blendin", "blendin": about}]}

    async def profile(self, request: Request):
        """The reliability profile the server weighs its guides by (``--profile``), or null, and each
        guide's record across the answers served so far (``profile.Ledger``)."""
        if not self._authorized(request):
            return _unauthorized()
        profile = self.service.config.profile
        return {"profile": None if profile is None else profile.describe(), "observed": self.service.ledger.snapshot()}

    async def tokenize(self, request: Request):
        return await self._count(request, TokenizeRequest, self.service.tokenize)

    async def tokenizer_info(self, request: Request):
        if not self._authorized(request):
            return _unauthorized()
        return self.service.tokenizer_info()

    async def detokenize(self, request: Request):
        return await self._count(request, DetokenizeRequest, self.service.detokenize)

    async def completions(self, request: Request):
        return await self._decode(request, CompletionRequest, "completion")

    async def chat_completions(self, request: Request):
        return await self._decode(request, ChatCompletionRequest, "chat")

    def _authorized(self, request: Request) -> bool:
        key = self.settings.api_key
        if not key:
            return True
        given = request.headers.get("authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), key.encode())

    async def _read(self, request: Request, model):
        """(the validated request, None), or (None, the error response that says what is wrong with it)."""
        if not self._authorized(request):
            return None, _unauthorized()
        limit = self.settings.max_request_bytes
        body = await _read_body(request, limit)
        if body is None:
            return None, _error(413, f"the request body is above this server's limit of {limit} bytes (blendin serve --max-request-bytes)")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return None, _error(400, f"the request body is not valid JSON ({exc})")
        if not isinstance(data, dict):
            return None, _error(400, "the request body must be a JSON object")
        try:
            return model.model_validate(data), None
        except ValidationError as exc:
            return None, JSONResponse(validation_error_body(exc), status_code=400)

    async def _count(self, request: Request, model, answer):
        req, failed = await self._read(request, model)
        if failed is not None:
            return failed
        try:
            return answer(req)
        except RequestError as exc:
            return _request_error(exc)

    async def _decode(self, request: Request, model, kind: str):
        """A completion or chat request: its rows join the engine's batch; the answer streamed or whole."""
        if getattr(request.app.state, "draining", False):
            return _error(503, "the server is shutting down; send the request to another replica", type_="service_unavailable",
                          code="draining")
        req, failed = await self._read(request, model)
        if failed is not None:
            return failed
        service = self.service
        try:
            jobs = service.completion_jobs(req) if kind == "completion" else service.chat_jobs(req)
        except RequestError as exc:
            return _request_error(exc)
        request.scope[NOTE] = {"rows": len(jobs), "method": jobs[0][1].method}
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        try:
            ticket = self.engine.submit(jobs, lambda e: loop.call_soon_threadsafe(events.put_nowait, e))
        except QueueFull as exc:
            return _error(429, str(exc), type_="rate_limit_error", code="queue_full")
        rows = RowEvents(request, ticket, events, len(jobs))
        if req.stream:
            return StreamingResponse(_stream(service, req, kind, jobs, rows), media_type="text/event-stream")
        return await _whole(service, req, kind, jobs, rows)


def _unauthorized() -> JSONResponse:
    return _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY' with the key the server was started with", code="invalid_api_key")


def _request_error(exc: RequestError) -> JSONResponse:
    return _error(exc.status, str(exc), param=exc.param, code=exc.code)


class RowEvents:
    """One request's rows as the engine reports them, until every row is done, one failed or the
    client went away (each of these the last event)::

        with rows:                      # while open, a client that disconnects cancels the rows
            async for event in rows:    # ("text", i, delta, step) | ("done", i, result) | ("error", i, message, status) | ("gone",)
                ...
        rows.results                    # each row's GenerationResult; None where it did not finish

    On leaving, the finished rows go into the request's log line and the metrics, and any row not
    finished is cancelled."""

    def __init__(self, request: Request, ticket, events: asyncio.Queue, size: int):
        self.request, self.ticket, self.events = request, ticket, events
        self.results: list = [None] * size
        self._over = False

    @property
    def finished(self) -> bool:
        return all(r is not None for r in self.results)

    def __enter__(self) -> "RowEvents":
        self._watcher = asyncio.ensure_future(_watch(self.request, self.ticket, self.events))
        return self

    def __exit__(self, *exc) -> None:
        self._watcher.cancel()
        done = [r for r in self.results if r is not None]
        note = self.request.scope.setdefault(NOTE, {})  # the request's log line: its tokens and interventions
        note.update(tokens=sum(r.tokens for r in done), interventions=sum(r.interventions for r in done))
        self.request.app.state.metrics.answers(done)
        if not self.finished:
            self.ticket.cancel()

    def __aiter__(self) -> "RowEvents":
        return self

    async def __anext__(self) -> tuple:
        if self._over or self.finished:
            raise StopAsyncIteration
        event = await self.events.get()
        scope = self.request.scope
        if event[0] == "text" and event[2] and not scope.get("blendin.first"):  # the time to first token
            scope["blendin.first"] = True
            self.request.app.state.metrics.first_token(time.perf_counter() - scope.get(START, time.perf_counter()))
        if event[0] == "done":
            self.results[event[1]] = event[2]
        self._over = event[0] in ("gone", "error")
        return event


async def _whole(service: Service, req, kind: str, jobs, rows: RowEvents) -> JSONResponse:
    """The answer of a request that is not streamed, once every row is done (or the first failure)."""
    with rows:
        async for event in rows:
            if event[0] == "gone":
                return _error(499, "the client closed the request")
            if event[0] == "error":
                body, status = _row_error(event)
                return JSONResponse(body, status_code=status, headers={"Retry-After": str(RETRY_AFTER)} if status == 503 else None)
    body = service.completion_body(req, jobs, rows.results) if kind == "completion" else service.chat_body(req, jobs, rows.results)
    return JSONResponse(body)


async def _watch(request: Request, ticket, events: asyncio.Queue) -> None:
    """Cancel the ticket's rows as soon as the client disconnects (uvicorn drops writes to a closed
    connection silently, so a stream alone would not notice, and a plain request never writes)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            ticket.cancel()
            events.put_nowait(("gone",))  # wakes the handler: its rows will post nothing more
            return


async def _stream(service: Service, req, kind: str, jobs, rows: RowEvents):
    """Server-sent events in the OpenAI chunk format; a client that goes away cancels its rows."""
    rid = service.new_id("cmpl" if kind == "completion" else "chatcmpl")
    created = int(time.time())
    obj = "text_completion" if kind == "completion" else "chat.completion.chunk"
    k = (req.logprobs if kind == "completion" else ((req.top_logprobs or 0) if req.logprobs else None))
    note = rows.request.scope[NOTE]
    steps = req.blendin is not None and req.blendin.steps

    def chunk(index: int, text: str | None, finish=None, step=None, role: bool = False, extra: dict | None = None) -> str:
        if kind == "completion":
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": chunk_logprobs(kind, step, k, service.spell)}
        else:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": chunk_logprobs(kind, step, k, service.spell)}
        if extra:
            choice["blendin"] = extra
        return "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": req.model, "choices": [choice]}) + "\n\n"

    with rows:
        if kind == "chat":
            for i in range(len(jobs)):
                yield chunk(i, None, role=True)
        async for event in rows:
            if event[0] == "text":
                _, i, delta, step = event
                if steps and step is not None:  # every token, its record beside the text that is safe to send
                    yield chunk(i, delta, step=step, extra={"step": service.step_record(step)})
                elif delta or (step is not None and k is not None):
                    yield chunk(i, delta, step=step)
            elif event[0] == "done":
                _, i, result = event
                yield chunk(i, None, finish=finish_reason(result), extra=service.blendin_summary([result]))
            elif event[0] == "gone":
                note["error"] = "the client went away"
                return
            else:
                body = _row_error(event)[0]
                note["error"] = body["error"]["message"]
                yield "data: " + json.dumps(body) + "\n\n"
                return
        if req.stream_options is not None and req.stream_options.include_usage:
            usage = {"id": rid, "object": obj, "created": created, "model": req.model, "choices": [],
                     "usage": service.usage(service.prompt_tokens(jobs, req.n), rows.results), "blendin": service.blendin_summary(rows.results)}
            yield "data: " + json.dumps(usage) + "\n\n"
        yield "data: [DONE]\n\n"
