"""Scripted models with exact distributions, for tests (and for trying the engine without weights).

    tok = FakeTokenizer(["<eos>", "▁yes", "▁no", "▁maybe"], eos="<eos>")
    model = ScriptedModel(tok, lambda text: {"▁yes": 0.3, "▁no": 0.7}, name="fake-base")

The script maps the decoded context (prompt included) to {piece: probability}; pieces it leaves out
get probability 0. Tokenisation is greedy longest match over the pieces' surfaces, so two
FakeTokenizers with different pieces split the same text differently, like real ones do.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..vocab import surface
from .base import PrefixSession


class FakeTokenizer:
    """``byte_level=True`` spells spaces 'Ġ' (GPT-2 style), else '▁' (SentencePiece style)."""

    def __init__(self, pieces: Sequence[str], eos: str = "<eos>", specials: Sequence[str] = (), byte_level=False,
                 chat_template: str | None = None, ends: Sequence[str] = ()):
        """``ends``: more control tokens that end a generation (an end of turn), besides ``eos``."""
        self._pieces = list(pieces)
        self.byte_level = byte_level
        self.eos_id = self._pieces.index(eos)
        self.eos_ids = frozenset([self.eos_id, *(self._pieces.index(e) for e in ends)])
        self.special_ids = frozenset([*self.eos_ids, *(self._pieces.index(s) for s in specials)])
        self.chat_template = chat_template  # e.g. "<user>{user}<bot>" (the system text is prepended)
        self._surface = [
            p if i in self.special_ids else surface(p, byte_level)[0].decode("utf-8", "replace")
            for i, p in enumerate(self._pieces)
        ]

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        by_length = sorted(range(len(self._pieces)), key=lambda k: -len(self._surface[k]))
        while i < len(text):
            for k in by_length:
                s = self._surface[k]
                if s and text.startswith(s, i):
                    ids.append(k)
                    i += len(s)
                    break
            else:
                raise ValueError(f"FakeTokenizer cannot encode {text[i:]!r}: add pieces for it")
        return ids

    def encode_prompt(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._surface[i] for i in ids if i not in self.special_ids)

    def pieces(self) -> list[str]:
        return self._pieces

    def chat(self, messages: list[dict]) -> str | None:
        if self.chat_template is None:
            return None
        system = "".join(m["content"] for m in messages if m["role"] == "system")
        user = "".join(m["content"] for m in messages if m["role"] == "user")
        return system + self.chat_template.format(user=user)


class ScriptedModel:
    """A model whose next-token distribution is ``script(context_text)``; counts its sessions' work.

    ``partial=True`` hands the script's probabilities out as they are, not normalised, like a
    server's top-k logprobs (``full_distribution`` is then False).
    """

    def __init__(self, tokenizer: FakeTokenizer, script: Callable[[str], dict[str, float]], name: str = "scripted",
                 context_length: int | None = None, partial: bool = False):
        self.tokenizer = tokenizer
        self.script = script
        self.name = name
        self.context_length = context_length
        self.full_distribution = not partial
        self.drafts = True  # any context's distribution is one script call away
        self.vocab_size = len(tokenizer.pieces())
        self.sessions: list[ScriptedSession] = []

    def session(self) -> "ScriptedSession":
        s = ScriptedSession(self)
        self.sessions.append(s)
        return s

    def probs_for(self, text: str) -> torch.Tensor:
        """The script's distribution as a tensor [V], normalised."""
        pieces = self.tokenizer.pieces()
        probs = torch.zeros(self.vocab_size, dtype=torch.float64)
        for piece, p in self.script(text).items():
            probs[pieces.index(piece)] += p
        if probs.sum() <= 0:
            raise ValueError(f"the script gave no probability mass after {text!r}")
        return probs if not self.full_distribution else probs / probs.sum()


class ScriptedSession(PrefixSession):
    def __init__(self, model: ScriptedModel):
        super().__init__()
        self.model = model

    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        return self._forward_rows(new_ids, 1)[0]

    def _forward_rows(self, new_ids: list[int], keep: int) -> torch.Tensor:
        context = self.ids + self.ahead + self.drafted
        decode = self.model.tokenizer.decode
        return torch.stack([torch.log(self.model.probs_for(decode(context[: len(context) - keep + 1 + j]))) for j in range(keep)])

    def _truncate(self, keep: int) -> None:
        pass
