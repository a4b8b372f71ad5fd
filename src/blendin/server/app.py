"""The HTTP layer: routes, authentication, limits and errors in the OpenAI shape.

    app = build_app(Service(pair, config, settings), Engine(pair, settings.batch_size, settings.max_queue))
    uvicorn.run(app, host="127.0.0.1", port=8000)        # what ``blendin serve`` does

Routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both with
``stream: true`` as server-sent events ending with ``data: [DONE]``), vLLM's POST /tokenize and
POST /detokenize (prompts counted as the base reads them), and GET /metrics (Prometheus, ``metrics``). Bodies are read and validated
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

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import Engine, QueueFull
from .metrics import Metrics
from .protocol import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest, error_body, internal_error,
                       validation_error_body)
from .service import RequestError, Service, chunk_logprobs, finish_reason

log = logging.getLogger("blendin.server")
NOTE = "blendin.log"  # the scope key where a decoding route leaves its part of the request's log line
START = "blendin.start"  # the scope key of the request's start (perf_counter), for the time to first token


def _error(status: int, message: str, type_: str = "invalid_request_error", param=None, code=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def _row_error(event: tuple) -> tuple[dict, int]:
    """The error body and status for an engine's ("error", index, message, status) event."""
    _, _, message, status = event
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


def _note_results(request: Request, results) -> None:
    """Add the finished rows' tokens and interventions to the request's log line and the metrics."""
    done = [r for r in results if r is not None]
    note = request.scope.setdefault(NOTE, {})
    note.update(tokens=sum(r.tokens for r in done), interventions=sum(r.interventions for r in done))
    request.app.state.metrics.answers(done)


def _note_text(request: Request, event: tuple) -> None:
    """At a request's first generated text (an engine "text" event with text), its time to first token."""
    if event[0] == "text" and event[2] and not request.scope.get("blendin.first"):
        request.scope["blendin.first"] = True
        request.app.state.metrics.first_token(time.perf_counter() - request.scope.get(START, time.perf_counter()))


