"""Speculative BlendIn: draft a few tokens cheaply, let the base read them all in one pass.

    config = BlendConfig(method="blendin", speculate="guide")   # or "lookup", "auto"

Before a row's base pass, its drafter proposes up to k tokens that continue the text, and the base
session is asked to read them in the same pass (``PrefixSession.draft``); the pass returns the base's
distribution after each drafted token too, and keeps them "ahead" of the context. The method then
decides each token exactly as without a draft, from the same distributions: when the token it
chooses is the drafted one, the base's next distribution is already there and costs no pass; at the
first token it chooses otherwise, the rest of the draft is dropped and the cache rolled back to it.
So a draft changes what a pass reads, never what the method sees: the tokens, the steps and the
interventions are the plain path's, greedy or sampled (the sampler draws the same numbers in the
same order). Where a drafted token is what the method picks, one base pass serves several tokens.

Drafters (one object per row, asked by ``Generation`` before each base pass that must run):

    GuideDraft     the guide writes its greedy continuation, one pass a token, for one-tokenizer
                   pairs. Its distributions along the draft are those an uncertain step then asks
                   for, so a blended step inside an accepted draft costs no guide pass either.
    PromptLookup   the tokens that followed the last earlier occurrence of the text's final n-gram
                   (prompt or answer so far); costs no model at all. Any pair, any method with a base.

The draft length adapts per row as transformers' assisted generation does ("heuristic"): two more
after a draft taken whole, one fewer after one cut short, between 1 and ``MAX_DRAFT``; after drafts
of which nothing was taken the row rests a growing number of passes before drafting again. Under
``auto`` a row drafts only while it has its base's passes to itself (measured: see ``drafter_for``).

Decided (the issue asked for speculative sampling): a greedy draft accepted where the sampled token
equals it is accepted with probability p(d), the chance speculative sampling gives a one-hot draft,
and the token that replaces it is drawn from p itself; so the output follows the method's
distribution exactly (it is the plain path's, draw for draw), with the same acceptance.
"""

from __future__ import annotations

from typing import Iterator

from .errors import ConfigError

FIRST_DRAFT = 4  # tokens drafted at a row's first pass
MAX_DRAFT = 8
MAX_REST = 15  # the most base passes a row runs without a draft after drafts that missed


class Drafter:
    """Proposes tokens (base vocabulary) after a row's base context; keeps that row's draft length.
    ``drafted`` counts the tokens proposed; ``accepted`` those the method then chose. ``alone_only``
    (``auto``): draft only while the row has its base's passes to itself (see ``drafter_for``)."""

    name = "?"
    alone_only = False

    def __init__(self, base_session):
        self.session = base_session  # the row's base session, which the drafts are set on
        self.k = FIRST_DRAFT
        self.drafted = 0
        self._last = 0  # the last draft's length
        self._taken_before = 0  # session.advanced when it was set
        self._misses = 0  # drafts in a row of which nothing was taken
        self._rest = 0  # base passes to run without a draft before trying again

    @property
    def accepted(self) -> int:
        return self.session.advanced

    def prepare(self, row) -> Iterator:
        """Set a draft on ``row.base``'s session before its pass (a coroutine of ``Need``s, as the
        row's own: a guide drafter's passes are batched with the other rows')."""
        self._adapt(self.session.advanced - self._taken_before)
        self._last = 0
        if self._rest or (self.alone_only and _shared(self.session)):
            self._rest = max(0, self._rest - 1)
            return
        room = row.config.max_new_tokens - len(row.steps) - 1  # the pass's own token needs no draft
        k = min(self.k, room)
        tokens = (yield from self.propose(row, k)) if k > 0 else []
        context_length = getattr(row.base.model, "context_length", None)
        if context_length:
            tokens = tokens[: max(0, context_length - len(self.session.ids) - 1)]
        if tokens:
            self.session.draft(tokens)
        self._last, self._taken_before = len(tokens), self.session.advanced
        self.drafted += len(tokens)

    def _adapt(self, taken: int) -> None:
        """After a draft of ``_last`` tokens of which ``taken`` were chosen: two more next time if all
        were, one fewer if not; after drafts of which nothing was taken, rest 1, 3, 7, ... passes
        (at most ``MAX_REST``) before drafting again, so that text no draft matches costs little."""
        if not self._last:
            return
        self.k = min(MAX_DRAFT, self.k + 2) if taken >= self._last else max(1, self.k - 1)
        self._misses = 0 if taken else self._misses + 1
        self._rest = min(MAX_REST, 2 ** self._misses - 1)

    def propose(self, row, k: int) -> Iterator:
        raise NotImplementedError


