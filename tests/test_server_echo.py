"""``echo`` on /v1/completions over scripted models (fast): the prompt's tokens scored under the
request's method, in the shape lm-evaluation-harness reads (len(prompt) + 1 entries, the first null,
the generated token last, the actual token always among the top), batched prompts in order, and the
requests it cannot serve refused with a 400 that says why."""

import math

import httpx2 as httpx
import pytest
from test_server_scripted import post, serving
from scripted import config, scripted_pair

from blendin.backends.fake import FakeTokenizer, ScriptedModel
from blendin.pair import Pair
from blendin.scoring import score_ids

BASE = {"": {"▁yes": 0.3, "▁no": 0.25, "▁maybe": 0.45}, " maybe": {"▁yes": 0.35, "▁no": 0.30, "▁cat": 0.35},
        " maybe no": {"<eos>": 0.9, "▁yes": 0.1}, " maybe yes": {"<eos>": 1.0}}
GUIDE = {"": {"Ġyes": 0.7, "Ġno": 0.3}, " maybe": {"Ġno": 0.6, "Ġyes": 0.4}, " maybe no": {"<|end|>": 1.0}, " maybe yes": {"<|end|>": 1.0}}


def pair():
    return scripted_pair(BASE, GUIDE)


def ids_of(p, text):
    return p.base.tokenizer.encode(text)


def lm_eval_parse(choice, ctxlen):
    """lm-evaluation-harness 0.4's ``parse_logprobs`` for one choice: (sum, is_greedy)."""
    lp = choice["logprobs"]
    tokens, tops = lp["token_logprobs"][ctxlen:-1], lp["top_logprobs"][ctxlen:-1]
    return sum(tokens), all(t == max(top.values()) for t, top in zip(tokens, tops))


@pytest.mark.parametrize("method", ["base", "guide", "switch", "blendin"])
def test_echo_scores_the_prompt_as_lm_eval_reads_it(method):
    p = pair()
    context, texts = ids_of(p, "Q\n"), [ids_of(p, "Q\n maybe no"), ids_of(p, "Q\n maybe yes")]
    with serving(p) as (url, _):
        r = post(url, "/completions", {"model": "blendin", "prompt": texts, "echo": True, "logprobs": 1, "max_tokens": 1,
                                       "temperature": 0, "seed": 1234, "blendin": {"method": method}})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = score_ids(p, [(t, len(context)) for t in texts], config(method=method))
    for choice, ids, want in zip(body["choices"], texts, expected):
        lp = choice["logprobs"]
        assert len(lp["token_logprobs"]) == len(ids) + 1 and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert choice["text"].startswith("Q\n maybe")
        total, greedy = lm_eval_parse(choice, len(context))
        assert total == pytest.approx(sum(max(t.logprob, -9999.0) for t in want.tokens)) and greedy == want.greedy  # -9999: p = 0, as JSON holds no -inf
        for token, logprob, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
            assert top[token] == logprob  # the actual token is always among the top
    assert body["usage"]["prompt_tokens"] == sum(len(t) for t in texts) and body["usage"]["completion_tokens"] == 2


