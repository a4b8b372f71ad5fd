"""Ways to stop guidance that does not help: small objects the decoding loop asks at uncertain steps.

A policy (``policies``) says whether the base is unsure (m_b < gamma) and how much each guide
weighs. The mitigations here then say whether guidance may go ahead, and each compose with any
method that consults a guide (switch, nudging, blendin), at the events the loop reports:

    allows(tokens, interventions) -> bool   before any guide runs: may this step be guided at all?
    keeps(record) -> bool                   before guide k runs: consult it? (``GuideRecord``: its history;
                                            False retires the guide for the rest of the answer)
    accepts(base_probs, base_token) -> bool after guide k ran: does its distribution count?
    scale(record) -> float                  its weight's multiplier (``weighs``: True where it has one)
    trust(record) -> float                  its proven reliability, which the rule weighs it and its
                                            confidence against the other guides' by (``blend.trusted_weights``)

A mitigation that says no is counted by its ``name`` in the row's ``held`` (the steps it made the
base decide alone). ``Oversight`` asks them for one row and keeps that row's state: each guide's
``GuideRecord`` and the counts; the mitigation objects hold only their settings. So a new mitigation
is one new class here and one line in ``mitigations_for``; the loop (``decoding``) knows none by name.

    >>> budget = InterventionBudget(0.15)
    >>> budget.allows(tokens=10, interventions=1), budget.allows(tokens=10, interventions=2)
    (True, False)
    >>> AgreementFilter(k=2).accepts(torch.tensor([0.3, 0.2, 0.5]), base_token=1)
    False
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import BlendConfig
from .errors import message_line


@dataclass
class GuideRecord:
    """One guide's history in one generation: what the mitigations read and the results report.

    reliability: the guidance shown so far, (1 + sum of s) / (1 + observed), where each consultation
    observes s = min(1, p_b[t_k] / m_b): the base's probability of the guide's top token, relative
    to the base's own top token (1 when the guide's top token is the base's, 0 when the base gives it
    nothing or has no such token). The prior (one observation of s = 1) trusts a guide until it has
    shown otherwise, and keeps one early disagreement from silencing it.
    """

    name: str
    consulted: int = 0  # uncertain steps where it ran (its passes there; ``passes`` counts all)
    kept: int = 0  # tokens its guidance went into (interventions by this guide; a nudge counts each token it wrote)
    filtered: int = 0  # it ran, and the agreement filter set its distribution aside
    observed: int = 0
    agreement_sum: float = 0.0
    retired_at: int | None = None  # the token index at which it was last consulted, once retired
    passes_saved: int = 0  # uncertain steps it was not consulted at, once retired
    retired_by: "Mitigation | None" = None  # the mitigation that retired it
    failed_at: int | None = None  # the token index at which it stopped answering (``GuideDown``)
    error: str | None = None  # what it answered instead, in one line

    @property
    def reliability(self) -> float:
        return (1.0 + self.agreement_sum) / (1.0 + self.observed)

    def observe(self, base_top_prob: float, agreement: float) -> None:
        """Update the reliability with one consultation (see the class docstring)."""
        share = min(1.0, agreement / base_top_prob) if base_top_prob > 0 else 0.0
        self.agreement_sum += share
        self.observed += 1

    def stats(self, passes: int) -> dict:
        """What a result reports of this guide; ``passes``: every forward pass it ran (its track's)."""
        out = {"guide": self.name, "passes": passes, "consulted": self.consulted, "interventions": self.kept,
               "filtered": self.filtered, "reliability": round(self.reliability, 6), "retired_at": self.retired_at,
               "passes_saved": self.passes_saved}
        if self.failed_at is not None:  # it stopped answering: the base decided alone from then on
            out.update(failed_at=self.failed_at, error=self.error)
        return out


class Mitigation:
    """The defaults: allow, keep, accept, weight 1. A mitigation overrides what it decides.

    ``weighs``: it scales a guide's weight in a mixture (``scale``), which a method whose guide
    writes whole words has none of (nudging): such a method refuses it (``BlendConfig``)."""

    name = "none"
    weighs = False

    def allows(self, tokens: int, interventions: int) -> bool:
        return True

    def keeps(self, record: GuideRecord) -> bool:
        return True

    def accepts(self, base_probs: torch.Tensor, base_token: int | None) -> bool:
        return True

    def scale(self, record: GuideRecord) -> float:
        return 1.0

    def trust(self, record: GuideRecord) -> float:
        return 1.0


@dataclass(frozen=True)
class InterventionBudget(Mitigation):
    """The base decides alone while the rate so far (interventions / tokens) is above ``max_rate``.

    A cap, not a switch-off: the rate falls as the base writes, and guidance comes back below it
    (the reference's ``--max_intervention_rate``, 0.15 on its Nudging path)."""

    max_rate: float
    name = "budget"

    def allows(self, tokens: int, interventions: int) -> bool:
        """A budget of 0 allows nothing: "never guide" (the rate so far, 0, would otherwise let each
        uncertain step through, and the first one always: no token, no rate yet)."""
        return self.max_rate > 0 and (tokens == 0 or interventions / tokens <= self.max_rate)


@dataclass(frozen=True)
class AgreementFilter(Mitigation):
    """A guide counts only when its top token (in the base vocabulary) is among the base's top ``k``
    (the reference's ``--enable_agreement_filter``, k = 5). Its pass is spent already: this keeps
    implausible guidance out, it saves nothing."""

    k: int
    name = "agreement"

    def accepts(self, base_probs: torch.Tensor, base_token: int | None) -> bool:
        if base_token is None:  # the guide's top token has no twin in the base vocabulary
            return False
        k = min(self.k, base_probs.shape[-1])
        # ties at the k-th probability count as inside (topk would pick among them arbitrarily); a
        # token the base gives nothing is never among its top k, even where fewer than k have mass
        chosen = base_probs[base_token]
        return bool(chosen > 0 and chosen >= torch.topk(base_probs, k).values[-1])


@dataclass(frozen=True)
class Retirement(Mitigation):
    """Stop consulting a guide whose reliability is below ``floor`` after ``after`` consultations;
    its passes at later uncertain steps are saved (``GuideRecord.passes_saved``). A retired guide
    observes nothing more, so it stays retired for the rest of the answer."""

    floor: float
    after: int = 8
    name = "retire"

    def keeps(self, record: GuideRecord) -> bool:
        return record.observed < self.after or record.reliability >= self.floor


@dataclass(frozen=True)
class ReliabilityWeight(Mitigation):
    """Each guide's weight scaled by its reliability shown so far (before this step's observation);
    the base keeps what the guides lose."""

    name = "reliability"
    weighs = True

    def scale(self, record: GuideRecord) -> float:
        return record.reliability


@dataclass(frozen=True)
class ProfileWeight(Mitigation):
    """Each guide trusted as far as a labelled sample proved (``profile.Profile``, ``--profile``): the
    rule weighs it by r_k, and its confidence against the other guides' by r_k too
    (``blend.trusted_weights``); a guide weighed 0 is never consulted, its passes saved
    (``passes_saved``). r_k = 1 for every guide: the plain rule's weights, to the bit."""

    reliabilities: tuple  # (guide name, r_k) pairs
    name = "profile"
    weighs = True

    def keeps(self, record: GuideRecord) -> bool:
        return self.trust(record) > 0.0

    def trust(self, record: GuideRecord) -> float:
        return dict(self.reliabilities).get(record.name, 1.0)


class Oversight:
    """One row's mitigations and their state: each guide's ``GuideRecord`` and ``held``, the uncertain
    steps each mitigation made the base decide alone at (by its ``name``). The loop reports each
    event and reads back a verdict; a verdict of no is the ``Mitigation`` that said it (None: go on).

        >>> o = Oversight((InterventionBudget(0.0),), ["g"])
        >>> o.allows(tokens=0, interventions=0), o.held
        (False, {'budget': 1})
    """

    def __init__(self, mitigations: tuple[Mitigation, ...], guide_names: list[str]):
        self.mitigations = tuple(mitigations)
        self.records = [GuideRecord(name) for name in guide_names]
        self.held: dict[str, int] = {}

    def allows(self, tokens: int, interventions: int) -> bool:
        """May this uncertain step be guided at all? A refusal is counted (the base decides alone)."""
        refuser = next((m for m in self.mitigations if not m.allows(tokens, interventions)), None)
        if refuser is not None:
            self.hold(refuser)
        return refuser is None

    def consults(self, k: int, tokens: int) -> Mitigation | None:
        """Consult guide ``k`` at token ``tokens``? None if so; else the mitigation that retired it,
        now or earlier (its pass is saved: ``passes_saved``)."""
        record = self.records[k]
        if record.retired_by is None:
            record.retired_by = next((m for m in self.mitigations if not m.keeps(record)), None)
            if record.retired_by is None:
                return None
            record.retired_at = tokens
        record.passes_saved += 1
        return record.retired_by

    def retired(self, k: int) -> bool:
        """Whether guide ``k`` is retired (a drafter then does not run it either)."""
        return self.records[k].retired_by is not None

    def judge(self, k: int, base_probs: torch.Tensor, base_top_prob: float, base_token: int | None) -> Mitigation | None:
        """Record one consultation of guide ``k``, whose top token is ``base_token`` in the base
        vocabulary (None: no twin there); its reliability observes it. None if its guidance counts,
        else the mitigation that set it aside. ``base_probs``: [V_base]."""
        record = self.records[k]
        refuser = next((m for m in self.mitigations if not m.accepts(base_probs, base_token)), None)
        record.consulted += 1
        record.filtered += refuser is not None
        record.observe(base_top_prob, 0.0 if base_token is None else float(base_probs[base_token]))
        return refuser

    def scale(self, k: int) -> float:
        """Guide ``k``'s weight multiplier, from its record before this step's observation."""
        scale = 1.0
        for m in self.mitigations:
            scale *= m.scale(self.records[k])
        return scale

    def trust(self, k: int) -> float:
        """Guide ``k``'s proven reliability (1.0 without a profile)."""
        trust = 1.0
        for m in self.mitigations:
            trust *= m.trust(self.records[k])
        return trust

    def fail(self, k: int, error: BaseException, tokens: int) -> None:
        """Guide ``k`` did not answer at token ``tokens``: retired for the rest of the answer (the base
        decides alone where it would have guided), the error kept for the result."""
        record = self.records[k]
        record.retired_by, record.retired_at, record.failed_at = GUIDE_DOWN, tokens, tokens
        record.error = message_line(error)

    def hold(self, refuser: Mitigation) -> None:
        """Count an uncertain step where ``refuser`` made the base decide alone."""
        self.held[refuser.name] = self.held.get(refuser.name, 0) + 1

    def intervened(self, k: int, tokens: int = 1) -> None:
        """Guide ``k``'s guidance went into ``tokens`` tokens (its ``interventions``)."""
        self.records[k].kept += tokens


class GuideDown(Mitigation):
    """Not a setting: what retires a guide that stopped answering (``Oversight.fail``); the steps the
    base then decided alone are counted under its name in ``held``."""

    name = "guide down"


GUIDE_DOWN = GuideDown()


def mitigations_for(config: BlendConfig) -> tuple[Mitigation, ...]:
    """The mitigations ``config`` turns on, in the order the loop asks them."""
    out: list[Mitigation] = []
    if config.max_intervention_rate is not None:
        out.append(InterventionBudget(config.max_intervention_rate))
    if config.profile is not None:
        profile = config.profile
        out.append(ProfileWeight(tuple((g, profile.reliability(g)) for g in profile.guides)))
    if config.retire_below is not None:
        out.append(Retirement(config.retire_below, config.retire_after))
    if config.agreement_top_k is not None:
        out.append(AgreementFilter(config.agreement_top_k))
    if config.reliability:
        out.append(ReliabilityWeight())
    return tuple(out)
