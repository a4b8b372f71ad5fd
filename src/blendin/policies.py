"""The per-step rule of each method: whether to consult the guide, and with what weight.

Every policy answers two questions, from numbers only (no tensors, no state):

    consult_guide(base_top_prob) -> bool        is the base unsure enough to ask the guide?
    guide_weight(m_b, m_g, agreement) -> float  alpha, the guide's weight in the mixture
    weights(m_b, [m_k], [agreement_k]) -> [w_k] the same for several guides (one guide: [alpha])

and says who writes once the guide is consulted (``writes``), and how such a step is labelled
(``source``: "blend" for a mixture, "guide" where the guide's distribution decides alone):
    "token"  one token from the mixture alpha * p_g + (1 - alpha) * p_b   (blendin, switch)
    "words"  the guide writes whole words until the base is confident again (nudging)
    "all"    the guide writes everything; the base is never run            (guide)

    >>> p = policy_for(BlendConfig(method="blendin", gamma=0.4))
    >>> p.consult_guide(0.5), p.consult_guide(0.3)
    (False, True)
    >>> p.guide_weight(0.25, 0.75, 0.5)
    0.8
"""

from __future__ import annotations

from dataclasses import dataclass

from .blend import auto_alpha, guide_weights, split_alpha, trusted_weights
from .config import BlendConfig


@dataclass(frozen=True)
class BaseOnly:
    writes: str = "token"
    source: str = "base"

    def consult_guide(self, base_top_prob: float) -> bool:
        return False

    def guide_weight(self, base_top_prob, guide_top_prob, agreement) -> float:
        return 0.0

    def weights(self, base_top_prob, guide_top_probs, agreements) -> list[float]:
        return [0.0 for _ in guide_top_probs]


@dataclass(frozen=True)
class GuideOnly:
    writes: str = "all"
    source: str = "guide"

    def consult_guide(self, base_top_prob: float) -> bool:
        return True

    def guide_weight(self, base_top_prob, guide_top_prob, agreement) -> float:
        return 1.0

    def weights(self, base_top_prob, guide_top_probs, agreements) -> list[float]:
        return split_alpha(1.0, guide_top_probs)


@dataclass(frozen=True)
class TokenSwitch:
    """At an uncertain step (m_b < gamma), decode from the guide's distribution alone (greedy: its top
    token). The gamma rule here is shared by nudging and BlendIn, which differ in what follows."""

    gamma: float
    writes: str = "token"
    source: str = "guide"

    def consult_guide(self, base_top_prob: float) -> bool:
        return base_top_prob < self.gamma

    def guide_weight(self, base_top_prob, guide_top_prob, agreement) -> float:
        return 1.0

    def weights(self, base_top_prob, guide_top_probs, agreements, trust=None) -> list[float]:
        """Several guides: their mixture alone, split by confidence (one guide: [1.0]); ``trust``: each
        guide's proven reliability (``blend.trusted_weights``; None: all 1)."""
        if trust is not None:
            return trusted_weights(base_top_prob, guide_top_probs, agreements, trust, alpha=1.0)
        return split_alpha(1.0, guide_top_probs)


@dataclass(frozen=True)
class Nudging(TokenSwitch):
    """At an uncertain step the guide writes whole words (Fei et al. 2024); see Generation._nudge."""

    writes: str = "words"


@dataclass(frozen=True)
class BlendIn(TokenSwitch):
    """Intervene below gamma with alpha = clip(m_g/(m_b+m_g) + 0.1 p_b[t_g], 0, 1), or a fixed alpha."""

    alpha: float | None = None
    source: str = "blend"

    def guide_weight(self, base_top_prob, guide_top_prob, agreement) -> float:
        if self.alpha is not None:
            return self.alpha
        return auto_alpha(base_top_prob, guide_top_prob, agreement)

    def weights(self, base_top_prob, guide_top_probs, agreements, trust=None) -> list[float]:
        """``blend.guide_weights`` (a fixed alpha is the guides' whole share, split by confidence);
        ``trust``: each guide's proven reliability (``blend.trusted_weights``; None: all 1)."""
        if trust is not None:
            return trusted_weights(base_top_prob, guide_top_probs, agreements, trust, alpha=self.alpha)
        if self.alpha is not None:
            return split_alpha(self.alpha, guide_top_probs)
        return guide_weights(base_top_prob, guide_top_probs, agreements)


def policy_for(config: BlendConfig):
    """The policy object for ``config.method``, at ``config.effective_gamma`` (gamma, moved by a
    measured capability gap where one is given)."""
    gamma = config.effective_gamma
    return {
        "base": lambda: BaseOnly(),
        "guide": lambda: GuideOnly(),
        "switch": lambda: TokenSwitch(gamma),
        "nudging": lambda: Nudging(gamma),
        "blendin": lambda: BlendIn(gamma, alpha=config.alpha),
    }[config.method]()
