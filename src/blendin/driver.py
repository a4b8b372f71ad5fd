"""The one row driver: many rows' coroutines decode together, each model running once per round for
all the rows that need it.

    batch = Rows(generations, width=16)
    while batch.open:
        for row, step in batch.advance(): ...      # every row runs until it needs a distribution
        if batch.waiting:
            batch.serve(batch.next_group())        # one model's pass for all the rows waiting on it

``decoding.run_rows`` drives it to the end; ``hf_generate``'s processor drives it one base token at a
time, the base's distributions fed from transformers' ``generate()``. A row is any object with
``decode()`` (a coroutine of ``Step``s and ``Need``s, see ``decoding.Generation``), ``close()``,
``base`` (its base track), ``cancelled`` and ``error``.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from .backends.base import forward_sessions
from .errors import ModelUnavailable
from .types import Need, Step


class Failed:
    """The reply to a ``Need`` whose model raised: thrown into the row's coroutine where it waits,
    so that the row can go on without that model (a guide that stopped answering) or fail alone."""

    def __init__(self, error: BaseException):
        self.error = error


class Rows:
    """Rows decoding together. At most ``width`` are open at once; a row that ends leaves at once and
    the next row takes its place.

    A row that fails (its decoding raises, or its model raises for it alone: a prompt over a server's
    context length, say) ends by itself: ``row.error`` holds the exception, it ends as (row, None)
    like a finished row, and the other rows go on. When a batched pass fails, its rows are retried
    one by one to find which of them fail."""

    def __init__(self, rows: Iterable, width: int | None = None):
        self._queue = iter(rows)
        self.width = width
        self.open: dict = {}  # row -> its coroutine
        self.waiting: dict = {}  # row -> the Need it waits on
        self._replies: dict = {}  # row -> the distribution it is sent next
        self._base_passed_over = False
        self._refill()

    def advance(self) -> Iterator[tuple[object, Step | None]]:
        """Run every open row that is not waiting until it needs a distribution: (row, step) for each
        step it decodes, (row, None) as it ends (finished, failed or cancelled)."""
        for row in [r for r in self.open if r.cancelled or r.error is not None]:
            self._drop(row)
            yield row, None
        for row, co in list(self.open.items()):
            if row in self.waiting:
                continue
            try:
                reply = self._replies.pop(row, None)
                message = co.throw(reply.error) if isinstance(reply, Failed) else co.send(reply)
                while isinstance(message, Step):
                    yield row, message
                    message = co.send(None)
                self.waiting[row] = message
            except StopIteration:
                del self.open[row]
                yield row, None
            except Exception as exc:  # noqa: BLE001 - this row fails alone
                row.error = exc
                self._drop(row)
                yield row, None
        self._refill()

    def next_group(self, rows=None) -> list:
        """The rows (of ``rows``, default all waiting) that one model serves next.

        Rows waiting on a guide first, so that they move on: they come back to the base, so all
        rows gather on the base and it runs once per token for all of them (serving whichever rows
        happen to wait on the base would split the batch across rounds). But never the base passed
        over twice in a row: a Nudging row drafting a chunk asks the guide many times over, and the
        rows waiting on the base would stall behind the whole draft."""
        by_model: dict[int, list] = {}
        for row in self.waiting if rows is None else rows:
            by_model.setdefault(id(self.waiting[row].track.model), []).append(row)
        on_base = lambda group: self.waiting[group[0]].track is group[0].base  # noqa: E731
        group = min(by_model.values(), key=lambda group: on_base(group) != self._base_passed_over)
        self._base_passed_over = len(by_model) > 1 and not on_base(group)
        return group

    def serve(self, group: list) -> None:
        """One pass of their model for ``group``'s rows (all waiting on it); each is sent its
        distribution at the next ``advance``, or fails alone."""
        needs: list[Need] = [self.waiting.pop(row) for row in group]
        try:
            forward_sessions(needs[0].track.model, [n.track.session for n in needs])
        except Exception:  # noqa: BLE001 - find the rows that fail alone below; the others go on
            pass
        for row, need in zip(group, needs):
            try:
                self._replies[row] = need.track.probs(need.ahead)
            except Exception as exc:  # noqa: BLE001 - raised in the row where it waits: it may go on without this model
                if isinstance(exc, ModelUnavailable) and getattr(exc, "model", None) is None:
                    exc.model = need.track.model.name  # which model it was, for a server's /health
                self._replies[row] = Failed(exc)

    def _refill(self) -> None:
        while self.width is None or len(self.open) < self.width:
            row = next(self._queue, None)
            if row is None:
                return
            self.open[row] = row.decode()

    def _drop(self, row) -> None:
        self.open.pop(row).close()
        row.close()  # frees its cache rows even if its coroutine never started
        self.waiting.pop(row, None)
        self._replies.pop(row, None)
