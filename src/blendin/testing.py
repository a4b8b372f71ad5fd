"""A small vLLM-like /v1/completions server answering from a local model: for tests and benchmarks.

It takes prompts as token ids or text, greedy decoding, ``logprobs`` up to ``max_logprobs`` (more is
a 400, as vLLM answers), ``return_tokens_as_token_ids``; and it can fail on purpose: ``fail_next``
answers 500 that many times, ``text_only`` refuses token-id prompts like a text-only server, and
``max_model_len`` refuses prompt + max_tokens above it with vLLM's context-length 400.
Binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers with success (2xx, after redirects); raise naming ``what`` if
    ``proc`` exits or ``timeout`` passes."""
    import httpx2 as httpx  # the project's HTTP client (``httpclient``)

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited (code {proc.returncode}) before answering {url}")
        try:
            if httpx.get(url, timeout=2, follow_redirects=True).is_success:
                return
        except httpx.HTTPError:
            pass  # not listening yet (refused, reset, timed out)
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


class CompletionServer:
    def __init__(self, model, max_logprobs: int = 20, text_only: bool = False, max_model_len: int | None = None):
        self.model, self.max_logprobs, self.text_only = model, max_logprobs, text_only
        self.max_model_len = max_model_len  # prompt + max_tokens above it: vLLM's context-length 400
        self.fail_next = 0
        self.requests = 0
        self.session = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = server.answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.session is not None:
            getattr(self.session, "close", lambda: None)()

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        self.requests += 1
        if not path.endswith("/v1/completions"):
            return 404, {"error": {"message": f"no route {path}"}}
        if self.fail_next > 0:
            self.fail_next -= 1
            return 500, {"error": {"message": "internal error (on purpose)"}}
        k = int(body.get("logprobs") or 0)
        if k > self.max_logprobs:
            return 400, {"error": {"message": f"Requested sample logprobs of {k}, which is greater than max allowed: {self.max_logprobs}"}}
        prompt = body["prompt"]
        tok = self.model.tokenizer
        if isinstance(prompt, list):
            if self.text_only:
                return 400, {"error": {"message": "prompt must be a string"}}
            ids = [int(i) for i in prompt]
        else:
            ids = tok.encode_prompt(prompt)
        asked = len(ids) + int(body.get("max_tokens", 16))
        if self.max_model_len is not None and asked > self.max_model_len:
            return 400, {"error": {"message": f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                                              f"requested {asked} tokens ({len(ids)} in the messages, {asked - len(ids)} in the completion)."}}
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        key = (lambda t: f"token_id:{t}") if as_ids else (lambda t: tok.decode([t]) if t not in tok.special_ids else tok.pieces()[t])
        tokens, token_lps, tops = [], [], []
        with self.lock:
            # one session for all requests: like a server's prefix cache, it keeps the common prefix
            if self.session is None:
                self.session = self.model.session()
            session = self.session
            session.sync(ids)
            for _ in range(int(body.get("max_tokens", 16))):
                lp = session.logprobs()
                values, idx = torch.topk(lp, max(k, 1))
                t = int(idx[0])
                tokens.append(key(t))
                token_lps.append(float(values[0]))
                tops.append({key(int(i)): float(v) for v, i in zip(values, idx)})
                if t in tok.eos_ids:
                    break
                session.append(t)
        logprobs = {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": [0] * len(tokens)}
        choice = {"index": 0, "text": "", "logprobs": logprobs if k else None, "finish_reason": "length"}
        return 200, {"id": "cmpl-test", "object": "text_completion", "model": body.get("model"), "choices": [choice]}