def build_app(service: Service, engine: Engine) -> FastAPI:
    settings = service.settings
    app = FastAPI(title="blendin", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = app.state.metrics = Metrics(engine)
    app.add_middleware(RequestLog, metrics=metrics)
    started = time.time()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        if exc.status_code == 404:
            return _error(404, f"no route {request.method} {request.url.path}; routes: GET /health, GET /v1/models, "
                               "POST /v1/completions, POST /v1/chat/completions, POST /tokenize, POST /detokenize, GET /metrics",
                          code="not_found")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _fault(request, exc):  # a fault of the server's own, never a bad request
        return _error(500, internal_error(exc, f"{request.method} {request.url.path} failed"), type_="server_error")

    def authorized(request: Request) -> bool:
        if not settings.api_key:
            return True
        given = request.headers.get("authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), settings.api_key.encode())

    def unauthorized() -> JSONResponse:
        return _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY' with the key the server was started with", code="invalid_api_key")

    loaded = {"base": service.pair.base.name if service.pair.base is not None else None,
              "guides": [g.name for g in service.pair.guides]}

    @app.get("/health")
    async def health():
        # the app is built once the models are loaded, so any answer means ready (a readiness probe's question)
        return {"status": "ok", "loaded": True, "models": loaded, "running": engine.running, "waiting": engine.waiting,
                "uptime_s": round(time.time() - started, 1)}

    @app.get("/metrics")
    async def scrape():  # no key needed, as /health: counts only, no text of any request
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models(request: Request):
        if not authorized(request):
            return unauthorized()
        base = service.config.base if service.pair.base is not None else None
        guide = service.config.guide if service.pair.guide is not None else None
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": int(started), "owned_by": "blendin",
                                            "blendin": {"base": base, "guide": guide, "method": service.config.method,
                                                        "guides": [g.model for g in service.config.guides] if guide else [],
                                                        "gamma": service.config.gamma, "alpha": service.config.alpha_label}}]}

    async def read(request: Request, model):
        """The validated request, or the error response that says what is wrong with it."""
        if not authorized(request):
            return None, unauthorized()
        body = await _read_body(request, settings.max_request_bytes)
        if body is None:
            return None, _error(413, f"the request body is above this server's limit of {settings.max_request_bytes} bytes (blendin serve --max-request-bytes)")
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

    async def serve(request: Request, model, kind: str):
        req, failed = await read(request, model)
        if failed is not None:
            return failed
        try:
            jobs = service.completion_jobs(req) if kind == "completion" else service.chat_jobs(req)
        except RequestError as exc:
            return _error(exc.status, str(exc), param=exc.param, code=exc.code)
        request.scope[NOTE] = {"rows": len(jobs), "method": jobs[0][1].method}
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        try:
            ticket = engine.submit(jobs, lambda e: loop.call_soon_threadsafe(events.put_nowait, e))
        except QueueFull as exc:
            return _error(429, str(exc), type_="rate_limit_error", code="queue_full")
        if req.stream:
            return StreamingResponse(_stream(service, request, req, kind, jobs, ticket, events), media_type="text/event-stream")
        results = [None] * len(jobs)
        watcher = asyncio.ensure_future(_watch(request, ticket, events))
        try:
            while any(r is None for r in results):
                event = await events.get()
                _note_text(request, event)
                if event[0] == "gone":
                    return _error(499, "the client closed the request")
                if event[0] == "error":
                    body, status = _row_error(event)
                    return JSONResponse(body, status_code=status)
                if event[0] == "done":
                    results[event[1]] = event[2]
        finally:
            watcher.cancel()
            _note_results(request, results)
            if any(r is None for r in results):
                ticket.cancel()
        body = service.completion_body(req, jobs, results) if kind == "completion" else service.chat_body(req, jobs, results)
        return JSONResponse(body)

    async def count(request: Request, model, answer):
        req, failed = await read(request, model)
        if failed is not None:
            return failed
        try:
            return answer(req)
        except RequestError as exc:
            return _error(exc.status, str(exc), param=exc.param, code=exc.code)

    @app.post("/tokenize")
    async def tokenize(request: Request):
        return await count(request, TokenizeRequest, service.tokenize)

    @app.post("/detokenize")
    async def detokenize(request: Request):
        return await count(request, DetokenizeRequest, service.detokenize)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await serve(request, CompletionRequest, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await serve(request, ChatCompletionRequest, "chat")

    return app


async def _watch(request: Request, ticket, events: asyncio.Queue) -> None:
    """Cancel the ticket's rows as soon as the client disconnects (uvicorn drops writes to a closed
    connection silently, so a stream alone would not notice, and a plain request never writes)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            ticket.cancel()
            events.put_nowait(("gone",))  # wakes the handler: its rows will post nothing more
            return


async def _stream(service: Service, request: Request, req, kind: str, jobs, ticket, events: asyncio.Queue):
    """Server-sent events in the OpenAI chunk format; a client that goes away cancels its rows."""
    rid = service.new_id("cmpl" if kind == "completion" else "chatcmpl")
    created = int(time.time())
    obj = "text_completion" if kind == "completion" else "chat.completion.chunk"
    k = (req.logprobs if kind == "completion" else ((req.top_logprobs or 0) if req.logprobs else None))

    def chunk(index: int, text: str | None, finish=None, step=None, role: bool = False, extra: dict | None = None) -> str:
        if kind == "completion":
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": chunk_logprobs(kind, step, k, service.spell)}
        else:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": chunk_logprobs(kind, step, k, service.spell)}
        if extra:
            choice["blendin"] = extra
        return "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": req.model, "choices": [choice]}) + "\n\n"

    results = [None] * len(jobs)
    watcher = asyncio.ensure_future(_watch(request, ticket, events))
    try:
        if kind == "chat":
            for i in range(len(jobs)):
                yield chunk(i, None, role=True)
        while any(r is None for r in results):
            event = await events.get()
            _note_text(request, event)
            if event[0] == "text":
                _, i, delta, step = event
                if delta or (step is not None and k is not None):
                    yield chunk(i, delta, step=step)
            elif event[0] == "done":
                _, i, result = event
                results[i] = result
                yield chunk(i, None, finish=finish_reason(result), extra=service.blendin_summary([result]))
            elif event[0] == "gone":
                request.scope[NOTE]["error"] = "the client went away"
                return
            else:
                body = _row_error(event)[0]
                request.scope[NOTE]["error"] = body["error"]["message"]
                yield "data: " + json.dumps(body) + "\n\n"
                ticket.cancel()
                return
        if req.stream_options is not None and req.stream_options.include_usage:
            usage = {"id": rid, "object": obj, "created": created, "model": req.model, "choices": [],
                     "usage": service.usage(service.prompt_tokens(jobs, req.n), results), "blendin": service.blendin_summary(results)}
            yield "data: " + json.dumps(usage) + "\n\n"
        yield "data: [DONE]\n\n"
    finally:
        watcher.cancel()
        _note_results(request, results)
        if any(r is None for r in results):
            ticket.cancel()
