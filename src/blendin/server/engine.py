"""The batched decoding loop behind the server: one background thread, requests join between rounds.

    engine = Engine(pair, batch_size=16, max_queue=256)
    ticket = engine.submit([(rendered, config), ...], post)   # post(event) is called from the thread
    ticket.cancel()                                           # the client went away: rows are dropped

Each request becomes rows (one per prompt and ``n``). The thread drives every open row through
``decoding.run_rows``; rows that arrive while a batch runs are taken in at the next round, and the
loop sleeps when nothing is left. Events posted per row (from the engine thread, so ``post`` must be
thread-safe, e.g. ``loop.call_soon_threadsafe``):

    ("text", index, delta, step)    decoded text safe to send (held back while it may start a stop string)
    ("done", index, result)         the row's ``GenerationResult``
    ("error", index, message, status)  the row failed; the server keeps serving, and the other rows
                                    (other requests') go on. status 400: the request's own fault
                                    (a ``ConfigError``), the message says what to change; 500: a
                                    fault of the server (a model raised), logged here, the message
                                    gives only an id (``protocol.internal_error``)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from ..config import BlendConfig
from ..decoding import Generation, run_rows
from ..errors import BlendinError, ConfigError, ModelUnavailable
from ..prompts import Rendered
from .health import Health
from .protocol import internal_error


class QueueFull(BlendinError):
    """More rows wait than the queue bound allows: answer 429 and let the client retry."""


class Ticket:
    """One request's rows; ``cancel`` drops those still decoding (safe from any thread)."""

    def __init__(self, post: Callable[[tuple], None], size: int):
        self.post = post
        self.rows: list[Generation | None] = [None] * size
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        for row in self.rows:
            if row is not None:
                row.cancelled = True


class Engine:
    def __init__(self, pair, batch_size: int = 16, max_queue: int = 256):
        self.pair, self.batch_size, self.max_queue = pair, batch_size, max_queue
        self._incoming: deque[tuple[Ticket, int, Rendered, BlendConfig]] = deque()
        self._wake = threading.Condition()
        self._rows: dict[Generation, tuple[Ticket, int]] = {}
        self._sent: dict[Generation, int] = {}
        self._stopping = False
        self.rows_done = 0
        self.health = Health(pair)  # each model's state as the rows show it (GET /health)
        self._thread = threading.Thread(target=self._loop, name="blendin-engine", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return len(self._incoming)

    @property
    def running(self) -> int:
        return len(self._rows)

    def submit(self, jobs: list[tuple[Rendered, BlendConfig]], post: Callable[[tuple], None]) -> Ticket:
        ticket = Ticket(post, len(jobs))
        with self._wake:
            if len(self._incoming) + len(jobs) > self.max_queue:
                raise QueueFull(f"the server's queue is full ({len(self._incoming)} rows waiting, bound {self.max_queue}); retry shortly")
            for i, (rendered, config) in enumerate(jobs):
                self._incoming.append((ticket, i, rendered, config))
            self._wake.notify()
        return ticket

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _next_row(self) -> Generation:
        """The next waiting row that can start (called by ``run_rows`` each round, in this thread)."""
        while True:
            with self._wake:
                if not self._incoming:
                    raise StopIteration
                ticket, i, rendered, config = self._incoming.popleft()
            if ticket.cancelled:
                continue
            try:
                make = getattr(rendered, "row", None)  # a job that makes its own row (``echo.ScoreJob``), else a generation
                row = make(self.pair, config) if make is not None else Generation(self.pair, rendered, config)
            except Exception as exc:  # noqa: BLE001 - reported to its request, the others go on
                ticket.post(("error", i, *failure(exc, "a row could not start")))
                continue
            ticket.rows[i] = row
            row.cancelled = ticket.cancelled
            self._rows[row], self._sent[row] = (ticket, i), 0
            return row

    def _loop(self) -> None:
        arrivals = _Arrivals(self._next_row)
        while True:
            with self._wake:
                while not self._incoming and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
            try:
                for row, step in run_rows(arrivals, width=self.batch_size):
                    self._report(row, step)
            except Exception as exc:  # noqa: BLE001 - last resort (run_rows ends a failing row alone): fail the open rows
                message = internal_error(exc, "the engine's batch failed")
                for row, (ticket, i) in list(self._rows.items()):
                    row.close()
                    ticket.post(("error", i, message, 500))
                self._rows.clear()
                self._sent.clear()

    def _report(self, row: Generation, step) -> None:
        ticket, i = self._rows[row]
        if step is None:
            del self._rows[row]
            sent = self._sent.pop(row)
            if row.cancelled:
                return
            if getattr(row, "error", None) is not None:  # this row alone failed (run_rows ended it)
                self.health.failed(row.error)
                ticket.post(("error", i, *failure(row.error, "a row failed while decoding")))
                return
            result = row.result()
            self.health.answered([result])
            self.rows_done += 1  # before the client can hear of it
            if len(result.text) > sent:
                ticket.post(("text", i, result.text[sent:], None))
            ticket.post(("done", i, result))
            return
        # subtle: a stop string is cut from the text once complete, so the text that could be its
        # beginning is held back until the next tokens show it is not (``stops``: the next turn too)
        text = row.transcript.text
        hold = max((len(s) for s in (*row.config.stops, *row.config.stops_at_start)), default=1) - 1
        safe = max(self._sent[row], len(text) - hold) if row.stop_reason is None else self._sent[row]
        delta = text[self._sent[row]:safe]
        self._sent[row] = safe
        ticket.post(("text", i, delta, step))


def failure(exc: BaseException, what: str) -> tuple[str, int]:
    """(message, status) for a row that raised: a ``ConfigError`` is the request's fault (400, its
    message says what to change); a model that did not answer is 503 (retry later: the server stays
    up, and /health says which); anything else is the server's (500, logged, an id only)."""
    if isinstance(exc, ConfigError):
        return str(exc), 400
    if isinstance(exc, ModelUnavailable):
        return f"the model '{getattr(exc, 'model', None) or 'base'}' did not answer ({exc}); retry shortly (GET /health says when it is back)", 503
    return internal_error(exc, what), 500


class _Arrivals:
    """An iterator ``run_rows`` can ask again after it once ran dry (new requests come in later)."""

    def __init__(self, take: Callable[[], Generation]):
        self._take = take

    def __iter__(self):
        return self

    def __next__(self) -> Generation:
        return self._take()
