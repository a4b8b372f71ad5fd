"""The mixing math against hand-computed values; purity."""

import pytest
import torch

from blendin.blend import auto_alpha, mix, top1


def test_auto_alpha_reference_formula():
    # m_b = 0.35, m_g = 0.6, p_b[t_g] = 0.3  ->  0.6 / 0.95 + 0.03
    assert auto_alpha(0.35, 0.6, 0.3) == pytest.approx(0.6 / 0.95 + 0.03, abs=1e-15)
    assert auto_alpha(0.25, 0.75, 0.5) == 0.8


def test_auto_alpha_clips_at_one():
    # 0.99 / 1.0 + 0.1 * 0.9 = 1.08 -> 1
    assert auto_alpha(0.01, 0.99, 0.9) == 1.0


def test_auto_alpha_guide_token_missing_from_base():
    # agreement 0: no bonus, alpha is the plain confidence ratio
    assert auto_alpha(0.2, 0.2, 0.0) == 0.5


def test_auto_alpha_equal_confidence_and_full_agreement():
    assert auto_alpha(0.3, 0.3, 1.0) == pytest.approx(0.6)


def test_top1_ties_go_to_lowest_id():
    assert top1(torch.tensor([0.1, 0.45, 0.45])) == (pytest.approx(0.45), 1)


def test_mix_hand_computed_each_side_normalised():
    base = torch.tensor([0.5, 0.3, 0.2])
    guide = torch.tensor([0.0, 0.2, 0.6])  # sums to 0.8 (a top-k): normalised to [0, 0.25, 0.75] first
    before = guide.clone()
    out = mix(base, guide, 0.5)
    assert torch.allclose(out, torch.tensor([0.25, 0.275, 0.475]))  # the guide's share is exactly alpha
    assert float(out.sum()) == pytest.approx(1.0)
    assert torch.equal(guide, before)


def test_mix_alpha_edges():
    base, guide = torch.tensor([0.7, 0.3]), torch.tensor([0.1, 0.9])
    assert torch.equal(mix(base, guide, 0.0), base)
    assert torch.allclose(mix(base, guide, 1.0), guide)


def test_mix_does_not_mutate_inputs():
    base, guide = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    b0, g0 = base.clone(), guide.clone()
    mix(base, guide, 0.3)
    assert torch.equal(base, b0) and torch.equal(guide, g0)


def test_mix_rejects_other_vocabularies():
    with pytest.raises(ValueError, match="VocabBridge"):
        mix(torch.ones(3) / 3, torch.ones(4) / 4, 0.5)
