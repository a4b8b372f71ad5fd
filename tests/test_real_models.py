"""End to end on the embedded pair (Gemma-3-270m base, SmolLM2-135M-Instruct guide)."""

import json
import math

import pytest
import torch

from blendin import BlendConfig
from blendin.blend import auto_alpha
from blendin.decoding import generate

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"
FIELDS = {"text", "method", "gamma", "alpha", "base", "guide", "tokens", "interventions", "intervention_rate",
          "mean_alpha", "stop_reason", "seconds", "tokens_per_second", "vocab_coverage", "steps"}
STEP_FIELDS = {"token", "source", "base_top_prob", "guide_top_prob", "alpha", "agreement", "chosen_prob"}


def check_contract(d: dict, gamma: float):
    assert FIELDS <= d.keys()
    assert d["tokens"] == len(d["steps"]) > 0
    assert d["interventions"] == sum(s["source"] != "base" for s in d["steps"])
    assert math.isclose(d["intervention_rate"], d["interventions"] / d["tokens"])
    for s in d["steps"]:
        assert STEP_FIELDS <= s.keys() and s["source"] in ("base", "blend", "guide")
        assert 0 <= s["chosen_prob"] <= 1
        if s["guide_top_prob"] is None:
            assert s["alpha"] is None and s["agreement"] is None
    if d["method"] == "blendin":
        for s in d["steps"]:
            if s["base_top_prob"] >= gamma:
                assert s["source"] == "base"
            else:
                assert s["source"] == "blend"
                assert s["alpha"] == auto_alpha(s["base_top_prob"], s["guide_top_prob"], s["agreement"])
    joined = "".join(s["token"] for s in d["steps"])
    assert joined.startswith(d["text"]) or d["stop_reason"] == "stop"


@pytest.mark.parametrize("method", ["base", "guide", "switch", "nudging", "blendin"])
def test_each_method_meets_the_json_contract(embedded_pair, method):
    config = BlendConfig(method=method, max_new_tokens=12)
    result = generate(embedded_pair, QUESTION, config)
    d = json.loads(json.dumps(result.to_dict()))  # through JSON, as the CLI prints it
    check_contract(d, config.gamma)
    assert d["text"].strip()
    if method == "base":
        assert d["interventions"] == 0 and d["vocab_coverage"] is None
    if method == "guide":
        assert d["intervention_rate"] == 1.0
    if method in ("switch", "nudging", "blendin"):
        assert 0.9 < d["vocab_coverage"]["exact_share"] < 0.97


def test_blendin_intervenes_and_reports_the_rate(embedded_pair):
    result = generate(embedded_pair, QUESTION, BlendConfig(max_new_tokens=24))
    assert 0 < result.interventions < result.tokens
    assert 0 < result.mean_alpha <= 1
    assert 0.9 < result.vocab_coverage["mean_guide_mass_exact"] <= 1


@pytest.mark.parametrize("method", ["blendin", "nudging"])
def test_greedy_is_deterministic(embedded_pair, method):
    config = BlendConfig(method=method, max_new_tokens=16)
    a, b = generate(embedded_pair, QUESTION, config), generate(embedded_pair, QUESTION, config)
    assert a.text == b.text and a.steps == b.steps


def test_seeded_sampling_is_reproducible(embedded_pair):
    config = BlendConfig(max_new_tokens=12, temperature=0.9, top_p=0.95, seed=11)
    a, b = generate(embedded_pair, QUESTION, config), generate(embedded_pair, QUESTION, config)
    assert a.text == b.text


def test_stop_string(embedded_pair):
    r = generate(embedded_pair, QUESTION, BlendConfig(method="guide", max_new_tokens=30, stop=(" problem",)))
    assert r.stop_reason == "stop" and " problem" not in r.text


def test_kv_cache_reuse_matches_a_fresh_forward(embedded_pair):
    """Syncing to a diverging context (cache cropped) gives the same logprobs as reading it afresh."""
    model = embedded_pair.guide
    enc = model.tokenizer.encode
    reused = model.session()
    reused.sync(enc("The cat sat on the mat and looked at the dog")); reused.logprobs()
    reused.sync(enc("The cat sat on the sofa")); after_crop = reused.logprobs()
    fresh = model.session()
    fresh.sync(enc("The cat sat on the sofa"))
    assert torch.allclose(after_crop, fresh.logprobs(), atol=1e-4)
    assert reused.forward_tokens < 2 * len(reused.ids)


def test_guide_prompt_uses_its_chat_template(embedded_pair):
    from blendin.prompts import prompt_ids

    tok = embedded_pair.guide.tokenizer
    text = tok.decode(prompt_ids(tok, BlendConfig().prompt, "Hi", chat=True))
    assert "<|im_start|>" in tok.tok.decode(prompt_ids(tok, BlendConfig().prompt, "Hi", chat=True))
    assert text.endswith("assistant\n")
    base_text = embedded_pair.base.tokenizer.tok.decode(prompt_ids(embedded_pair.base.tokenizer, BlendConfig().prompt, "Hi", chat=False))
    assert base_text.startswith("<bos>") and base_text.endswith("Question: Hi\nAnswer:\n")


@pytest.mark.parametrize("which", ["base", "guide"])
def test_slot_sessions_match_the_dynamic_cache_fallback(embedded_pair, which):
    """The shared slot cache (used for these models) and the per-session DynamicCache (the fallback
    for other architectures) give the same distributions, through a divergence and a crop."""
    from blendin.backends.hf import HFSession

    model = getattr(embedded_pair, which)
    assert model.batched
    enc = model.tokenizer.encode
    slot, plain = model.session(), HFSession(model.model)
    try:
        for text in ["The cat sat on the mat and looked", "The cat sat on the sofa", "The cat"]:
            slot.sync(enc(text)); plain.sync(enc(text))
            assert torch.allclose(slot.logprobs(), plain.logprobs(), atol=1e-4)
    finally:
        slot.close()
