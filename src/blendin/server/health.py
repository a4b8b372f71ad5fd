"""Each model's state as the server has seen it: what ``GET /health`` tells a load balancer.

    health = Health(pair)
    health.answered(results)       # finished rows: a guide that failed in one is down, one consulted is up
    health.failed(exc)             # a row failed because a model did not answer (``errors.ModelUnavailable``)
    health.report()                # {"status": "ok" | "degraded" | "down", "down": {model: {"since", "error"}}}

A model is up until a row shows it did not answer, and down until a row shows it answering again;
``/health`` also asks each model on a server whether it answers now (``RemoteModel.reachable``), so
it tells the truth before a row has failed or succeeded (local models never go down).
The base down is "down" (requests get 503 with Retry-After); a guide down is "degraded": the base
serves alone where that guide would have guided, and each answer says so.
"""

from __future__ import annotations

import threading
import time

from ..errors import message_line


class Health:
    def __init__(self, pair):
        self.models = {m.name: m for m in (pair.base, *pair.guides) if m is not None}
        self.base = pair.base.name if pair.base is not None else None
        self.guides = [g.name for g in pair.guides]  # a result's guides[k] is the pair's k-th guide
        self._down: dict[str, dict] = {}
        self._lock = threading.Lock()

    def answered(self, results) -> None:
        """Rows that finished: their base answered; each guide that failed in them is down, each one
        consulted without failing is up."""
        for r in results:
            if r is None:
                continue
            self._up(self.base)
            for name, g in zip(self.guides, r.guides or ()):
                if g.get("failed_at") is not None:
                    self._mark(name, g.get("error") or "it did not answer")
                elif g["consulted"]:
                    self._up(name)

    def failed(self, exc: BaseException) -> None:
        """A row that failed because ``exc.model`` did not answer."""
        name = getattr(exc, "model", None)
        if name in self.models:
            self._mark(name, message_line(exc))

    def base_down(self) -> bool:
        return self.base in self._down

    def report(self) -> dict:
        """The state now: each model on a server is asked first (one GET, 2 s), so a server that died
        is down before any row fails on it and one that came back is up; a local model keeps what the
        rows showed."""
        for name, model in self.models.items():
            reachable = getattr(model, "reachable", None)
            if reachable is None:
                continue
            if reachable():
                self._up(name)
            else:
                self._mark(name, f"its server ({getattr(model, 'url', '?')}) does not answer")
        with self._lock:
            down = {name: dict(state) for name, state in self._down.items()}
        status = "down" if self.base in down else "degraded" if down else "ok"
        return {"status": status, "down": down}

    def _mark(self, name: str, error: str) -> None:
        with self._lock:
            if name not in self._down:
                self._down[name] = {"since": round(time.time(), 1), "error": error}

    def _up(self, name: str | None) -> None:
        with self._lock:
            self._down.pop(name, None)
