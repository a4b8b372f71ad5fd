"""BlendIn's mixing math, in probability space. Pure: inputs are never modified.

Both distributions must already be in the *base* vocabulary (see ``vocab.VocabBridge``):
``base_probs`` and ``guide_probs`` are float tensors of shape [V_base] that sum to 1.

    >>> auto_alpha(base_top_prob=0.25, guide_top_prob=0.75, agreement=0.5)
    0.8
    >>> mix(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5]), alpha=0.5).tolist()
    [0.25, 0.5, 0.25]

Several guides (``guide_weights``, ``mix_many``) generalise both: one guide gives the same numbers,
bit for bit.
"""

from __future__ import annotations

import math

import torch

AGREEMENT_BONUS = 0.1  # the paper's weight on p_b[t_g]


def top1(probs: torch.Tensor) -> tuple[float, int]:
    """(probability, id) of the most likely token; ties go to the lowest id."""
    idx = int(torch.argmax(probs))
    return float(probs[idx]), idx


def auto_alpha(base_top_prob: float, guide_top_prob: float, agreement: float) -> float:
    """alpha = clip(m_g / (m_b + m_g) + 0.1 * p_b[t_g], 0, 1).

    m_b, m_g: the top-1 probabilities of base and guide; agreement: p_b[t_g], the base's probability
    of the guide's top token (0 when the base has no such token). The expression is evaluated in this
    exact order, so a value recomputed from a step's JSON fields matches bit for bit.
    """
    m_b, m_g = float(base_top_prob), float(guide_top_prob)
    if m_b + m_g <= 0:  # subtle: impossible for real distributions, but keep the math total
        return 0.0
    alpha = m_g / (m_b + m_g) + AGREEMENT_BONUS * float(agreement)
    return min(1.0, max(0.0, alpha))


def guide_weights(base_top_prob: float, guide_top_probs: list[float], agreements: list[float]) -> list[float]:
    """BlendIn's alpha for several guides: each guide's weight w_k, the base keeping 1 - sum(w).

        w_k = m_k / (m_b + sum_j m_j) + 0.1 * p_b[t_k]      (each at least 0)
        scaled down together (w_k / sum_j w_j) when their sum passes 1

    The weights' float sum never passes 1 (in order or exactly, ``math.fsum``): scaling to 1 may land
    an ulp above it, 1.0000000000000002, which takes the largest weight down by that much.

    m_k is guide k's top-1 probability, p_b[t_k] the base's probability of guide k's top token. Each
    guide's confidence is weighed against the base's and the other guides', so a second guide never
    raises the first one's weight, and the agreement bonus rewards each guide the base agrees with.
    One guide gives ``auto_alpha`` bit for bit (scaling a sum above 1 down to 1 is the clip).

    >>> guide_weights(0.25, [0.75], [0.5]) == [auto_alpha(0.25, 0.75, 0.5)]
    True
    >>> [round(w, 3) for w in guide_weights(0.3, [0.6, 0.3], [0.3, 0.0])]
    [0.53, 0.25]
    """
    m_b = float(base_top_prob)
    total_m = m_b + sum(float(m) for m in guide_top_probs)
    if total_m <= 0:  # subtle: impossible for real distributions, but keep the math total
        return [0.0 for _ in guide_top_probs]
    raw = [max(0.0, float(m) / total_m + AGREEMENT_BONUS * float(a)) for m, a in zip(guide_top_probs, agreements)]
    total = sum(raw)
    return _at_most_one([w / total for w in raw] if total > 1.0 else raw)


def split_alpha(alpha: float, guide_top_probs: list[float]) -> list[float]:
    """A fixed alpha (the guides' whole share) split among several guides in proportion to their
    confidence m_k; one guide gets ``alpha`` exactly. An alpha of at most 1 gives weights whose float
    sum is at most 1 (see ``guide_weights``).

    >>> [round(w, 3) for w in split_alpha(0.5, [0.6, 0.2])], split_alpha(0.3, [0.9])
    ([0.375, 0.125], [0.3])
    """
    total = sum(float(m) for m in guide_top_probs)
    if total <= 0:
        weights = [alpha / len(guide_top_probs) for _ in guide_top_probs]
    else:
        weights = [alpha * (float(m) / total) for m in guide_top_probs]
    return _at_most_one(weights) if alpha <= 1.0 else weights