class PromptLookup(Drafter):
    """n-gram lookup over the base's own context (prompt lookup decoding): find the last earlier place
    where the context's final ``n`` tokens occurred (n from ``max_ngram`` down to 1), propose what
    followed them there.

    >>> PromptLookup.lookup([5, 6, 7, 8, 9, 5, 6], 3)
    [7, 8, 9]
    >>> PromptLookup.lookup([1, 2, 3], 2)
    []
    """

    name = "lookup"
    max_ngram = 3

    def propose(self, row, k: int):
        return self.lookup(row.base.session.ids, k, self.max_ngram)
        yield  # a coroutine that never needs a model

    @staticmethod
    def lookup(ids: list[int], k: int, max_ngram: int = 3) -> list[int]:
        for n in range(min(max_ngram, len(ids) - 1), 0, -1):
            tail = ids[-n:]
            for start in range(len(ids) - n - 1, -1, -1):
                if ids[start : start + n] == tail:
                    return ids[start + n : start + n + k]
        return []


class GuideDraft(Drafter):
    """The first guide's greedy continuation (one tokenizer on both sides: its ids are the base's)."""

    name = "guide"

    def propose(self, row, k: int):
        from .blend import top1
        from .decoding import Need

        guide = row.guides[0].follow(row.transcript.text)  # the context the plain path would give it
        guide_probs = yield Need(guide)
        tokens: list[int] = []
        while len(tokens) < k:
            _, token = top1(guide_probs)
            if token in guide.tok.eos_ids:
                break
            tokens.append(token)
            if len(tokens) < k:
                guide.session.draft([token])
                guide_probs = yield Need(guide, ahead=True)
        return tokens


def drafter_for(config, pair, base, guides) -> Drafter | None:
    """The row's drafter for ``config.speculate``, or None (off, or nothing to draft for).

    ``auto`` takes the guide where it can draft (a guide consulted, one tokenizer, both models able
    to read drafts), else prompt lookup, and drafts only while a row has the base's passes to itself:
    measured on this project's CPU (README, "Speculative BlendIn"), a batch of 16 rows reading drafts
    is slower than without, since each drafted token costs a pass about what a row does. An explicit
    choice the pair cannot honour is an error."""
    mode = config.speculate
    if mode == "off" or base is None:
        return None
    if not getattr(base.model, "drafts", False):
        if mode == "auto":
            return None
        raise ConfigError(f"--speculate {mode} needs a base that scores drafted tokens in one pass (a local model); "
                          f"'{base.model.name}' does not: use --speculate off")
    guide_ok = bool(guides) and pair.bridges[0].identity and getattr(guides[0].model, "drafts", False)
    if mode == "guide" and not guide_ok:
        if not guides:
            why = "the method consults no guide"
        elif not pair.bridges[0].identity:
            why = "the guide has another tokenizer than the base"
        else:
            why = f"the guide '{guides[0].model.name}' cannot read drafted tokens (a model on a server)"
        raise ConfigError(f"--speculate guide drafts with the guide in the base's own vocabulary, and {why}; "
                          f"use --speculate lookup (any pair) or auto")
    drafter = PromptLookup(base.session) if mode == "lookup" or (mode == "auto" and not guide_ok) else GuideDraft(base.session)
    drafter.alone_only = mode == "auto"
    return drafter


def _shared(session) -> bool:
    """Whether other open rows share the passes of this session's model (a batch)."""
    runner = getattr(session, "runner", None)
    return runner is not None and len(runner.open) > 1
