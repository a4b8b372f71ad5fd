"""Per-step rules and token choice."""

import pytest
import torch

from blendin import BlendConfig
from blendin.policies import policy_for
from blendin.sampling import Sampler, nucleus


@pytest.mark.parametrize("method", ["switch", "nudging", "blendin"])
def test_gamma_boundary_base_decides_at_equality(method):
    p = policy_for(BlendConfig(method=method, gamma=0.4))
    assert not p.consult_guide(0.4)
    assert not p.consult_guide(0.9)
    assert p.consult_guide(0.3999)


def test_base_never_consults_and_guide_always_writes():
    assert not policy_for(BlendConfig(method="base")).consult_guide(0.0)
    g = policy_for(BlendConfig(method="guide"))
    assert g.writes == "all" and g.consult_guide(1.0)


def test_weights():
    assert policy_for(BlendConfig(method="switch")).guide_weight(0.2, 0.3, 0.0) == 1.0
    assert policy_for(BlendConfig(method="blendin", alpha=0.25)).guide_weight(0.2, 0.9, 1.0) == 0.25
    assert policy_for(BlendConfig(method="blendin")).guide_weight(0.2, 0.2, 0.0) == 0.5


def test_greedy_and_no_mutation():
    probs = torch.tensor([0.2, 0.5, 0.3])
    before = probs.clone()
    assert Sampler().choose(probs) == 1
    Sampler(temperature=1.0, top_p=0.9, seed=1).choose(probs)
    assert torch.equal(probs, before)


def test_seeded_sampling_is_reproducible():
    probs = torch.softmax(torch.randn(50, generator=torch.Generator().manual_seed(0)), -1)
    a = [Sampler(0.8, 0.95, seed=7).choose(probs) for _ in range(3)]
    s1, s2 = Sampler(0.8, 0.95, seed=7), Sampler(0.8, 0.95, seed=7)
    assert [s1.choose(probs) for _ in range(20)] == [s2.choose(probs) for _ in range(20)]
    assert len(set(a)) == 1  # a fresh sampler with the same seed draws the same first token


def test_top_p_keeps_smallest_nucleus():
    assert nucleus(torch.tensor([0.5, 0.3, 0.2]), 0.5).tolist() == [1.0, 0.0, 0.0]
    kept = nucleus(torch.tensor([0.1, 0.6, 0.3]), 0.8)
    assert kept[0] == 0 and kept[1] == pytest.approx(2 / 3)
    draws = {Sampler(1.0, 0.5, seed=s).choose(torch.tensor([0.5, 0.3, 0.2])) for s in range(20)}
    assert draws == {0}
