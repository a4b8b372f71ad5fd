"""Ways to stop guidance that does not help: small objects the decoding loop asks at uncertain steps.

A policy (``policies``) says whether the base is unsure (m_b < gamma) and how much each guide
weighs. The mitigations here then say whether guidance may go ahead, and each compose with any
method that consults a guide (switch, nudging, blendin), in the order the loop asks them:

    allows(tokens, interventions) -> bool   before any guide runs: may this step be guided at all?
    keeps(record) -> bool                   before guide k runs: consult it? (``GuideRecord``: its history)
    accepts(base_probs, base_token) -> bool after guide k ran: does its distribution count?
    scale(record) -> float                  its weight's multiplier

The state they read lives in one ``GuideRecord`` per guide and row, kept by the loop; the objects
themselves hold only their settings.

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
    kept: int = 0  # its distribution went into the token (interventions by this guide)
    filtered: int = 0  # it ran, and the agreement filter set its distribution aside
    observed: int = 0
    agreement_sum: float = 0.0
    retired_at: int | None = None  # the token index at which it was last consulted, once retired
    passes_saved: int = 0  # uncertain steps it was not consulted at, once retired

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
        return {"guide": self.name, "passes": passes, "consulted": self.consulted, "interventions": self.kept,
                "filtered": self.filtered, "reliability": round(self.reliability, 6), "retired_at": self.retired_at,
                "passes_saved": self.passes_saved}


class Mitigation:
    """The defaults: allow, keep, accept, weight 1. A mitigation overrides what it decides."""

    name = "none"

    def allows(self, tokens: int, interventions: int) -> bool:
        return True

    def keeps(self, record: GuideRecord) -> bool:
        return True

    def accepts(self, base_probs: torch.Tensor, base_token: int | None) -> bool:
        return True

    def scale(self, record: GuideRecord) -> float:
        return 1.0


@dataclass(frozen=True)
class InterventionBudget(Mitigation):
    """The base decides alone while the rate so far (interventions / tokens) is above ``max_rate``.

    A cap, not a switch-off: the rate falls as the base writes, and guidance comes back below it
    (the reference's ``--max_intervention_rate``, 0.15 on its Nudging path)."""

    max_rate: float
    name = "budget"

    def allows(self, tokens: int, interventions: int) -> bool:
        return tokens == 0 or interventions / tokens <= self.max_rate


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
        # ties at the k-th probability count as inside (topk would pick among them arbitrarily)
        return bool(base_probs[base_token] >= torch.topk(base_probs, k).values[-1])


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

    def scale(self, record: GuideRecord) -> float:
        return record.reliability


def mitigations_for(config: BlendConfig) -> tuple[Mitigation, ...]:
    """The mitigations ``config`` turns on, in the order the loop asks them."""
    out: list[Mitigation] = []
    if config.max_intervention_rate is not None:
        out.append(InterventionBudget(config.max_intervention_rate))
    if config.retire_below is not None:
        out.append(Retirement(config.retire_below, config.retire_after))
    if config.agreement_top_k is not None:
        out.append(AgreementFilter(config.agreement_top_k))
    if config.reliability:
        out.append(ReliabilityWeight())
    return tuple(out)