def test_echo_with_max_tokens_0_scores_the_prompt_alone():
    p = pair()
    ids = ids_of(p, "Q\n maybe no")
    with serving(p) as (url, _):
        r = post(url, "/completions", {"model": "blendin", "prompt": ids, "echo": True, "logprobs": 0, "max_tokens": 0}).json()
    lp = r["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(ids) and r["usage"]["completion_tokens"] == 0
    assert lp["token_logprobs"][-1] == pytest.approx(math.log(auto_mixed()))
    assert lp["text_offset"] == sorted(lp["text_offset"]) and r["choices"][0]["text"] == "Q\n maybe no"


def auto_mixed():
    from blendin.blend import auto_alpha

    alpha = auto_alpha(0.35, 0.6, 0.30)
    return alpha * 0.6 + (1 - alpha) * 0.30


@pytest.mark.parametrize("fields, says", [
    ({"echo": True, "blendin": {"method": "nudging"}}, "whole words"),
    ({"echo": True, "stream": True}, "not streamed"),
    ({"max_tokens": 0}, "0 only with echo"),
])
def test_what_echo_cannot_do_is_a_400_that_says_why(fields, says):
    with serving(pair()) as (url, _):
        r = post(url, "/completions", {"model": "blendin", "prompt": "Q\n maybe", "logprobs": 1, **fields})
    assert r.status_code == 400 and says in r.json()["error"]["message"]


class StartTokenizer(FakeTokenizer):
    """Puts <bos> before every prompt, as Gemma's tokenizer does."""

    def encode_prompt(self, text):
        return [self.pieces().index("<bos>"), *self.encode(text)]


def test_a_token_prompt_without_the_base_s_start_token_is_read_after_it():
    """lm-eval tokenizes through /tokenize without special tokens: the base still reads its <bos>
    first (Gemma scores nonsense without it), and the answer keeps the prompt's own positions."""
    plain = pair()
    tok = StartTokenizer(plain.base.tokenizer.pieces(), eos="<eos>", specials=["<bos>"])
    p = Pair(base=ScriptedModel(tok, plain.base.script, name="fake-base"), guide=plain.guide)
    ids = tok.encode("Q\n maybe no")
    with serving(p) as (url, _):
        r = post(url, "/completions", {"model": "blendin", "prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 1}).json()
    lp = r["choices"][0]["logprobs"]
    bos = tok.pieces().index("<bos>")
    [want] = score_ids(p, [([bos, *ids], 2)], config(method="blendin"))
    assert len(lp["token_logprobs"]) == len(ids) + 1 and lp["token_logprobs"][0] is None
    assert lp["token_logprobs"][1:-1] == pytest.approx([max(t.logprob, -9999.0) for t in want.tokens])
    assert p.base.sessions and all(s.ids[0] == bos for s in p.base.sessions)  # the scoring row and the completion's


LINE = {"": {"▁yes": 1.0}, " yes": {"▁no": 1.0}, " yes no": {"▁maybe": 1.0}, " yes no maybe": {"▁cat": 1.0}, " yes no maybe cat": {"<eos>": 1.0}}


@pytest.mark.parametrize("method", ["base", "nudging", "blendin"])
@pytest.mark.parametrize("stop, text, counted", [(" no", " yes", 2), ("s n", " ye", 2), (" no m", " yes", 3), (None, " yes no maybe cat", 5)])
def test_completion_tokens_count_as_vllm_does(method, stop, text, counted):
    """Up to and including the token that completed the stop string (or the end token), never a
    token decoded past it, whoever wrote it (nudging's guide writes whole words)."""
    with serving(scripted_pair(LINE, {k: {"Ġyes": 1.0} for k in LINE})) as (url, _):
        r = post(url, "/completions", {"model": "blendin", "prompt": "Q\n", "max_tokens": 10, "stop": [stop] if stop else None,
                                       "blendin": {"method": method}}).json()
    assert r["choices"][0]["text"] == text and r["usage"]["completion_tokens"] == counted


def test_prompt_logprobs_as_vllm_gives_them_by_token_id():
    p = pair()
    ids = ids_of(p, "Q\n maybe no")
    with serving(p) as (url, _):
        r = post(url, "/completions", {"model": "blendin", "prompt": ids, "prompt_logprobs": 2, "max_tokens": 1})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    [want] = score_ids(p, [(ids, 1)], config(method="blendin"), top=2)
    got = choice["prompt_logprobs"]
    assert len(got) == len(ids) and got[0] is None and "Q" not in choice["text"]  # no echo: the text is the completion's
    for entry, t in zip(got[1:], want.tokens):
        mine = entry[str(t.token_id)]
        assert mine["logprob"] == pytest.approx(max(t.logprob, -9999.0)) and mine["rank"] == t.rank
        assert len(entry) <= 3 and all(v["rank"] >= 1 for v in entry.values())
    last = got[-1][str(ids[-1])]
    assert last["decoded_token"] == " no" and last["logprob"] == pytest.approx(math.log(auto_mixed())) and last["rank"] == 1


def test_a_scored_prompt_is_not_counted_as_an_answer_in_the_metrics():
    p = pair()
    with serving(p) as (url, _):
        post(url, "/completions", {"model": "blendin", "prompt": ids_of(p, "Q\n maybe no"), "echo": True, "logprobs": 1, "max_tokens": 1})
        text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    generated = next(line for line in text.splitlines() if line.startswith("blendin_generated_tokens_total"))
    assert generated.endswith(" 1.0")  # the one token written after the prompt, not the prompt's own
