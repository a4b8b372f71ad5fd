"""BlendIn inside transformers' generate() (``hf_generate.BlendInProcessor``): greedy tokens and
interventions identical to blendin's own loop, on the embedded pair (two tokenizers, through the
bridge) and on one tokenizer (Qwen2.5-Coder-0.5B on both sides), one row and a left-padded batch;
the processor leaves its inputs as they were, and a TextStreamer streams the answer."""

import pytest
import torch

from blendin import BlendConfig, PromptFormat
from blendin.decoding import generate
from blendin.hf_generate import BlendInProcessor

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Name a colour and say why you like it."]
TOKENS = 16


def config(method, **kw):
    return BlendConfig(method=method, max_new_tokens=TOKENS, prompt=PromptFormat(system="Answer briefly."), **kw)


def run(pair, questions, method, sampling=None, **generate_kw):
    base, guide = pair.base, pair.guide
    blend = BlendInProcessor(base.tokenizer.tok, guide.model, guide.tokenizer.tok, questions, config(method, **(sampling or {})),
                             base_model=base.model)
    inputs = blend.inputs()
    generate_kw.setdefault("do_sample", False)
    with torch.inference_mode():
        out = base.model.generate(**inputs, logits_processor=[blend], max_new_tokens=TOKENS, pad_token_id=blend.pad_token_id, **generate_kw)
    return blend, out[:, inputs["input_ids"].shape[1]:]


def check(pair, method):
    plain = [generate(pair, q, config(method)) for q in QUESTIONS]
    for questions in ([QUESTIONS[0]], QUESTIONS):  # one row, and a left-padded batch of two
        blend, new = run(pair, questions, method)
        for i, (row, result) in enumerate(zip(new.tolist(), blend.results())):
            ids = [s.token_id for s in plain[i].steps]
            assert row[: len(ids)] == ids, (method, i)
            assert all(t in pair.base.tokenizer.eos_ids or t == blend.pad_token_id for t in row[len(ids):])
            assert result.interventions == plain[i].interventions and result.text == plain[i].text
    return plain


@pytest.mark.parametrize("method", ["blendin", "switch"])
def test_embedded_pair_across_tokenizers(embedded_pair, method):
    plain = check(embedded_pair, method)
    assert sum(r.interventions for r in plain) > 0


@pytest.fixture(scope="module")
def qwen_pair():
    from blendin.backends.hf import HFModel
    from blendin.models import load_model
    from blendin.pair import Pair

    base = load_model("qwen2.5-coder-0.5b-instruct")
    return Pair(base=base, guide=HFModel(base.model, base.tokenizer.tok, name="qwen (guide)"))


def test_one_tokenizer(qwen_pair):
    check(qwen_pair, "blendin")


def test_inputs_are_left_as_they_were_and_a_streamer_streams(embedded_pair, capsys):
    from transformers import TextStreamer

    base, guide = embedded_pair.base, embedded_pair.guide
    blend = BlendInProcessor(base.tokenizer.tok, guide.model, guide.tokenizer.tok, QUESTIONS[:1], config("blendin"), base_model=base.model)
    ids, scores = blend.inputs()["input_ids"], torch.randn(1, base.vocab_size)
    ids_before, scores_before = ids.clone(), scores.clone()
    out = blend(ids, scores)
    assert torch.equal(ids, ids_before) and torch.equal(scores, scores_before) and out.isfinite().sum() == 1
    blend, _ = run(embedded_pair, QUESTIONS[:1], "blendin", streamer=TextStreamer(base.tokenizer.tok, skip_prompt=True))
    assert blend.results()[0].text.strip() in capsys.readouterr().out


def test_sampling_draws_what_blendin_draws_with_the_same_seed(embedded_pair):
    """The processor's sampler picks the token (BlendConfig's temperature and seed); generate's own
    sampling then has one token left to pick."""
    sampling = dict(temperature=0.9, seed=11)
    plain = generate(embedded_pair, QUESTIONS[1], config("blendin", **sampling))
    blend, new = run(embedded_pair, QUESTIONS[1:], "blendin", sampling, do_sample=True)
    assert new[0].tolist()[: plain.tokens] == [s.token_id for s in plain.steps] and blend.results()[0].text == plain.text


