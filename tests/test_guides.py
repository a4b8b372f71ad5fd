"""Several guides and the mitigations, on scripted models with hand-computed numbers."""

import random

import pytest
import torch

from blendin.backends.fake import ScriptedModel
from blendin.blend import auto_alpha, guide_weights, mix, mix_many
from blendin.config import BlendConfig, GuideSpec
from blendin.decoding import generate
from blendin.errors import ConfigError
from blendin.mitigations import AgreementFilter, GuideRecord, InterventionBudget, Retirement, mitigations_for
from blendin.pair import Pair
from blendin.policies import policy_for

from scripted import after_prompt, base_tokenizer, config, guide_tokenizer

# the base is unsure at the first step (m_b 0.35, top '▁yes'), sure after it
BASE = {
    "": {"▁yes": 0.35, "▁no": 0.30, "▁maybe": 0.35},
    " yes": {"<eos>": 1.0}, " no": {"<eos>": 1.0}, " maybe": {"<eos>": 1.0},
}
GUIDE_A = {"": {"Ġno": 0.6, "Ġyes": 0.4}}  # top 'no': p_b 0.30
GUIDE_B = {"": {"Ġmaybe": 0.9, "Ġno": 0.1}}  # top 'maybe': p_b 0.35


def model(tok, script, name):
    return ScriptedModel(tok, lambda t: script[after_prompt(t)] if isinstance(script, dict) else script(after_prompt(t)), name=name)


def pair_of(base_script, *guide_scripts):
    guides = [model(guide_tokenizer(), s, f"guide-{i}") for i, s in enumerate(guide_scripts)]
    return Pair(base=model(base_tokenizer(), base_script, "base"), guide=guides[0], more_guides=guides[1:])


def two(**kw):
    return config(guide="guide-0", more_guides=("guide-1",), **kw)


# -- the weighting rule ----------------------------------------------------------------------------

def test_one_guide_gives_blendins_alpha_bit_for_bit():
    rng = random.Random(0)
    for _ in range(2000):
        m_b, m_g, a = rng.random(), rng.random(), rng.random()
        assert guide_weights(m_b, [m_g], [a]) == [auto_alpha(m_b, m_g, a)]  # exact, not approx
    for m_b, m_g, a in [(0.0, 0.0, 0.0), (0.39, 1.0, 1.0), (0.01, 0.99, 0.39)]:
        assert guide_weights(m_b, [m_g], [a]) == [auto_alpha(m_b, m_g, a)]
    base, guide = torch.rand(50, dtype=torch.float64), torch.rand(50, dtype=torch.float64)
    assert torch.equal(mix_many(base, [guide], [0.37]), mix(base, guide, 0.37))


def test_two_guides_rule_and_scaling():
    w = guide_weights(0.3, [0.6, 0.3], [0.3, 0.0])
    assert w == pytest.approx([0.6 / 1.2 + 0.03, 0.3 / 1.2])
    # agreement bonuses push the sum past 1: scaled down together, the base keeps nothing
    # (with real distributions p_b[t_k] <= m_b and the sum stays below 1; the rule stays total anyway)
    w = guide_weights(0.1, [0.9, 0.9], [0.9, 0.9])
    raw = 0.9 / 1.9 + 0.09
    assert raw * 2 > 1 and w == pytest.approx([0.5, 0.5]) and sum(w) == pytest.approx(1.0)


def test_mix_many_hand_computed_and_pure():
    base = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    g1, g2 = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    before = (base.clone(), g1.clone(), g2.clone())
    out = mix_many(base, [g1, g2], [0.25, 0.25])
    assert out.tolist() == pytest.approx([0.25, 0.5, 0.25])
    assert all(torch.equal(x, y) for x, y in zip((base, g1, g2), before))


# -- several guides in the loop ---------------------------------------------------------------------

