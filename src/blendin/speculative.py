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

    GuideDraft     the guide writes its greedy continuation, one pass a token, while it is sure of
                   it (top-1 >= 0.4), for one-tokenizer pairs. Its distributions along the draft
                   are those an uncertain step then asks for, so a blended step inside an accepted
                   draft costs no guide pass either.
    PromptLookup   the tokens that followed the last earlier occurrence of the text's final n-gram
                   (prompt or answer so far); costs no model at all. Any pair, any method with a base.
    AutoDraft      ``auto``: at each pass, the guide if its draft pays, else lookup if its does, else
                   none, from each model's pass cost as measured on this machine (``PassCost``) and
                   each drafter's acceptance so far (``first_paying``).

The draft length of ``guide`` and ``lookup`` adapts per row as transformers' assisted generation does
("heuristic"): two more after a draft taken whole, one fewer after one cut short, between 1 and
``MAX_DRAFT``; after drafts of which nothing was taken the row rests a growing number of passes
before drafting again. ``auto`` drafts only while a row has its base's passes to itself.

Decided (the issue asked for speculative sampling): a greedy draft accepted where the sampled token
equals it is accepted with probability p(d), the chance speculative sampling gives a one-hot draft,
and the token that replaces it is the method's own draw from p, which then is not d (speculative
sampling's residual); so the output follows the method's distribution exactly (it is the plain
path's, draw for draw), with the same acceptance.
"""

from __future__ import annotations

import math
from typing import Iterator

from .backends.cost import PassCost  # noqa: F401 - measured by the runners, read by AutoDraft
from .blend import top1
from .errors import ConfigError
from .pair import guide_can_draft, speculation_problem
from .types import Need

FIRST_DRAFT = 4  # tokens drafted at a row's first pass
MAX_DRAFT = 8
MAX_REST = 15  # the most base passes a row runs without a draft after drafts that missed


def next_length(k: int, drafted: int, taken: int) -> int:
    """The next draft's length after a draft of ``drafted`` tokens of which ``taken`` were chosen:
    two more if all were, one fewer if not (transformers' assisted generation), in [1, MAX_DRAFT]."""
    return min(MAX_DRAFT, k + 2) if taken >= drafted else max(1, k - 1)


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
        self._adapt(self._taken())
        self._last = 0
        if self._rest or (self.alone_only and _shared(self.session)):
            self._rest = max(0, self._rest - 1)
            return
        k = min(self.k, _room(row))
        tokens = (yield from self.propose(row, k)) if k > 0 else []
        self._set(row, tokens)

    def _set(self, row, tokens: list[int]) -> None:
        """Ask the row's next base pass to read ``tokens`` too (cut to the model's context)."""
        context_length = getattr(row.base.model, "context_length", None)
        if context_length:
            tokens = tokens[: max(0, context_length - len(self.session.ids) - 1)]
        if tokens:
            self.session.draft(tokens)
        self._last, self._taken_before = len(tokens), self.session.advanced
        self.drafted += len(tokens)

    def finish(self) -> None:
        """The row has ended (its last draft needs no more passes)."""

    def _taken(self) -> int:
        """Tokens of the last draft the method chose (the context moved onto them)."""
        return self.session.advanced - self._taken_before

    def _adapt(self, taken: int) -> None:
        """After a draft of ``_last`` tokens of which ``taken`` were chosen: two more next time if all
        were, one fewer if not; after drafts of which nothing was taken, rest 1, 3, 7, ... passes
        (at most ``MAX_REST``) before drafting again, so that text no draft matches costs little."""
        if not self._last:
            return
        self.k = next_length(self.k, self._last, taken)
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
    """The first guide's greedy continuation (one tokenizer on both sides: its ids are the base's),
    ended where the guide's top-1 probability falls below ``CONFIDENCE`` (transformers' assisted
    generation does the same, ``assistant_confidence_threshold``, 0.4 by default): a token the guide
    is unsure of is seldom the one the method picks, and each costs a guide pass."""

    name = "guide"
    CONFIDENCE = 0.4

    def propose(self, row, k: int):
        if row.guide_retired(0):  # a retired guide runs no more passes, drafts included
            return []
        guide = row.guides[0].follow(row.transcript.text)  # the context the plain path would give it
        guide_probs = yield Need(guide)
        tokens: list[int] = []
        while len(tokens) < k:
            m_g, token = top1(guide_probs)
            if token in guide.tok.eos_ids or m_g < self.CONFIDENCE:
                break
            tokens.append(token)
            if len(tokens) < k:
                guide.session.draft([token])
                guide_probs = yield Need(guide, ahead=True)
        return tokens


def expected_tokens(acceptance: float, k: int) -> float:
    """Tokens a pass yields from a draft of ``k`` when each drafted token is taken with probability
    ``acceptance`` (the rest cut at the first refusal), counting the pass's own token (Leviathan et al.
    2023: (1 - a^(k+1)) / (1 - a)).

    >>> expected_tokens(0.0, 4), expected_tokens(1.0, 4), round(expected_tokens(0.5, 2), 3)
    (1.0, 5.0, 1.75)
    """
    if acceptance >= 1:
        return k + 1.0
    return (1 - acceptance ** (k + 1)) / (1 - acceptance)


def first_paying(options: dict, base_seconds, no_draft: float) -> str | None:
    """The first drafter (in the order given) whose next draft promises more tokens a second than no
    draft, or None.

    options: name -> (acceptance, tokens it would draft, seconds a drafted token costs it);
    base_seconds(n): a base pass reading n tokens; no_draft: a pass reading one (``base_seconds(1)``).

    >>> gpu = lambda n: 1.0  # a few more tokens ride along in a pass
    >>> first_paying({"guide": (0.8, 8, 0.9), "lookup": (0.5, 3, 0.0)}, gpu, 1.0)  # a guide pass costs a base pass
    'lookup'
    >>> cpu = lambda n: 0.37 + 0.13 * n  # each token read costs; the guide a quarter of the base's weights
    >>> print(first_paying({"guide": (0.8, 8, 0.27), "lookup": (0.2, 5, 0.0)}, cpu, cpu(1)))  # neither pays
    None
    """
    for name, (acceptance, k, per_token) in options.items():
        if k >= 1 and expected_tokens(acceptance, k) / (base_seconds(k + 1) + k * per_token) > 1.0 / no_draft:
            return name
    return None


class AutoDraft(Drafter):
    """``auto``: before each base pass, the guide (where it can draft) if its draft promises more tokens
    a second on this machine than no draft, else prompt lookup if its does, else no draft
    (``first_paying``). The guide first, not the higher promise: a guide draft also gives BlendIn's
    uncertain steps inside it their guide distributions (no consult pass), which the estimate does
    not count, and on the Qwen pair the guide's drafts were taken more often than lookup's (docs/benchmarks.md,
    "Speculative BlendIn": picking the higher promise was no faster there). Each drafter keeps its
    own draft length, adapted as the others' (two more after a draft taken whole, one fewer after
    one cut short): taken drafts run in phrases, more than a fixed chance a token would say, so the
    length is learnt, not derived.

    Costs are measured, not assumed: each model's ``PassCost`` (kept by its runner, so a server learns
    them once for all requests). Acceptance is this row's own record of each drafter, pooled with all
    rows' (kept beside the base's runner; a first guess of 0.8 before any), with a bonus that fades
    as the pooled record grows, so each drafter is tried before it is judged. (Measured: without the
    bonus, auto on the Qwen pair on this CPU drafted 2 tokens in 1024 and never tried the guide,
    whose own drafts ran at 1.11x the base.) So a guide whose pass costs nearly a base pass (small
    models on a GPU, bound by launching kernels) is not asked, lookup drafts where the text repeats
    and a pass's extra tokens cost little, and on a CPU drafts pay only while they are taken. Only
    while the row has the base's passes to itself: in a batch each drafted token costs a pass about
    what a row does (measured on this project's CPU). The choice changes which passes run, never
    the tokens."""

    name = "auto"
    alone_only = True
    PRIOR = (4.0, 1.0)  # the first guess before any draft: 4 of 5 tokens taken
    ROW_WEIGHT = 4.0  # the pooled record counts as this many of the row's own drafted tokens
    EXPLORE = 0.5  # the optimism on a drafter not yet tried on this model

    def __init__(self, base_session, guide: bool):
        super().__init__(base_session)
        self.guide = GuideDraft(base_session) if guide else None  # lookup needs no object: PromptLookup.lookup
        self.record = {name: [0, 0] for name in (("lookup", "guide") if guide else ("lookup",))}  # taken, refused
        self.lengths = dict.fromkeys(self.record, FIRST_DRAFT)  # each drafter's next draft length
        self.used: str | None = None  # the drafter of the last draft
        self.drafted_by = dict.fromkeys(self.record, 0)  # tokens each drafter proposed

    def prepare(self, row) -> Iterator:
        self._credit()
        self._last, self.used = 0, None
        room = min(MAX_DRAFT, _room(row))
        if room <= 0 or not _started(self.session) or _shared(self.session):
            return  # not with the prompt's pass: in a batch the other rows have not begun yet either
        looked = PromptLookup.lookup(self.session.ids, room, PromptLookup.max_ngram)
        options, base_seconds = self._options(row, room, looked)
        self.used = first_paying(options, base_seconds, base_seconds(1))
        if self.used == "lookup":
            self._set(row, looked[: options["lookup"][1]])
        elif self.used == "guide":
            self._set(row, (yield from self.guide.propose(row, options["guide"][1])))
        if self.used:
            self.drafted_by[self.used] += self._last

    def _options(self, row, room: int, looked: list[int]) -> tuple[dict, object]:
        """What each drafter promises now, as ``first_paying`` reads it: {name: (acceptance, tokens it
        would draft, seconds a drafted token costs it)}, the guide first (where it can draft and is
        not retired), and the base's pass cost by tokens read (1 s a pass before any is measured)."""
        guide = self.guide is not None and not row.guide_retired(0)  # a retired guide drafts no more
        base_cost, guide_cost = _cost(self.session), _cost(row.guides[0].session) if guide else None
        base_seconds = base_cost.seconds if base_cost and base_cost.measured else (lambda n: 1.0)
        options = {}
        if guide:  # a guide not yet timed is taken to cost a base pass
            options["guide"] = (self.acceptance("guide"), min(self.lengths["guide"], room),
                                guide_cost.seconds(1) if guide_cost and guide_cost.measured else base_seconds(1))
        options["lookup"] = (self.acceptance("lookup"), min(self.lengths["lookup"], room, len(looked)), 0.0)
        return options, base_seconds

    def acceptance(self, name: str) -> float:
        """The chance that a token ``name`` drafts is taken, for this row, and optimistic while little
        is known of the drafter on this model (``EXPLORE`` / sqrt(1 + its pooled tokens)): a drafter
        is tried before it is judged, as a bandit's upper confidence bound would."""
        taken, refused = self.record[name]
        pooled = _pooled(self.session).get(name, (0, 0))
        prior = (pooled[0] + self.PRIOR[0]) / (sum(pooled) + sum(self.PRIOR))
        estimate = (taken + self.ROW_WEIGHT * prior) / (taken + refused + self.ROW_WEIGHT)
        return min(0.99, estimate + self.EXPLORE / math.sqrt(1 + sum(pooled)))

    def finish(self) -> None:
        self._credit(ended=True)
        self._last, self.used = 0, None

    def _credit(self, ended: bool = False) -> None:
        """Count the last draft: its tokens taken, and a refusal if it was cut short (not where the
        answer ``ended`` inside it: the rest was never weighed)."""
        if not self._last or self.used is None:
            return
        taken = self._taken()
        counts = (taken, int(taken < self._last and not ended))
        self.lengths[self.used] = next_length(self.lengths[self.used], self._last, taken)
        pooled = _pooled(self.session)
        for record in (self.record, pooled):
            record[self.used] = [x + y for x, y in zip(record.get(self.used, (0, 0)), counts)]


def drafter_for(config, pair, base, guides) -> Drafter | None:
    """The row's drafter for ``config.speculate``, or None (off, or nothing to draft for: no base, or
    under ``guide`` a method that consults no guide).

    ``auto`` (``AutoDraft``) weighs prompt lookup and, where it can draft (``pair.guide_can_draft``),
    the guide, at every pass, and drafts only while a row has the base's passes to itself: measured
    on this project's CPU (docs/benchmarks.md, "Speculative BlendIn"), a batch of 16 rows reading
    drafts is slower than without, since each drafted token costs a pass about what a row does. An
    explicit choice the pair cannot honour is an error (``pair.speculation_problem``: the same line
    ``blendin serve`` refuses to start with, and the CLI before any weights load)."""
    mode = config.speculate
    if mode == "off" or base is None:
        return None
    problem = speculation_problem(config, pair)
    if problem is not None:
        raise ConfigError(problem)
    if mode == "auto":
        return AutoDraft(base.session, guide_can_draft(config, pair)) if getattr(base.model, "drafts", False) else None
    if mode == "lookup":
        return PromptLookup(base.session)
    return GuideDraft(base.session) if guides else None


def _room(row) -> int:
    """Tokens a draft may hold: the answer's room left, less the pass's own token."""
    return row.config.max_new_tokens - len(row.steps) - 1


def _cost(session) -> PassCost | None:
    """The measured pass cost of the session's model (None for a model without a runner)."""
    return getattr(getattr(session, "runner", None), "cost", None)


def _pooled(session) -> dict:
    """Every row's draft record on the session's model (``AutoDraft``); a fresh one without a runner."""
    runner = getattr(session, "runner", None)
    return runner.draft_record if runner is not None and hasattr(runner, "draft_record") else {}


def _started(session) -> bool:
    """Whether the session's model has read anything for it (its prompt, at least)."""
    return getattr(session, "started", True)


def _shared(session) -> bool:
    """Whether other rows share the passes of this session's model (a batch): rows that have begun
    (a row made and waiting its turn holds a session too, but no pass)."""
    runner = getattr(session, "runner", None)
    return runner is not None and any(s is not session and _started(s) for s in list(runner.open))