def test_without_a_base_model_the_logits_come_from_generate(embedded_pair):
    """The processor needs no base model: generate() hands it the base's logits (issue 33: it raised
    deep inside, on the bridge's device)."""
    base, guide = embedded_pair.base, embedded_pair.guide
    plain = generate(embedded_pair, QUESTIONS[0], config("blendin"))
    blend = BlendInProcessor(base.tokenizer.tok, guide.model, guide.tokenizer.tok, QUESTIONS[:1], config("blendin"))
    inputs = blend.inputs()
    with torch.inference_mode():
        out = base.model.generate(**inputs, logits_processor=[blend], max_new_tokens=TOKENS, pad_token_id=blend.pad_token_id, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert new[: plain.tokens] == [s.token_id for s in plain.steps] and blend.results()[0].text == plain.text


def test_logits_padded_past_the_tokenizer_are_never_chosen(embedded_pair):
    """A model whose logits are padded past its tokenizer (SmolLM2-style 49216 columns for 49152
    tokens): the padded columns get probability 0, whatever their logits, and the answer is unchanged."""
    base, guide = embedded_pair.base, embedded_pair.guide
    blend = BlendInProcessor(base.tokenizer.tok, guide.model, guide.tokenizer.tok, QUESTIONS[:1], config("blendin"))
    plain = BlendInProcessor(base.tokenizer.tok, guide.model, guide.tokenizer.tok, QUESTIONS[:1], config("blendin"))
    ids = blend.inputs()["input_ids"]
    scores = torch.randn(1, base.vocab_size, generator=torch.Generator().manual_seed(0))
    padded = torch.cat([scores, torch.full((1, 64), 100.0)], dim=1)  # padding that would win if it counted
    out, ref = blend(ids, padded), plain(ids, scores)
    assert out.shape == padded.shape and out[0, base.vocab_size:].eq(float("-inf")).all()
    assert int(out.argmax()) == int(ref.argmax()) < base.vocab_size


def test_a_profile_weighs_the_guide_inside_generate(embedded_pair):
    """``BlendConfig(profile=...)`` holds inside generate() as in blendin's loop: a guide the profile
    weighs 0 is never consulted (the base's own tokens), one weighed 0.5 gives what blendin generate
    gives with the same profile; a profile for other models is refused before any token."""
    from blendin.errors import ConfigError
    from blendin.profile import Profile

    def profiled(r):
        return Profile(base="gemma-3-270m", guides=("smollm2-135m-instruct",), reliabilities=(r,))

    base_alone = [generate(embedded_pair, q, config("base")) for q in QUESTIONS]
    blend, new = run(embedded_pair, QUESTIONS, "blendin", dict(profile=profiled(0.0)))
    for row, result, alone in zip(new.tolist(), blend.results(), base_alone):
        assert row[: alone.tokens] == [s.token_id for s in alone.steps] and result.interventions == 0
    plain = [generate(embedded_pair, q, config("blendin")) for q in QUESTIONS]
    half = [generate(embedded_pair, q, config("blendin", profile=profiled(0.5))) for q in QUESTIONS]
    assert [h.text for h in half] != [p.text for p in plain] or [h.mean_alpha for h in half] != [p.mean_alpha for p in plain]
    blend, new = run(embedded_pair, QUESTIONS, "blendin", dict(profile=profiled(0.5)))
    for row, result, expected in zip(new.tolist(), blend.results(), half):
        assert row[: expected.tokens] == [s.token_id for s in expected.steps] and result.text == expected.text
    with pytest.raises(ConfigError, match="base: the profile's is 'qwen"):
        config("blendin", profile=Profile(base="qwen2.5-coder-1.5b-instruct", guides=("smollm2-135m-instruct",), reliabilities=(1.0,)))
