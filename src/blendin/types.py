"""Frozen records of a generation: one ``Step`` per generated token, one ``GenerationResult`` per prompt.

Probabilities here are plain floats in [0, 1]. "Guide fields" (``guide_top_prob``, ``alpha``,
``agreement``, ``guide_mass_exact``) are ``None`` on steps where the guide was not consulted;
``base_top_prob`` is ``None`` where the base was not run (the ``guide`` method, and tokens inside a
nudging word after its first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Source = Literal["base", "blend", "guide"]
StopReason = Literal["eos", "length", "stop", "repeat", "error"]


@dataclass(frozen=True)
class Step:
    """One decoded token.

    token: its text (may be "" for an end-of-sequence token, or while a multi-byte character is
        still incomplete; the text arrives with the token that completes it).
    source: "base" (the base decided alone), "blend" (a mixture of both) or "guide" (the guide's
        distribution alone: the guide method, switch, and the words nudging writes).
    base_top_prob: m_b, the base's top-1 probability at this step.
    guide_top_prob: m_g, the guide's top-1 probability (in its own vocabulary).
    alpha: the guide's weight in the distribution this token was decoded from.
    agreement: p_b[t_g], the base's probability of the guide's top token (in base vocabulary).
    chosen_prob: the chosen token's probability in the distribution it was decoded from
        (before temperature and top-p).
    guide_mass_exact: share of the guide's probability mass on tokens with an exact base counterpart.
    token_id: the token's id in the vocabulary of the model that wrote it (the base's for
        base/blend steps and for switch, the guide's for guide and nudging steps).
    alternatives: the most likely tokens of each distribution at this step, for traces and logprobs:
        "base", "guide" (in its own vocabulary) and "blend" (the mixture a blended or switched token
        was decoded from), each [[text, prob], ...] best first.
    guides: with several guides or any mitigation on, each guide consulted at this step:
        {"guide": its index, "top": its top token's text, "m_g", "weight" (its share of the mixture;
        0 when set aside), "agreement" (p_b of its top token), "reliability" (as shown before this
        step), "kept" (False: the agreement filter set it aside)}. With several guides, guide_top_prob,
        agreement and guide_mass_exact are the heaviest guide's, and alpha is the guides' whole weight.
    """

    token: str
    source: Source
    base_top_prob: float | None
    guide_top_prob: float | None
    alpha: float | None
    agreement: float | None
    chosen_prob: float
    guide_mass_exact: float | None = None
    token_id: int | None = None
    alternatives: dict | None = None  # with BlendConfig.trace_top: {"base"/"guide"/"blend": [[text, prob], ...]}
    guides: tuple | None = None  # with several guides or a mitigation: one dict per guide consulted (see above)

    @property
    def intervened(self) -> bool:
        return self.source != "base"


@dataclass(frozen=True)
class GenerationResult:
    """Everything ``blendin generate --json`` prints, for one prompt."""

    text: str
    method: str
    gamma: float
    alpha: float | str
    base: str
    guide: str
    tokens: int
    interventions: int
    intervention_rate: float
    mean_alpha: float | None
    stop_reason: StopReason
    seconds: float
    tokens_per_second: float
    vocab_coverage: dict | None
    steps: tuple[Step, ...]
    requests: int = 0  # HTTP round trips to remote models
    remote: dict | None = None  # per remote model: url, prompt_protocol, top_k, chunk, mean top-k mass
    error: str | None = None  # why this row failed (stop_reason "error"); the other rows of its batch go on
    guides: tuple | None = None  # per guide: passes, consulted, interventions, filtered, reliability, retired_at, passes_saved
    held: dict | None = None  # uncertain steps the base decided alone at, by mitigation ("budget", "agreement", "retire")
    speculation: dict | None = None  # with --speculate: drafter, drafted, accepted (tokens), base_passes
    unavailable: bool = False  # the row failed because a model did not answer (errors.ModelUnavailable): a rerun may succeed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = [asdict(s) for s in self.steps]
        return d

    def summary(self) -> str:
        """One line: tokens, interventions, mean alpha, speed, why it stopped."""
        alpha = "-" if self.mean_alpha is None else f"{self.mean_alpha:.2f}"
        return (
            f"{self.method}: {self.tokens} tokens, {self.interventions} interventions "
            f"({100 * self.intervention_rate:.1f}%), mean alpha {alpha}, "
            f"{self.tokens_per_second:.1f} tokens/s, stop: {self.stop_reason}"
        )


@dataclass(frozen=True)
class Need:
    """What a row's coroutine yields when it needs ``track``'s next-token probabilities (a
    ``decoding.Track``: one model's view of the row); the driver sends them back. ``ahead``: those
    after the tokens drafted on its session, for a drafter (``speculative``). The message between the
    loop and its drafters, so it lives below both."""

    track: object
    ahead: bool = False
