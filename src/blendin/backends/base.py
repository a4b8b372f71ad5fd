"""What the decoding loop needs from a model, and the session logic every local backend shares.

A ``Model`` has a ``tokenizer`` (see ``Tokenizer``), a ``name``, capability flags, and makes
``Session`` objects. A session owns one context (token ids) and whatever cache a backend keeps for it:

    session.sync(ids)       set the whole context; the cache is kept for the longest common prefix
    session.append(id)      extend the context by one token
    session.logprobs()      next-token log-probabilities, shape [V_model], after the current context

Work is lazy: ``sync``/``append`` only record the context; ``logprobs`` runs the model on the tokens
not yet in the cache. So a model that is not consulted costs nothing, and one that is consulted again
after the text moved on only reads the new tail.

Drafts (speculative decoding, see ``speculative``): ``session.draft(ids)`` asks the next pass to read
``ids`` after the context too and keep the distribution after each of them. Those drafted tokens are
"ahead": in the cache, not in the context. A later ``append``/``sync`` onto them moves the context
along without a pass, and its ``logprobs`` are the kept ones; one that leaves them drops them. So a
session only ever hands out the distribution of exactly its context, drafted or not.

Capability flags (instead of isinstance checks):
    full_distribution   logprobs covers the whole vocabulary (not only a top-k)
    batched             ``forward_batch(sessions)`` serves many sessions in one pass
    drafts              a pass reads drafted tokens and returns their distributions too (``draft``)
    context_length      the longest context in tokens, or None where unknown (a remote server)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch


class Tokenizer(Protocol):
    """The tokenizer surface blendin uses. ``pieces`` and ``byte_level`` feed the vocabulary bridge."""

    eos_ids: frozenset[int]  # ids that end a generation
    eos_id: int | None  # the model's own end token (what a server that stopped without naming it ended on)
    special_ids: frozenset[int]  # control tokens (never part of generated text)
    byte_level: bool  # GPT-2 style byte-level pieces ('Ġ' = space), else SentencePiece style ('▁')

    def encode(self, text: str) -> list[int]: ...  # no special tokens added
    def encode_prompt(self, text: str) -> list[int]: ...  # with the tokenizer's own BOS etc.
    def decode(self, ids: Sequence[int]) -> str: ...  # special tokens dropped, leading space kept
    def pieces(self) -> list[str]: ...  # raw vocabulary strings, indexed by id
    def chat(self, messages: list[dict]) -> str | None: ...  # chat template text, or None without one


class PrefixSession:
    """Context bookkeeping shared by local backends; subclasses implement ``_forward`` and ``_truncate``
    (and ``_forward_rows``, where the model has the ``drafts`` capability).

    ``forward_tokens`` counts the tokens actually run through the model (the cost that prefix reuse saves).
    """

    def __init__(self):
        self.ids: list[int] = []  # the context, in this model's vocabulary
        self._cached = 0  # how many of self.ids + self.ahead the backend cache holds
        self._logprobs: torch.Tensor | None = None  # valid while _cached >= len(ids)
        self.ahead: list[int] = []  # drafted tokens past the context, all cached, each with its logprobs
        self._ahead_logprobs: list[torch.Tensor] = []  # [V] after ids + ahead[: j + 1]
        self.drafted: list[int] = []  # tokens the next pass reads after ids + ahead (``draft``)
        self.advanced = 0  # tokens the context moved onto from ahead (drafts taken), for the acceptance rate
        self.forward_tokens = 0
        self.forward_calls = 0

    def sync(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("cannot sync a session to an empty context")
        if ids == self.ids:
            return
        full = self.ids + self.ahead
        if len(self.ids) < len(ids) <= len(full) and full[: len(ids)] == ids:
            self._advance(len(ids) - len(self.ids))
            return
        # subtle: the model needs >= 1 fresh token to produce logits, so keep at most len(ids) - 1
        keep = min(common_prefix(full, ids), self._cached, len(ids) - 1)
        self._drop_ahead()
        if keep < self._cached:
            self._truncate(keep)
            self._cached = keep
        self.ids = ids
        self._logprobs = None

    def append(self, token_id: int) -> None:
        token_id = int(token_id)
        if self.ahead and self.ahead[0] == token_id:
            self._advance(1)
            return
        if self.ahead:
            self._drop_ahead()
            self._truncate(len(self.ids))
            self._cached = len(self.ids)
        self.drafted = []
        self.ids.append(token_id)
        self._logprobs = None

    def draft(self, ids: Sequence[int]) -> None:
        """Ask the next pass to read ``ids`` after the context and what is already ahead, keeping the
        distribution after each (see ``ahead_logprobs``). A move of the context cancels it."""
        self.drafted = [int(i) for i in ids]

    def _advance(self, n: int) -> None:
        """Move the context onto the first ``n`` tokens ahead; their kept logprobs need no pass."""
        self.ids = self.ids + self.ahead[:n]
        self.advanced += n
        self._logprobs = self._ahead_logprobs[n - 1]
        self.ahead, self._ahead_logprobs = self.ahead[n:], self._ahead_logprobs[n:]
        self.drafted = []

    def _drop_ahead(self) -> None:
        self.ahead, self._ahead_logprobs, self.drafted = [], [], []

    @property
    def started(self) -> bool:
        """Whether the model has read anything for this session (its prompt, at least)."""
        return self._cached > 0

    @property
    def stale(self) -> bool:
        """True when ``logprobs`` (or ``ahead_logprobs``) would run the model."""
        return self._logprobs is None or bool(self.drafted)

    def pending(self) -> tuple[int, list[int]]:
        """(tokens already in the cache, the tokens the next forward pass must read)."""
        return self._cached, (self.ids + self.ahead + self.drafted)[self._cached :]

    def wanted(self) -> int:
        """How many of the pending tokens' positions, counted from the last, the pass must return
        logprobs after: 1 without a draft; with one, every drafted token's and the context's own."""
        total = len(self.ids) + len(self.ahead) + len(self.drafted)
        first = len(self.ids) if self._logprobs is None else len(self.ids) + len(self.ahead) + 1
        return total - first + 1

    def store(self, logprobs: torch.Tensor) -> None:
        """Accept logprobs computed for the pending tail (by a batched pass): [V] after the whole
        context, or [wanted(), V], one row after each of the last ``wanted()`` pending tokens."""
        rows = logprobs if logprobs.dim() == 2 else logprobs[None]
        total = len(self.ids) + len(self.ahead) + len(self.drafted)
        if rows.shape[0] != self.wanted():
            raise ValueError(f"a pass returned {rows.shape[0]} positions where the session needs {self.wanted()}")
        self.forward_tokens += total - self._cached
        self.forward_calls += 1
        first = total - rows.shape[0] + 1  # the context length the first row comes after
        for j in range(rows.shape[0]):
            if first + j == len(self.ids):
                self._logprobs = rows[j]
            elif first + j > len(self.ids):
                self._ahead_logprobs.append(rows[j])
        self.ahead, self.drafted = self.ahead + self.drafted, []
        self._cached = total

    def logprobs(self) -> torch.Tensor:
        """Next-token log-probabilities after ``self.ids``: float tensor [V_model]. Do not modify it."""
        if not self.ids:
            raise ValueError("the session has an empty context: sync it to a prompt first")
        if self.stale:
            self._run()
        return self._logprobs

    def ahead_logprobs(self) -> torch.Tensor:
        """Log-probabilities [V_model] after the context and every token ahead (runs a pending draft)."""
        if self.stale:
            self._run()
        return self._ahead_logprobs[-1] if self.ahead else self._logprobs

    def _run(self) -> None:
        """Compute and ``store`` the logprobs after the pending tail (a batched backend runs a pass)."""
        start, tail = self.pending()
        wanted = self.wanted()
        self.store(self._forward(tail) if wanted == 1 else self._forward_rows(tail, wanted))

    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        """Run the model on ``new_ids`` after the cached prefix; return the last position's logprobs [V]."""
        raise NotImplementedError

    def _forward_rows(self, new_ids: list[int], keep: int) -> torch.Tensor:
        """As ``_forward``, returning the last ``keep`` positions' logprobs [keep, V] (``drafts`` models)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score drafted tokens")

    def _truncate(self, keep: int) -> None:
        """Drop everything after the first ``keep`` tokens from the cache."""
        raise NotImplementedError


def forward_sessions(model, sessions: list) -> None:
    """Bring every session's logprobs up to date: in one batched pass where the model can
    (capability ``batched``), else one session at a time."""
    pending = [s for s in sessions if s.stale]
    if len(pending) > 1 and getattr(model, "batched", False):
        model.forward_batch(pending)
    else:
        for s in pending:
            s.logprobs()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix. ``common_prefix([1, 2, 3], [1, 2, 4]) == 2``."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
