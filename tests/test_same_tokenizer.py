"""One tokenizer on both sides (the paper's main pairs), every end token, partial distributions, and
rows that fail alone: on scripted models with hand-computed numbers."""

import pytest
import torch

from blendin import PromptFormat
from blendin.backends.fake import FakeTokenizer, ScriptedModel
from blendin.decoding import Generation, generate, generate_many
from blendin.errors import ConfigError
from blendin.pair import Pair

from scripted import after_prompt, base_tokenizer, config, guide_tokenizer

METHODS = ["base", "guide", "switch", "nudging", "blendin"]


def chatml() -> FakeTokenizer:
    """A ChatML-style vocabulary, as Qwen's: <|endoftext|> ends a document, <|im_end|> a turn,
    <|im_start|> opens one (a control token that never ends anything)."""
    words = ["Ġyes", "Ġno", "Ġmaybe", "Ġ"]
    chars = list("abcdefghijklmnopqrstuvwxyzQA:?.\n ")
    return FakeTokenizer(["<|endoftext|>", "<|im_end|>", "<|im_start|>", *words, *chars], eos="<|endoftext|>",
                         ends=["<|im_end|>"], specials=["<|im_start|>"], byte_level=True,
                         chat_template="<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def generated(text: str) -> str:
    """The generated part of a context: after the chat template's "assistant" line, else after the prompt line."""
    return text.split("assistant\n", 1)[1] if "assistant\n" in text else after_prompt(text)


def same_tokenizer_pair(base_script, guide_script, **kw) -> Pair:
    tok = chatml()  # one object, so the pieces are identical
    base = ScriptedModel(tok, lambda t: base_script(generated(t)), name="base", **kw)
    guide = ScriptedModel(tok, lambda t: guide_script(generated(t)), name="guide")
    return Pair(base=base, guide=guide)


def base_script(gen):
    """Unsure at the start, sure of 'Ġno' after ' yes', then ends with <|endoftext|>."""
    if gen == "":
        return {"Ġyes": 0.3, "Ġno": 0.3, "Ġmaybe": 0.2, "<|im_start|>": 0.2}
    if gen == " yes":
        return {"Ġno": 0.9, "Ġyes": 0.1}
    return {"<|endoftext|>": 0.9, "Ġno": 0.1}


def guide_script(gen):
    """The guide says ' yes' and then closes its turn, with some mass on a control token."""
    if gen == "":
        return {"Ġyes": 0.5, "<|im_start|>": 0.3, "Ġno": 0.2}
    return {"<|im_end|>": 0.8, "<|im_start|>": 0.2}


def test_identity_bridge_drops_control_tokens_and_carries_end_of_turn():
    pair = same_tokenizer_pair(base_script, guide_script)
    bridge, tok = pair.bridge, pair.base.tokenizer
    assert bridge.identity
    pieces = tok.pieces()
    im_end, im_start, eot = pieces.index("<|im_end|>"), pieces.index("<|im_start|>"), pieces.index("<|endoftext|>")
    guide_probs = pair.guide.probs_for("Q\n")  # [V] over the shared vocabulary
    before = guide_probs.clone()
    carried = bridge.to_base(guide_probs)
    assert torch.equal(guide_probs, before)  # pure
    assert carried[im_start] == 0  # a control token takes no mass ...
    assert carried[pieces.index("Ġyes")] == pytest.approx(0.5 / 0.7)  # ... and the rest is renormalised
    assert float(carried.sum()) == pytest.approx(1.0)
    end = pair.guide.probs_for("Q\n yes")
    carried_end = bridge.to_base(end)
    assert carried_end[im_end] == pytest.approx(1.0)  # <|im_end|> ends the base too: it stays itself
    assert bridge.base_id(im_end) == im_end and bridge.base_id(eot) == eot and bridge.base_id(im_start) is None


@pytest.mark.parametrize("method", METHODS)
def test_every_method_ends_on_either_models_end_token(method):
    """Unfixed, the guide's end of turn was an ordinary token: empty text, no end, stop reason "length"."""
    pair = same_tokenizer_pair(base_script, guide_script)
    r = generate(pair, "Q", config(method=method, max_new_tokens=10))
    assert r.stop_reason == "eos", (method, r.text, [s.token_id for s in r.steps])
    assert r.tokens < 10
    assert "<|" not in r.text and all("<|" not in s.token for s in r.steps)
    last = r.steps[-1]
    assert last.token == "" and last.token_id in pair.base.tokenizer.eos_ids
    expected = {"base": " yes no", "guide": " yes", "switch": " yes no", "nudging": " yes no", "blendin": " yes no"}
    assert r.text == expected[method]


def test_base_ending_with_its_other_end_token_ends():
    """The base may end a turn with <|im_end|> though its eos is <|endoftext|>: both end."""
    tok = chatml()
    base = ScriptedModel(tok, lambda t: {"Ġyes": 0.9, "Ġno": 0.1} if after_prompt(t) == "" else {"<|im_end|>": 0.95, "Ġno": 0.05})
    r = generate(Pair(base=base, guide=None), "Q", config(method="base"))
    assert (r.text, r.stop_reason, r.tokens) == (" yes", "eos", 2)


def test_base_prompt_chat_uses_the_bases_template():
    pair = same_tokenizer_pair(base_script, guide_script)
    plain = Generation(pair, "hi", config(method="blendin"))
    chat = Generation(pair, "hi", config(method="blendin", prompt=PromptFormat("", "", "", base_prompt="chat")))
    decode = pair.base.tokenizer.decode
    assert decode(plain.base.prompt) == "hi\n"
    assert chat.base.prompt == chat.guide.prompt  # one tokenizer, one template: the same prompt
    with pytest.raises(ConfigError, match="unknown base prompt 'chatt' \\(did you mean 'chat'\\?\\)"):
        PromptFormat(base_prompt="chatt")


def test_partial_base_distribution_mixes_with_alpha_exactly():
    """A server's top-k base (coverage 0.5 here) mixed with a full guide: each side is normalised
    over what it covers, so the guide's share is alpha (unfixed: alpha / (alpha + (1 - alpha) * 0.5))."""
    base = ScriptedModel(base_tokenizer(), lambda t: {"▁yes": 0.3, "▁no": 0.2} if after_prompt(t) == "" else {"<eos>": 0.6},
                         partial=True)
    guide = ScriptedModel(guide_tokenizer(), lambda t: {"Ġno": 0.5, "Ġmaybe": 0.5})
    pair = Pair(base=base, guide=guide)
    r = generate(pair, "Q", config(method="blendin", alpha=0.5, trace_top=3, max_new_tokens=2))
    step = r.steps[0]
    # mixture: yes 0.5 * 0.6 = 0.30; no 0.5 * 0.4 + 0.5 * 0.5 = 0.45; maybe 0.5 * 0.5 = 0.25
    assert step.token == " no" and step.chosen_prob == pytest.approx(0.45)
    assert dict(step.alternatives["blend"]) == pytest.approx({" no": 0.45, " yes": 0.30, " maybe": 0.25})
    assert step.base_top_prob == pytest.approx(0.3)  # the decision reads the exact top-k probability
    auto = generate(pair, "Q", config(method="blendin", trace_top=3, max_new_tokens=1)).steps[0]
    alpha = 0.5 / (0.3 + 0.5) + 0.1 * 0.2  # m_g / (m_b + m_g) + 0.1 * p_b[t_g]: t_g is 'no' (lowest id of the tie)
    assert auto.alpha == pytest.approx(alpha)
    assert dict(auto.alternatives["blend"])[" yes"] == pytest.approx((1 - alpha) * 0.6)


def test_a_failing_row_fails_alone():
    def script(t):
        if "boom" in t:
            raise RuntimeError("the model failed on this prompt")
        return {"▁yes": 0.9, "▁no": 0.1} if after_prompt(t) == "" else {"<eos>": 1.0}

    base = ScriptedModel(base_tokenizer(), script)
    pair = Pair(base=base, guide=None)
    results = dict(generate_many(pair, ["fine", "boom", "also fine"], config(method="base"), batch_size=3))
    assert results[1].stop_reason == "error" and "RuntimeError: the model failed on this prompt" == results[1].error
    for i in (0, 2):
        assert (results[i].text, results[i].stop_reason, results[i].error) == (" yes", "eos", None)
    with pytest.raises(RuntimeError, match="failed on this prompt"):
        generate(pair, "boom", config(method="base"))  # alone, the error is raised as before

