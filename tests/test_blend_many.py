"""Three or more guides at the edge of float rounding: weights scaled to sum 1 may sum to
1.0000000000000002, which left the base a negative share (-2.2e-16): tiny negative probabilities, NaN
after the sampler's log, and a sampler that refuses the distribution. Adversarial distributions: every
guide certain, each on its own token; the base uniform or nearly."""

import math
import random

import pytest
import torch

from blendin.backends.fake import ScriptedModel
from blendin.blend import AGREEMENT_BONUS, auto_alpha, guide_weights, mix, mix_many, split_alpha
from blendin.decoding import generate
from blendin.pair import Pair
from blendin.sampling import Sampler

from scripted import after_prompt, base_tokenizer, config, guide_tokenizer

V = 40


def naive_scaled(base_top_prob, guide_top_probs, agreements):
    """The rule's weights scaled the plain way (w / total), as before the fix: their float sum may pass 1."""
    total_m = base_top_prob + sum(guide_top_probs)
    raw = [max(0.0, m / total_m + AGREEMENT_BONUS * a) for m, a in zip(guide_top_probs, agreements)]
    total = sum(raw)
    return [w / total for w in raw] if total > 1.0 else raw


def confidences_past_one(n: int, seed: int = 0) -> list[float]:
    """The first n confidences m_k (seeded) whose plain scaling m_k / sum(m) sums past 1 in float (as
    split_alpha(1.0, m) and guide_weights' scaling did): weights that left the base a negative share."""
    rng = random.Random(seed)
    while True:
        ms = [rng.random() for _ in range(n)]
        if sum(m / sum(ms) for m in ms) > 1.0:
            return ms


def over_one(n: int) -> list[float]:
    """Weights for n guides whose float sum passes 1: 1.0000000000000002."""
    ms = confidences_past_one(n)
    return [m / sum(ms) for m in ms]


def adversarial(n: int, nearly: bool, dtype):
    """(base_probs [V], guide_probs: n tensors [V]): each guide certain of its own token (0..n-1), the
    base uniform over V, or nearly (seeded noise)."""
    base = torch.ones(V, dtype=dtype)
    if nearly:
        base = base + 0.1 * torch.rand(V, generator=torch.Generator().manual_seed(n), dtype=dtype)
    base = base / base.sum()
    return base, [torch.nn.functional.one_hot(torch.tensor(k), V).to(dtype) for k in range(n)]


def assert_a_distribution(p: torch.Tensor):
    assert bool(torch.isfinite(p).all()), p
    assert float(p.min()) >= 0.0, float(p.min())
    assert abs(float(p.sum()) - 1.0) <= 1e-6


def assert_samplers_pick_valid_tokens(p: torch.Tensor):
    for sampler in (Sampler(), Sampler(1.0, 1.0, seed=0), Sampler(0.7, 0.9, seed=1), Sampler(1.5, 1.0, seed=2)):
        for _ in range(20):
            t = sampler.choose(p)
            assert 0 <= t < p.shape[0] and float(p[t]) > 0.0


@pytest.mark.parametrize("n", [3, 5, 8])
def test_the_test_weights_sum_past_one(n):
    assert sum(over_one(n)) > 1.0  # the premise of the tests below


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nearly", [False, True])
@pytest.mark.parametrize("n", [3, 5, 8])
def test_mix_many_with_weights_past_one_is_a_distribution(n, nearly, dtype):
    base, guides = adversarial(n, nearly, dtype)
    p = mix_many(base, guides, over_one(n))
    assert_a_distribution(p)
    assert_samplers_pick_valid_tokens(p)
    # the base gets nothing; the guides share everything
    assert float(p[n:].sum()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [5, 8])
