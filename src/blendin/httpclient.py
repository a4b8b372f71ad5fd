"""One HTTP client for every server blendin talks to (remote models, the judge), on httpx.

    client = JSONClient("http://127.0.0.1:8000/v1", api_key=None, timeout=60, retries=3)
    status, body, tries = client.post("/completions", {"model": "m", "prompt": [1, 2]})

A pool of kept-alive connections (one ``httpx.Client``, safe to share between threads), a timeout
per request, and bounded retries with exponential backoff (0.5 s, 1 s, 2 s, ...) on what may pass:
429 and 5xx answers and connection errors (refused, reset, timed out). A 4xx other than 429 is the
request's own fault and is returned at once, never retried. A connection error after the last try
raises ``Unreachable``; the caller words it for its user (which flag names the URL).

(The project's environment installs httpx as the ``httpx2`` distribution, which the OpenAI client
already needs; its API is httpx's.)
"""

from __future__ import annotations

import json
import time
from typing import Callable

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class Unreachable(Exception):
    """No answer after every try: ``cause`` is the last connection error."""

    def __init__(self, cause: BaseException, tries: int):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause, self.tries = cause, tries


class JSONClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 3,
                 connections: int = 8, backoff: float = 0.5):
        import httpx2 as httpx

        self._httpx = httpx
        self.base_url, self.retries, self.backoff = base_url.rstrip("/"), retries, backoff
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout),
                                    limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))

    def post(self, path: str, payload: dict, final: Callable[[int, bytes], bool] | None = None) -> tuple[int, bytes, int]:
        """POST ``payload`` as JSON to ``base_url + path``: (status, body, requests made). Retries
        ``RETRY_STATUS`` answers unless ``final(status, body)`` says the answer stands (a server's way
        of refusing a request can be a 500)."""
        body = json.dumps(payload).encode()
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(self.base_url + path, content=body)
                status, data = response.status_code, response.content
                if status not in RETRY_STATUS or attempt == self.retries or (final is not None and final(status, data)):
                    return status, data, attempt + 1
            except self._httpx.TransportError as exc:
                if attempt == self.retries:
                    raise Unreachable(exc, attempt + 1) from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def reachable(self, path: str = "/models", timeout: float = 2.0) -> bool:
        """One GET with a short timeout and no retry: does the server answer 200 now? (``/health``)"""
        try:
            return self._client.get(self.base_url + path, timeout=timeout).status_code == 200
        except self._httpx.HTTPError:
            return False

    def close(self) -> None:
        self._client.close()
