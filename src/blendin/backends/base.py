"""What the decoding loop needs from a model, and the session logic every local backend shares.

A ``Model`` has a ``tokenizer`` (see ``Tokenizer``), a ``name``, capability flags, and makes
``Session`` objects. A session owns one context (token ids) and whatever cache a backend keeps for it:

    session.sync(ids)       set the whole context; the cache is kept for the longest common prefix
    session.append(id)      extend the context by one token
    session.logprobs()      next-token log-probabilities, shape [V_model], after the current context

Work is lazy: ``sync``/``append`` only record the context; ``logprobs`` runs the model on the tokens
not yet in the cache. So a model that is not consulted costs nothing, and one that is consulted again
after the text moved on only reads the new tail.

Capability flags (instead of isinstance checks):
    full_distribution   logprobs covers the whole vocabulary (not only a top-k)
    batched             ``forward_batch(sessions)`` serves many sessions in one pass
    context_length      the longest context in tokens, or None where unknown (a remote server)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch


class Tokenizer(Protocol):
    """The tokenizer surface blendin uses. ``pieces`` and ``byte_level`` feed the vocabulary bridge."""

    eos_ids: frozenset[int]  # ids that end a generation
    special_ids: frozenset[int]  # control tokens (never part of generated text)
    byte_level: bool  # GPT-2 style byte-level pieces ('Ġ' = space), else SentencePiece style ('▁')

    def encode(self, text: str) -> list[int]: ...  # no special tokens added
    def encode_prompt(self, text: str) -> list[int]: ...  # with the tokenizer's own BOS etc.
    def decode(self, ids: Sequence[int]) -> str: ...  # special tokens dropped, leading space kept
    def pieces(self) -> list[str]: ...  # raw vocabulary strings, indexed by id
    def chat(self, messages: list[dict]) -> str | None: ...  # chat template text, or None without one


class PrefixSession:
    """Context bookkeeping shared by local backends; subclasses implement ``_forward`` and ``_truncate``.

    ``forward_tokens`` counts the tokens actually run through the model (the cost that prefix reuse saves).
    """

    def __init__(self):
        self.ids: list[int] = []  # the context, in this model's vocabulary
        self._cached = 0  # how many of self.ids the backend cache holds
        self._logprobs: torch.Tensor | None = None  # valid while _cached == len(ids)
        self.forward_tokens = 0
        self.forward_calls = 0

    def sync(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("cannot sync a session to an empty context")
        if ids == self.ids:
            return
        # subtle: the model needs >= 1 fresh token to produce logits, so keep at most len(ids) - 1
        keep = min(common_prefix(self.ids, ids), self._cached, len(ids) - 1)
        if keep < self._cached:
            self._truncate(keep)
            self._cached = keep
        self.ids = ids
        self._logprobs = None

    def append(self, token_id: int) -> None:
        self.ids.append(int(token_id))
        self._logprobs = None

    @property
    def stale(self) -> bool:
        """True when ``logprobs`` would run the model."""
        return self._logprobs is None

    def pending(self) -> tuple[int, list[int]]:
        """(tokens already in the cache, the tokens the next forward pass must read)."""
        return self._cached, self.ids[self._cached :]

    def store(self, logprobs: torch.Tensor) -> None:
        """Accept logprobs computed for the whole context (by a batched pass)."""
        self.forward_tokens += len(self.ids) - self._cached
        self.forward_calls += 1
        self._cached = len(self.ids)
        self._logprobs = logprobs

    def logprobs(self) -> torch.Tensor:
        """Next-token log-probabilities after ``self.ids``: float tensor [V_model]. Do not modify it."""
        if not self.ids:
            raise ValueError("the session has an empty context: sync it to a prompt first")
        if self._logprobs is None:
            self._run()
        return self._logprobs

    def _run(self) -> None:
        """Compute and ``store`` the logprobs after the pending tail (a batched backend runs a pass)."""
        self.store(self._forward(self.ids[self._cached :]))

    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        """Run the model on ``new_ids`` after the cached prefix; return the last position's logprobs [V]."""
        raise NotImplementedError

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