def test_guide_weights_on_adversarial_distributions(n, dtype):
    # nearly uniform bases (seeded) until the rule's plain scaling passes 1; the weights the rule gives
    # now never do, and the mixture is a distribution the sampler draws from
    found = 0
    for seed in range(400):
        base = torch.ones(V, dtype=dtype) + 0.3 * torch.rand(V, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        base = base / base.sum()
        m_b, agreements = float(base.max()), [float(base[k]) for k in range(n)]
        if sum(naive_scaled(m_b, [1.0] * n, agreements)) <= 1.0:
            continue
        found += 1
        w = guide_weights(m_b, [1.0] * n, agreements)
        assert sum(w) <= 1.0 and math.fsum(w) <= 1.0 and min(w) >= 0.0
        assert w == pytest.approx(naive_scaled(m_b, [1.0] * n, agreements), abs=1e-15)
        p = mix_many(base, [torch.nn.functional.one_hot(torch.tensor(k), V).to(dtype) for k in range(n)], w)
        assert_a_distribution(p)
        assert_samplers_pick_valid_tokens(p)
    assert found >= 3  # the search found adversarial cases


@pytest.mark.parametrize("n", [3, 5, 8])
def test_guide_weights_and_split_alpha_never_sum_past_one(n):
    rng = random.Random(n)
    over = 0
    for _ in range(5000):
        m_b = rng.choice([rng.random(), 1 / rng.randint(2, 300000)])
        ms = [rng.choice([1.0, rng.random()]) for _ in range(n)]
        agreements = [rng.choice([0.0, m_b, rng.random() * m_b]) for _ in range(n)]
        over += sum(naive_scaled(m_b, ms, agreements)) > 1.0
        for w in (guide_weights(m_b, ms, agreements), split_alpha(1.0, ms)):
            assert sum(w) <= 1.0 and math.fsum(w) <= 1.0 and min(w) >= 0.0, (m_b, ms, agreements, w)
    assert over > 0  # the plain scaling did pass 1 on some of these


@pytest.mark.parametrize("n", [3, 5, 8])
def test_split_alpha_of_one_never_sums_past_one(n):
    # switch's weights with several guides (the guides' whole share 1, split by confidence)
    ms = confidences_past_one(n)
    w = split_alpha(1.0, ms)
    assert sum(w) <= 1.0 and math.fsum(w) <= 1.0
    assert w == pytest.approx([m / sum(ms) for m in ms], abs=1e-15)


def test_one_guide_unchanged_bit_for_bit():
    rng = random.Random(1)
    for _ in range(2000):
        m_b, m_g, a = rng.random(), rng.random(), rng.random()
        assert guide_weights(m_b, [m_g], [a]) == [auto_alpha(m_b, m_g, a)]
        assert split_alpha(1.0, [m_g]) == [1.0]
    for dtype in (torch.float32, torch.float64):
        base, guide = torch.rand(50, dtype=dtype), torch.rand(50, dtype=dtype)
        for alpha in (0.0, 0.37, 1.0, auto_alpha(0.01, 0.99, 0.9)):
            expected = alpha * (guide / guide.sum()) + (1.0 - alpha) * (base / base.sum())  # the formula as it always was
            assert torch.equal(mix_many(base, [guide], [alpha]), expected / expected.sum())
            assert torch.equal(mix(base, guide, alpha), mix_many(base, [guide], [alpha]))


def test_mix_many_is_pure_at_the_edge():
    base, guides = adversarial(5, True, torch.float32)
    before = [t.clone() for t in (base, *guides)]
    weights = over_one(5)
    w0 = list(weights)
    mix_many(base, guides, weights)
    assert all(torch.equal(x, y) for x, y in zip((base, *guides), before)) and weights == w0


# -- in the loop: scripted guides, each certain of its own token; the base nearly uniform ------------

GUIDE_TOPS = ["Ġyes", "Ġno", "Ġmaybe", "ĠThe", "a", "b", "c", "d"]


def nearly_uniform_pair(n: int, seed: int) -> Pair:
    rng = random.Random(seed)
    pieces = [p for p in base_tokenizer().pieces() if p not in ("<bos>", "<eos>")]
    noise = rng.choice([0.0, 0.05, 0.2, 0.5])
    table = {p: 1.0 + noise * rng.random() for p in pieces}
    total = sum(table.values())
    table = {p: v / total for p, v in table.items()}
    base = ScriptedModel(base_tokenizer(), lambda t: table if after_prompt(t) == "" else {"<eos>": 1.0}, name="base")
    guides = [ScriptedModel(guide_tokenizer(), (lambda top: lambda t: {top: 1.0})(top), name=f"guide-{k}")
              for k, top in enumerate(GUIDE_TOPS[:n])]
    return Pair(base=base, guide=guides[0], more_guides=guides[1:])


@pytest.mark.parametrize("n,seed", [(5, 52), (5, 62), (8, 1), (8, 11)])
def test_many_certain_guides_decode_greedy_and_sampled(n, seed):
    pair = nearly_uniform_pair(n, seed)
    c = config(method="blendin", guide=[f"guide-{k}" for k in range(n)], max_new_tokens=3)
    r = generate(pair, "Q", c)
    s = r.steps[0]
    ms, agreements = [g["m_g"] for g in s.guides], [g["agreement"] for g in s.guides]
    assert sum(naive_scaled(s.base_top_prob, ms, agreements)) > 1.0  # the premise: this step is at the edge
    for sample_seed in range(5):  # before the fix the sampler refused the mixture: a RuntimeError
        sampled = generate(pair, "Q", c.with_(temperature=1.0, seed=sample_seed))
        assert sampled.error is None and sampled.stop_reason == "eos" and sampled.steps[0].chosen_prob > 0, sampled
    assert s.source == "blend" and s.alpha <= 1.0 and sum(g["weight"] for g in s.guides) <= 1.0
    assert math.isfinite(s.chosen_prob) and s.chosen_prob > 0
