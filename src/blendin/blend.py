"""BlendIn's mixing math, in probability space. Pure: inputs are never modified.

Both distributions must already be in the *base* vocabulary (see ``vocab.VocabBridge``):
``base_probs`` and ``guide_probs`` are float tensors of shape [V_base] that sum to 1.

    >>> auto_alpha(base_top_prob=0.25, guide_top_prob=0.75, agreement=0.5)
    0.8
    >>> mix(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5]), alpha=0.5).tolist()
    [0.25, 0.5, 0.25]
"""

from __future__ import annotations

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
    if base_probs.shape != guide_probs.shape:
        raise ValueError(
            f"mix needs both distributions in the base vocabulary: got {tuple(base_probs.shape)} "
            f"and {tuple(guide_probs.shape)}; map the guide's through VocabBridge.to_base first"
        )
    mixed = alpha * (guide_probs / guide_probs.sum()) + (1.0 - alpha) * (base_probs / base_probs.sum())
    return mixed / mixed.sum()