def test_two_guides_blend_hand_computed():
    pair = pair_of(BASE, GUIDE_A, GUIDE_B)
    r = generate(pair, "Q", two(method="blendin"))
    m_b = 0.35
    w_a = 0.6 / (m_b + 0.6 + 0.9) + 0.1 * 0.30
    w_b = 0.9 / (m_b + 0.6 + 0.9) + 0.1 * 0.35
    total = w_a + w_b
    if total > 1:
        w_a, w_b = w_a / total, w_b / total
    mixed = {"yes": (1 - w_a - w_b) * 0.35 + w_a * 0.4, "no": (1 - w_a - w_b) * 0.30 + w_a * 0.6 + w_b * 0.1,
             "maybe": (1 - w_a - w_b) * 0.35 + w_b * 0.9}
    best = max(mixed, key=mixed.get)
    assert best == "maybe" and r.text == " maybe"
    step = r.steps[0]
    assert step.source == "blend" and step.alpha == pytest.approx(w_a + w_b)
    assert step.chosen_prob == pytest.approx(mixed["maybe"] / sum(mixed.values()))
    assert step.guide_top_prob == pytest.approx(0.9)  # the heaviest guide's fields
    a, b = step.guides
    assert (a["guide"], a["top"], a["kept"]) == (0, " no", True) and a["weight"] == pytest.approx(w_a)
    assert (b["guide"], b["top"], b["m_g"]) == (1, " maybe", pytest.approx(0.9)) and b["weight"] == pytest.approx(w_b)
    assert b["agreement"] == pytest.approx(0.35) and a["reliability"] == 1.0
    assert r.guide == "guide-0 + guide-1"
    assert [g["interventions"] for g in r.guides] == [1, 1] and [g["consulted"] for g in r.guides] == [1, 1]


def test_two_guides_switch_mixes_the_guides_alone():
    r = generate(pair_of(BASE, GUIDE_A, GUIDE_B), "Q", two(method="switch"))
    # weights 0.6/1.5 and 0.9/1.5: maybe = 0.6 * 0.9 = 0.54
    assert r.steps[0].alpha == pytest.approx(1.0) and r.steps[0].chosen_prob == pytest.approx(0.54)


def test_one_guide_steps_unchanged_and_without_guide_detail():
    r = generate(pair_of(BASE, GUIDE_A), "Q", config(method="blendin"))
    s = r.steps[0]
    assert s.guides is None and s.alpha == auto_alpha(s.base_top_prob, s.guide_top_prob, s.agreement)
    assert r.guides[0]["interventions"] == 1 and r.held is None


def test_methods_where_one_guide_writes_refuse_several():
    for method in ("guide", "nudging"):
        with pytest.raises(ConfigError, match="one guide"):
            two(method=method)
    with pytest.raises(ConfigError, match="given twice"):
        config(guide=["a", "a"])
    c = config(guide=["a", GuideSpec("b")])
    assert c.guide == "a" and [g.model for g in c.guides] == ["a", "b"]


def test_pair_with_fewer_guides_than_the_config_is_refused():
    with pytest.raises(ConfigError, match="2 guides"):
        generate(pair_of(BASE, GUIDE_A), "Q", two())


# -- mitigations ---------------------------------------------------------------------------------

UNSURE = lambda text: {"▁yes": 0.3, "▁no": 0.3, "▁maybe": 0.4} if len(text) < 40 else {"<eos>": 1.0}  # noqa: E731
AGREES = lambda text: {"Ġyes": 0.9, "Ġno": 0.1}  # noqa: E731  top 'yes': p_b 0.3, 0.75 of m_b
ODD = lambda text: {"<|sys|>": 0.9, "Ġno": 0.1}  # noqa: E731  top has no base twin: agreement 0


def test_budget_caps_the_rate_so_far():
    r = generate(pair_of(UNSURE, AGREES), "Q", config(method="blendin", gamma=0.5, max_intervention_rate=0.5, max_new_tokens=8))
    sources = [s.source for s in r.steps]
    # guided when interventions/tokens so far <= 0.5: step 0 (0/0), 1 (1/1 > .5: held), 2 (1/2), 3 held, ...
    assert sources == ["blend", "base", "blend", "base", "blend", "base", "blend", "base"]
    assert r.held == {"budget": 4}
    assert InterventionBudget(0.15).allows(0, 0) and not InterventionBudget(0.15).allows(6, 1)


