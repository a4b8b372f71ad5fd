"""A llama.cpp (llama-cpp-python 0.3.x) server at an end token. Fast: a scripted server that answers
as llama-cpp-python does.

What llama-cpp-python sends (``Llama._create_completion``): an end token is never part of the
completion, so its logprobs are not sent either; the answer stops before it with
``finish_reason: "stop"``. When the greedy next token is the end token the answer is
``{"text": "", "logprobs": {"tokens": [], "top_logprobs": [], ...}, "finish_reason": "stop"}``.
Logprobs are keyed by text, and a control token's text is '' (all of them collapse onto that key).
It takes text prompts only (a token-id prompt is a 500 validation error).
"""

import pytest

from blendin.backends.fake import ScriptedModel
from blendin.backends.remote import RemoteError, RemoteModel
from blendin.decoding import generate
from blendin.pair import Pair
from blendin.testing import CompletionServer

from scripted import after_prompt, base_tokenizer, config


class LlamaCppLike(CompletionServer):
    """The vLLM-like test server's answer, rewritten as llama-cpp-python writes it. ``logprobs=False``:
    a server that leaves logprobs out (llama-cpp-python refuses them without ``logits_all``; another
    server may just drop them)."""

    def __init__(self, model, logprobs: bool = True):
        super().__init__(model)
        self.with_logprobs = logprobs
        self.answers: list[dict] = []

    def answer(self, path, body):
        if isinstance(body.get("prompt"), list):
            self.requests += 1
            return 500, {"error": {"message": "[{'type': 'string_type', 'loc': ('body', 'prompt', 'str'), 'msg': 'Input should be a valid string'}]"}}
        status, data = super().answer(path, {**body, "return_tokens_as_token_ids": True})
        if status != 200:
            return status, data
        tok = self.model.tokenizer
        text = lambda t: "" if t in tok.special_ids else tok.decode([t])  # noqa: E731
        choice = data["choices"][0]
        lp = choice["logprobs"]
        ids = [int(t.split(":", 1)[1]) for t in lp["tokens"]]
        tops = [[(int(k.split(":", 1)[1]), v) for k, v in top.items()] for top in lp["top_logprobs"]]
        stopped = bool(ids) and ids[-1] in tok.eos_ids
        if stopped:  # the end token is not part of the completion: neither it nor its logprobs are sent
            ids, tops = ids[:-1], tops[:-1]
        rows = []
        for chosen, top in zip(ids, tops):
            row = {text(t): v for t, v in sorted(top, key=lambda p: -p[1])}  # the last '' written wins
            row.update({text(chosen): dict(top)[chosen]})
            rows.append(row)
        choice["text"] = tok.decode(ids)
        choice["finish_reason"] = "stop" if stopped else "length"
        choice["logprobs"] = {"tokens": [text(t) for t in ids], "text_offset": [0] * len(ids),
                              "token_logprobs": [dict(t)[c] for c, t in zip(ids, tops)], "top_logprobs": rows}
        if not self.with_logprobs:
            choice["logprobs"] = None
        self.answers.append(data)
        return 200, data


def scripted(words):
    return ScriptedModel(base_tokenizer(), lambda t: words[after_prompt(t)], name="scripted")


ENDS = {"": {"▁yes": 0.6, "▁no": 0.4}, " yes": {"▁no": 0.7, "<eos>": 0.3}, " yes no": {"<eos>": 0.9, "▁maybe": 0.1}}


def remote(model, url, **kw):
    kw.setdefault("retries", 0)
    return RemoteModel(url, "scripted", model.tokenizer, **kw)


@pytest.mark.parametrize("chunk", [1, 8])
def test_an_answer_that_stops_at_the_end_token_ends_the_generation(chunk):
    """Unfixed: the answer after ' yes no' is empty and blendin said to start the server with
    logits_all=True (RemoteError); with chunk 8 the first answer holds ' yes no' and stops."""
    model = scripted(ENDS)
    with LlamaCppLike(model) as server:
        r_model = remote(model, server.url, chunk=chunk)
        r = generate(Pair(base=None, guide=r_model), "Q", config(method="guide"))
    assert r.text == " yes no" and r.stop_reason == "eos"
    assert r_model.prompt_protocol == "text"
    assert any(a["choices"][0]["finish_reason"] == "stop" for a in server.answers)


def test_the_end_token_is_the_top_token_where_the_server_stopped():
    model = scripted(ENDS)
    tok = model.tokenizer
    with LlamaCppLike(model) as server:
        r_model = remote(model, server.url, chunk=8)
        ids = tok.encode_prompt("Q\n")
        empty, _ = r_model.complete(ids + tok.encode(" yes no"), 4)
        whole, _ = r_model.complete(ids, 4)
    assert server.answers[0]["choices"][0]["logprobs"]["tokens"] == []  # as llama-cpp-python answers
    # the greedy choice was the end token: it gets all the mass (the server sends no distribution there)
    assert [t for t, _, _ in empty] == [tok.eos_id]
    assert empty[0][1][tok.eos_id] == 0 and empty[0][1].exp().sum() == pytest.approx(1.0) and empty[0][2] == 1.0
    assert [t for t, _, _ in whole] == [tok.encode(" yes")[0], tok.encode(" no")[0], tok.eos_id]


def test_the_end_tokens_probability_keyed_as_empty_text_stays_visible():
    """llama-cpp-python keys a control token's logprob by its text, ''. Unfixed: dropped (no token has
    the text ''), so the end token looked impossible after ' yes'."""
    model = scripted(ENDS)
    tok = model.tokenizer
    with LlamaCppLike(model) as server:
        out, _ = remote(model, server.url, chunk=8).complete(tok.encode_prompt("Q\n") + tok.encode(" yes"), 4)
    assert "" in server.answers[-1]["choices"][0]["logprobs"]["top_logprobs"][0]
    assert float(out[0][1][tok.eos_id].exp()) == pytest.approx(0.3, abs=1e-5)
    assert out[0][2] == pytest.approx(1.0, abs=1e-5)


def test_no_logprobs_while_the_server_did_not_stop_still_asks_for_logits_all():
    model = scripted(ENDS)
    with LlamaCppLike(model, logprobs=False) as server:
        with pytest.raises(RemoteError, match="logits_all=True"):
            generate(Pair(base=None, guide=remote(model, server.url)), "Q", config(method="guide"))
        tok = model.tokenizer
        with pytest.raises(RemoteError, match="logits_all=True"):  # logprobs: null is no answer, stopped or not
            remote(model, server.url).complete(tok.encode_prompt("Q\n") + tok.encode(" yes no"), 4)
