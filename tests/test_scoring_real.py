"""Scoring on real models (slow): under the base method a text's log-probabilities are the base
model's own, read straight from transformers; batched texts score as alone; a greedy BlendIn
generation scores greedy at every token."""

import json
import math

import pytest
import torch

from blendin import BlendConfig, PromptFormat
from blendin.decoding import generate
from blendin.prompts import render_raw
from blendin.scoring import score_ids, score_texts, split_pair

pytestmark = pytest.mark.slow

PAIRS = [("Question: Which gas do plants take in to make food?\nAnswer:", " carbon dioxide"),
         ("Question: Which gas do plants take in to make food?\nAnswer:", " oxygen"),
         ("The capital of France is", " Paris, a city on the Seine.")]


def own_logprobs(model, ids):
    """log P(ids[i] | ids[:i]) for i >= 1, from one plain transformers forward pass."""
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].tolist()


def test_base_scores_are_the_base_model_s_own(embedded_pair):
    base = embedded_pair.base
    texts = [split_pair(base.tokenizer, c, x) for c, x in PAIRS]
    whole = [(ids, 1) for ids, _ in texts]  # every token after the first, as echo scores a prompt
    scored = score_ids(embedded_pair, whole, BlendConfig(method="base"), top=1, batch_size=3)
    for (ids, _), s in zip(texts, scored):
        own = own_logprobs(base.model, ids)
        assert [t.token_id for t in s.tokens] == ids[1:]
        assert max(abs(a - b) for a, b in zip((t.logprob for t in s.tokens), own)) < 1e-4
        assert s.base_passes == 1


def test_batched_blendin_scores_as_alone_and_a_greedy_answer_scores_greedy(embedded_pair):
    config = BlendConfig(method="blendin", max_new_tokens=12, prompt=PromptFormat(system=""))
    alone = [score_texts(embedded_pair, [p], config, top=2)[0] for p in PAIRS]
    together = score_texts(embedded_pair, PAIRS, config, top=2, batch_size=3)
    for a, t in zip(alone, together):
        assert [x.token_id for x in a.tokens] == [x.token_id for x in t.tokens]
        assert [x.logprob for x in a.tokens] == pytest.approx([x.logprob for x in t.tokens], abs=1e-4)
    base_tok, guide_tok = embedded_pair.base.tokenizer, embedded_pair.guide.tokenizer
    prompt = base_tok.encode_prompt(PAIRS[0][0])
    r = generate(embedded_pair, render_raw(base_tok, guide_tok, base_ids=prompt), config)  # a raw completion, as scored
    [s] = score_ids(embedded_pair, [(prompt + [x.token_id for x in r.steps], len(prompt))], config)
    assert r.interventions > 0 and s.greedy and s.interventions == r.interventions
    assert [t.logprob for t in s.tokens] == pytest.approx([math.log(x.chosen_prob) for x in r.steps], abs=1e-4)


def test_blendin_score_writes_each_method_s_log_probability(tmp_path, embedded_pair):
    from blendin.cli import main

    f, out = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    f.write_text("".join(json.dumps({"id": f"p{i}", "context": c, "continuation": x}) + "\n" for i, (c, x) in enumerate(PAIRS)))
    assert main(["score", "--input", str(f), "--output", str(out), "--method", "base,guide,blendin", "--per-token"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["p0", "p1", "p2"] and set(lines[0]["methods"]) == {"base", "guide", "blendin"}
    texts = [split_pair(embedded_pair.base.tokenizer, c, x) for c, x in PAIRS]
    direct = score_ids(embedded_pair, texts, BlendConfig(method="base"))
    for line, d in zip(lines, direct):
        assert line["methods"]["base"]["logprob"] == pytest.approx(d.logprob, abs=1e-4) and line["methods"]["base"]["interventions"] == 0
        assert len(line["methods"]["blendin"]["token_logprobs"]) == line["tokens"]
    # the right answer is likelier than the wrong one under the blend, as under the guide
    assert lines[0]["methods"]["blendin"]["logprob"] > lines[1]["methods"]["blendin"]["logprob"]