def test_agreement_filter_sets_a_guide_aside():
    pair = pair_of(UNSURE, ODD, AGREES)
    r = generate(pair, "Q", two(method="blendin", gamma=0.5, agreement_top_k=2, max_new_tokens=1))
    s = r.steps[0]
    odd, agrees = s.guides
    assert not odd["kept"] and odd["weight"] == 0.0 and agrees["kept"]
    assert r.guides[0]["filtered"] == 1 and r.guides[0]["interventions"] == 0 and r.guides[1]["interventions"] == 1
    # the only guide filtered: the base decides, and says why
    r = generate(pair_of(UNSURE, ODD), "Q", config(method="blendin", gamma=0.5, agreement_top_k=5, max_new_tokens=2))
    assert [s.source for s in r.steps] == ["base", "base"] and r.held == {"agreement": 2}
    assert r.steps[0].guides[0]["kept"] is False
    # top-k by probability; a tie at the k-th counts inside
    base = torch.tensor([0.4, 0.3, 0.3])
    assert AgreementFilter(2).accepts(base, 2) and not AgreementFilter(1).accepts(base, 1)


def test_retirement_stops_consulting_and_counts_the_passes_saved():
    pair = pair_of(UNSURE, ODD)
    r = generate(pair, "Q", config(method="blendin", gamma=0.5, retire_below=0.5, retire_after=2, max_new_tokens=6))
    g = r.guides[0]
    # reliability after two disagreements: (1 + 0 + 0) / 3 = 0.33 < 0.5: retired before step 2
    assert g["consulted"] == 2 and g["retired_at"] == 2 and g["passes_saved"] == 4
    assert [s.source for s in r.steps] == ["blend", "blend", "base", "base", "base", "base"]
    assert r.held == {"retire": 4} and g["reliability"] == pytest.approx(1 / 3)
    # the guide ran at exactly the steps it was consulted
    assert g["passes"] == 2
    assert Retirement(0.5, after=2).keeps(GuideRecord("x", observed=1))


def test_reliability_scales_the_weight_with_the_exact_update():
    pair = pair_of(UNSURE, ODD)
    r = generate(pair, "Q", config(method="blendin", gamma=0.5, reliability=True, max_new_tokens=3))
    alphas = [s.alpha for s in r.steps]
    plain = auto_alpha(0.4, 0.9, 0.0)
    # r before each step: 1, (1+0)/2, (1+0+0)/3
    assert alphas == pytest.approx([plain, plain / 2, plain / 3])
    rec = GuideRecord("x")
    rec.observe(0.4, 0.3)  # 0.3 / 0.4 = 0.75
    rec.observe(0.2, 0.5)  # capped at 1
    assert rec.reliability == pytest.approx((1 + 0.75 + 1) / 3)


def test_capability_gap_moves_gamma_for_the_policy():
    c = config(gamma=0.4, capability_gap=0.5)
    assert c.effective_gamma == 0.5 and policy_for(c).gamma == 0.5
    assert config(gamma=0.4, capability_gap=1.0).effective_gamma == 0.6  # capped
    assert config(gamma=0.7, capability_gap=1.0).effective_gamma == 0.7  # a gamma above the cap is not lowered by it
    r = generate(pair_of(UNSURE, AGREES), "Q", config(method="blendin", gamma=0.4, capability_gap=0.5, max_new_tokens=2))
    assert r.steps[0].source == "blend"  # m_b 0.4 < 0.5: guided, though not below the plain gamma


def test_nudging_takes_the_budget_and_the_filter():
    words = lambda text: {"Ġyes": 0.9, "Ġno": 0.1}  # noqa: E731
    r = generate(pair_of(UNSURE, ODD), "Q", config(method="nudging", gamma=0.5, agreement_top_k=3, max_new_tokens=2))
    assert [s.source for s in r.steps] == ["base", "base"] and r.held == {"agreement": 2}
    r = generate(pair_of(UNSURE, words), "Q", config(method="nudging", gamma=0.5, max_intervention_rate=0.25, nudge_chunk=1, max_new_tokens=4))
    assert [s.source for s in r.steps] == ["guide", "base", "base", "base"] and r.held == {"budget": 3}


def test_mitigation_settings_are_checked():
    for kw, flag in [({"max_intervention_rate": 1.5}, "max_intervention_rate"), ({"agreement_top_k": 0}, "agreement_top_k"),
                     ({"retire_below": -1}, "retire_below"), ({"retire_after": 0}, "retire_after"), ({"capability_gap": 3}, "capability_gap")]:
        with pytest.raises(ConfigError, match=flag):
            BlendConfig(**kw)
    assert [m.name for m in mitigations_for(BlendConfig(max_intervention_rate=0.1, agreement_top_k=5, reliability=True,
                                                        retire_below=0.2))] == ["budget", "retire", "agreement", "reliability"]
