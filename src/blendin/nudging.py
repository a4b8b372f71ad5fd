"""Nudging's words (Fei et al. 2024): at an uncertain step the guide writes whole words, accepted one by one.

    draft = WordDraft(row)                       # the guide, caught up with the row's text
    yield from draft.until(1)                    # its first word (and the first token of the next)
    accepted, base_took_over = yield from draft.accept(row, base_probs, m_b)

The first word is always accepted (once the mitigations let the guide count); each next word only
while the base, reading the accepted words, stays unsure (m_b < gamma) and its top token does not
start that word. The guide drafts lazily, a word at a time (at most ``nudge_chunk`` tokens in all),
so that a word the base takes over from costs no guide passes beyond its first token. Coroutines of
``Need``s, as the row's own (``decoding``): the passes are batched with the other rows'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .blend import top1
from .transcript import split_words
from .types import Need


@dataclass(frozen=True)
class Drafted:
    """One token the guide drafted: its id (guide vocabulary), m_g, its probability, the guide's top
    token, and the top tokens for traces."""

    token: int
    m_g: float
    chosen_prob: float
    top: int
    alternatives: dict | None


class WordDraft:
    """The guide's words at one uncertain step of one row (``Generation``)."""

    def __init__(self, row):
        self.row = row
        self.guide = row.guide.follow(row.transcript.text)
        self.text = row.transcript.text  # the row's text when the draft began
        self.kept = len(self.guide.gen_ids)  # the guide's ids for that text
        self.budget = min(row.config.nudge_chunk, row.config.max_new_tokens - len(row.steps))
        self.tokens: list[Drafted] = []

    def words(self) -> list[list[int]]:
        return split_words(self.guide.tok, [d.token for d in self.tokens])

    def until(self, n_words: int):
        """Draft until a word after the first ``n_words`` has begun (they are then complete), the
        budget is spent or the guide ended."""
        guide, eos = self.guide, self.guide.tok.eos_ids
        while len(self.tokens) < self.budget and not (self.tokens and self.tokens[-1].token in eos) and len(self.words()) <= n_words:
            guide_probs = yield Need(guide)
            m_g, guide_top = top1(guide_probs)
            token = self.row.sampler.choose(guide_probs)
            self.tokens.append(Drafted(token, m_g, float(guide_probs[token]), guide_top, self.row._alternatives(None, guide_probs)))
            if token not in eos:
                guide.push(token)

    def accept(self, base_probs: torch.Tensor, m_b: float):
        """Accept the first word, then each next one while the base stays unsure and does not start it.
        Returns (the base's view at each accepted word: [(m_b, base_probs [V_base])], whether the base
        took over: confident again, or its top token starts the guide's next word)."""
        row, tok = self.row, self.guide.tok
        checks = [(m_b, base_probs)]
        while len(self.words()) > len(checks):
            sofar = self.text + "".join(tok.decode(w) for w in self.words()[: len(checks)])
            probs = yield Need(row.base.follow(sofar))
            next_m_b, base_top = top1(probs)
            if not row.policy.consult_guide(next_m_b):
                return checks, True
            yield from self.until(len(checks) + 1)
            base_word = row.base.tok.decode([base_top]).strip()
            if base_word and tok.decode(self.words()[len(checks)]).strip().startswith(base_word):
                return checks, True
            checks.append((next_m_b, probs))
        return checks, False

    def rewind(self, written: int = 0) -> None:
        """Keep the guide's context to the text as it stands, ``written`` drafted tokens of it taken."""
        self.guide.rewind(self.kept + written, self.row.transcript.text if written else self.text)