def trusted_weights(base_top_prob: float, guide_top_probs: list[float], agreements: list[float], trust: list[float],
                    alpha: float | None = None) -> list[float]:
    """The guides' weights when each guide k is trusted t_k in [0, 1] (a reliability profile's r_k):

        w_k = t_k * (m_k / (m_b + m_k + sum_{j != k} t_j m_j) + 0.1 * p_b[t_k])   (auto alpha)
        w_k = t_k * alpha * t_k m_k / sum_j t_j m_j                                (a fixed alpha)

    scaled down together if their sum passes 1. A guide's own weight shrinks with its trust, and a
    distrusted guide's confidence counts for less against the others': a second guide that proved
    worse no longer halves the first one's weight. All t = 1 gives ``guide_weights`` (or
    ``split_alpha``) bit for bit; one guide gives t * its weight without the trust, bit for bit.

    >>> trusted_weights(0.25, [0.75], [0.5], [0.5]) == [0.5 * auto_alpha(0.25, 0.75, 0.5)]
    True
    >>> [round(w, 3) for w in trusted_weights(0.3, [0.9, 0.9], [0.0, 0.0], [1.0, 0.0])]
    [0.75, 0.0]
    """
    plain = split_alpha(alpha, guide_top_probs) if alpha is not None else guide_weights(base_top_prob, guide_top_probs, agreements)
    if all(t == 1.0 for t in trust):
        return plain
    if len(guide_top_probs) == 1:
        return [plain[0] * trust[0]]
    trusted = [float(t) * float(m) for t, m in zip(trust, guide_top_probs)]
    if alpha is not None:
        return [t * w for t, w in zip(trust, split_alpha(alpha, trusted))]
    m_b, total = float(base_top_prob), sum(trusted)
    raw = [max(0.0, float(t) * (float(m) / (m_b + float(m) + total - tm) + AGREEMENT_BONUS * float(a))) if m_b + float(m) + total - tm > 0 else 0.0
           for t, m, a, tm in zip(trust, guide_top_probs, agreements, trusted)]
    s = sum(raw)
    return _at_most_one([w / s for w in raw] if s > 1.0 else raw)


def _at_most_one(weights: list[float]) -> list[float]:
    """``weights`` (each >= 0, meant to sum to at most 1) with a float sum at most 1, both added in order
    (``sum``, what ``mix_many`` does) and exactly (``math.fsum``; Python 3.12's ``sum`` compensates):
    a sum over 1 by rounding comes off the largest weight, an ulp at a time. Weights that already
    sum to at most 1 come back unchanged (one guide always does: its weight is at most 1)."""
    out = list(weights)
    while out and (sum(out) > 1.0 or math.fsum(out) > 1.0):
        k = max(range(len(out)), key=out.__getitem__)
        out[k] = math.nextafter(out[k], 0.0)
    return out


def mix(base_probs: torch.Tensor, guide_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """p = alpha * guide_probs + (1 - alpha) * base_probs, each side normalised. Shapes [V_base] -> [V_base].

    A side may be partial: a server's top-k logprobs leave out the mass of the other tokens
    (``base_probs`` sums to its coverage c < 1). Each side is normalised over the tokens it covers
    before mixing, so the guide's share of the mixture is exactly ``alpha`` whatever the coverage
    (renormalising only the sum would give the guide alpha / (alpha + (1 - alpha) * c)). The
    decisions use the probabilities as given: m_b, m_g and p_b[t_g] stay exact.

    >>> base_top_k = torch.tensor([0.3, 0.2, 0.0, 0.0], dtype=torch.float64)   # coverage 0.5
    >>> mix(base_top_k, torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64), alpha=0.5).tolist()
    [0.3, 0.45, 0.25, 0.0]
    """
    return mix_many(base_probs, [guide_probs], [alpha])


def mix_many(base_probs: torch.Tensor, guide_probs: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """p = sum_k w_k * guide_probs[k] + max(0, 1 - sum_k w_k) * base_probs, each side normalised (as
    ``mix``), then the whole normalised. Shapes: base_probs [V_base], each guide_probs[k] [V_base]
    (guides carried into the base vocabulary) -> [V_base].

    ``weights`` (each >= 0) should sum to at most 1; a sum past 1 (weights scaled to 1 in float may
    sum to 1.0000000000000002) leaves the base nothing rather than a negative share, whose tiny
    negative probabilities a sampler refuses (NaN after its log). One guide computes exactly what
    ``mix`` always did.
    """
    for probs in guide_probs:
        if base_probs.shape != probs.shape:
            raise ValueError(
                f"mix needs every distribution in the base vocabulary: got {tuple(base_probs.shape)} "
                f"and {tuple(probs.shape)}; map the guide's through VocabBridge.to_base first"
            )
    mixed = None
    for w, probs in zip(weights, guide_probs):
        term = w * (probs / probs.sum())
        mixed = term if mixed is None else mixed + term
    base_term = max(0.0, 1.0 - sum(weights)) * (base_probs / base_probs.sum())
    mixed = base_term if mixed is None else mixed + base_term
    return mixed / mixed.sum()
