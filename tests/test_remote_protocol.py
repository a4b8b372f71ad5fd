"""How a remote model adapts to what a server refuses: a logprobs cap, the context length. Fast: the
vLLM-like test server answers from a scripted model."""

import pytest

from blendin.backends.fake import ScriptedModel
from blendin.backends.remote import RemoteError, RemoteModel
from blendin.decoding import generate, generate_many
from blendin.pair import Pair
from blendin.testing import CompletionServer

from scripted import after_prompt, base_tokenizer, config


def scripted_base():
    words = {"": {"▁yes": 0.6, "▁no": 0.4}, " yes": {"▁no": 0.7, "▁maybe": 0.3}, " yes no": {"<eos>": 1.0}}
    return ScriptedModel(base_tokenizer(), lambda t: words[after_prompt(t)], name="scripted")


def remote(model, url, **kw):
    kw.setdefault("retries", 0)
    return RemoteModel(url, "scripted", model.tokenizer, **kw)


def test_a_logprobs_cap_is_taken_from_the_answer_and_token_ids_are_kept():
    """Unfixed: the first 400 switched the model to text prompts for good, then halved top_k twice."""
    model = scripted_base()
    with CompletionServer(model, max_logprobs=5) as server:
        r_model = remote(model, server.url, top_k=20)
        r = generate(Pair(base=r_model, guide=None), "Q", config(method="base"))
    assert r.text == " yes no" and r.stop_reason == "eos"
    assert r_model.top_k == 5 and r_model.prompt_protocol == "token_ids"
    assert r_model.requests == 2  # the refused request, then one chunk that holds the whole answer


def test_context_length_is_reported_as_such():
    model = scripted_base()
    with CompletionServer(model, max_model_len=2) as server:  # the prompt "Q\\n" is 2 tokens, no room for one more
        r_model = remote(model, server.url, chunk=8)
        with pytest.raises(RemoteError, match=r"the context is too long for 'scripted'.*2 prompt tokens.*maximum context length is 2"):
            generate(Pair(base=r_model, guide=None), "Q", config(method="base"))
    assert r_model.prompt_protocol == "token_ids"  # not mistaken for a text-only server


def test_a_prompt_too_long_fails_only_its_own_row():
    model = scripted_base()
    with CompletionServer(model, max_model_len=4) as server:
        r_model = remote(model, server.url, chunk=1)
        results = dict(generate_many(Pair(base=r_model, guide=None), ["Q", "Q" * 6], config(method="base", max_new_tokens=2), batch_size=2))
    assert results[0].text == " yes no" and results[0].error is None
    assert results[1].stop_reason == "error" and "context is too long" in results[1].error
