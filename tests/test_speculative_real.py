"""Speculative decoding on real models: the same tokens and interventions as the plain path, alone
and batched, on the Qwen pair's tokenizer (Qwen2.5-Coder-0.5B on both sides, the base reading plain
text and the guide its chat template, so they disagree) and on the embedded Gemma + SmolLM2 pair
(two tokenizers: prompt lookup, under auto with the pass costs measured there). Floats may differ
in the last bits (a pass over several tokens adds in another order than one token at a time); the
tokens and the decisions must not."""

import pytest

from blendin import BlendConfig, PromptFormat
from blendin.backends.hf import HFModel
from blendin.decoding import Generation, generate_many
from blendin.pair import Pair

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-coder-0.5b-instruct"
PROMPTS = ["What is the capital of France?", "Name three colours.",
           "Repeat this sentence exactly: the quick brown fox jumps over the lazy dog, and the dog sleeps."]


@pytest.fixture(scope="module")
def qwen_pair():
    from blendin.models import load_model

    base = load_model(QWEN)
    return Pair(base=base, guide=HFModel(base.model, base.tokenizer.tok, name=f"{QWEN} (guide)"))


def decisions(result):
    return [(s.token_id, s.source, s.intervened) for s in result.steps]


def check(pair, method, speculate, tokens=16):
    plain_config = BlendConfig(method=method, max_new_tokens=tokens, prompt=PromptFormat(system="Answer briefly."))
    config = plain_config.with_(speculate=speculate)
    plain = dict(generate_many(pair, PROMPTS, plain_config, batch_size=1))
    together = dict(generate_many(pair, PROMPTS, config, batch_size=3))
    rows = []
    for p in PROMPTS:
        g = Generation(pair, p, config)
        for _ in g:
            pass
        rows.append(g)
    for i, g in enumerate(rows):
        assert decisions(g.result()) == decisions(plain[i]), (method, speculate, i)
        assert decisions(together[i]) == decisions(plain[i]), (method, speculate, i, "batched")
    return rows


@pytest.mark.parametrize("method", ["blendin", "nudging"])
def test_qwen_guide_drafts_keep_every_decision(qwen_pair, method):
    rows = check(qwen_pair, method, "guide")
    assert sum(g.drafter.accepted for g in rows) > 0
    assert sum(g.base.session.forward_calls for g in rows) < sum(len(g.steps) for g in rows)


@pytest.mark.parametrize("method", ["base"])
def test_qwen_prompt_lookup_keeps_every_decision(qwen_pair, method):
    rows = check(qwen_pair, method, "lookup")
    assert rows[2].drafter.accepted > 0  # the sentence to repeat is in the prompt


@pytest.mark.parametrize("method", ["blendin"])
def test_embedded_pair_across_tokenizers_keeps_every_decision(embedded_pair, method):
    rows = check(embedded_pair, method, "auto")
    assert all(g.drafter.guide is None for g in rows)  # two tokenizers: auto weighs prompt lookup alone
    assert rows[2].drafter.drafted_by["lookup"] > 0  # the sentence to repeat is in the prompt
