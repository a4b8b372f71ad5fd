"""`blendin serve` end to end over scripted models (fast: no real model): logprobs in the vocabulary
of the token returned, the seed and body-size limits, context lengths, and faults that stay inside
their own request and never show their internals; the server's log: a start-up line and a line per
request."""

import json
import logging
import math
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx2 as httpx
import pytest
from scripted import base_tokenizer, config, guide_tokenizer, scripted_pair

from blendin.backends.fake import ScriptedModel
from blendin.pair import Pair
from blendin.server import ServerThread, build
from blendin.server.settings import ServeSettings


@contextmanager
def serving(pair, cfg=None, **settings):
    app = build(pair, cfg or config(), ServeSettings(**settings))
    with ServerThread(app) as url:
        yield url, app.state.engine


def post(url, path, body, **kw):
    return httpx.post(url + path, json=body, timeout=30, **kw)


def complete(url, **fields):
    return post(url, "/completions", {"model": "blendin", "prompt": "Q\n", **fields})


def events(response) -> list[dict]:
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def looping(tok, **kw) -> ScriptedModel:
    """A model that says ' yes' for ever (its script ignores the text)."""
    piece = "Ġyes" if tok.byte_level else "▁yes"
    return ScriptedModel(tok, lambda text: {piece: 1.0}, **kw)


# -- logprobs: from the distribution the token was decoded from, in its vocabulary, always with it --

# At ' maybe' the base is unsure (m_b 0.35 < 0.4) and the guide is asked: its top token ' cats' has no
# base twin and lands on '▁cat' (the first base token of ' cats'), so switch returns ' cat'.
SWITCH_BASE = {"": {"▁yes": 0.3, "▁no": 0.25, "▁maybe": 0.45}, " maybe": {"▁yes": 0.35, "▁no": 0.30, "▁cat": 0.35},
               " maybe cat": {"<eos>": 1.0}}
SWITCH_GUIDE = {" maybe": {"Ġcats": 0.7, "Ġno": 0.3}}
# Nudging: the guide writes ' yes no' (two words, both accepted), then the base ends.
NUDGE_BASE = {"": {"▁yes": 0.35, "▁no": 0.3, "▁maybe": 0.35}, " yes": {"▁maybe": 0.36, "▁no": 0.34, "▁yes": 0.30},
              " yes no": {"▁The": 0.3, "▁cat": 0.3, "<eos>": 0.4}}
NUDGE_GUIDE = {"": {"Ġyes": 0.9, "Ġno": 0.1}, " yes": {"Ġno": 0.8, "Ġyes": 0.2}, " yes no": {"<|end|>": 0.9, "Ġno": 0.1}}


def assert_chosen_in_top(lp: dict, k: int) -> None:
    """OpenAI/vLLM semantics: each position's top list holds the chosen token with its own logprob."""
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert token in top and top[token] == logprob, (token, logprob, top)
        assert len(top) <= k + 1


def test_switch_logprobs_are_in_the_base_vocabulary_of_the_token_returned():
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE)) as (url, _):
        r = complete(url, logprobs=1, blendin={"method": "switch"}).json()
        chat = post(url, "/chat/completions", {"model": "blendin", "messages": [{"role": "user", "content": "Q"}],
                                               "logprobs": True, "top_logprobs": 2, "blendin": {"method": "switch"}}).json()
    assert r["choices"][0]["text"] == " maybe cat" and r["blendin"]["interventions"] == 1
    lp = r["choices"][0]["logprobs"]
    assert lp["tokens"] == [" maybe", " cat", ""]
    assert lp["top_logprobs"][1] == {" cat": pytest.approx(math.log(0.7))}  # not the guide's ' cats'
    assert_chosen_in_top(lp, 1)
    content = chat["choices"][0]["logprobs"]["content"]
    assert [c["token"] for c in content] == [" maybe", " cat", ""]
    for c in content:
        assert {"token": c["token"], "logprob": c["logprob"], "bytes": c["bytes"]} in c["top_logprobs"]
        assert " cats" not in [t["token"] for t in c["top_logprobs"]]  # no guide-vocabulary token


def test_nudging_logprobs_include_the_words_the_guide_wrote():
    with serving(scripted_pair(NUDGE_BASE, NUDGE_GUIDE)) as (url, _):
        r = complete(url, logprobs=2, blendin={"method": "nudging"}).json()
        streamed = httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n", "logprobs": 2, "stream": True,
                                                          "blendin": {"method": "nudging"}}, timeout=30)
    lp = r["choices"][0]["logprobs"]
    assert lp["tokens"] == [" yes", " no", ""] and r["blendin"]["interventions"] == 2
    # the words the guide wrote report the guide's own distribution (its vocabulary, as the tokens are)
    assert lp["top_logprobs"][:2] == [{" yes": pytest.approx(math.log(0.9)), " no": pytest.approx(math.log(0.1))},
                                      {" no": pytest.approx(math.log(0.8)), " yes": pytest.approx(math.log(0.2))}]
    assert_chosen_in_top(lp, 2)
    steps = [c["choices"][0]["logprobs"] for c in events(streamed) if c["choices"] and c["choices"][0]["logprobs"]]
    assert [s["top_logprobs"][0] for s in steps] == lp["top_logprobs"]


def test_a_sampled_token_outside_the_top_k_is_added_to_it():
    pair = Pair(base=ScriptedModel(base_tokenizer(), lambda text: {"▁yes": 0.6, "▁no": 0.4}), guide=None)
    with serving(pair, config(method="base")) as (url, _):
        r = complete(url, logprobs=1, max_tokens=1, temperature=1.0, seed=0, n=16).json()
    tops = [c["logprobs"]["top_logprobs"][0] for c in r["choices"]]
    assert {" yes": pytest.approx(math.log(0.6))} in tops  # ' yes' chosen: the top-1 alone
    assert {" yes": pytest.approx(math.log(0.6)), " no": pytest.approx(math.log(0.4))} in tops  # ' no' chosen: added after it
    for c in r["choices"]:
        assert_chosen_in_top(c["logprobs"], 1)


# -- seeds, body sizes, faults ----------------------------------------------------------------------

def test_seed_out_of_range_is_a_400_and_n_seeds_stay_in_range():
    with serving(scripted_pair({"": {"▁yes": 0.5, "▁no": 0.5}, " yes": {"<eos>": 1.0}, " no": {"<eos>": 1.0}}, {}),
                 config(method="base")) as (url, _):
        for seed in (2**64, -1, 10**30):
            r = complete(url, seed=seed, temperature=1.0)
            assert r.status_code == 400 and r.json()["error"]["param"] == "seed", r.text
            assert r.json()["error"]["message"].startswith("seed:")
        top = complete(url, seed=2**64 - 1, temperature=1.0, n=2)  # seeds 2**64 - 1 and 0
        assert top.status_code == 200 and len(top.json()["choices"]) == 2


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole():
    with serving(scripted_pair({"": {"<eos>": 1.0}}, {}), config(method="base"), max_request_bytes=1000) as (url, _):
        small = httpx.post(url + "/completions", content=iter([b'{"model": "blendin", ', b'"prompt": "Q\\n", "max_tokens": 1}']),
                           headers={"content-type": "application/json"}, timeout=30)
        assert small.status_code == 200 and "content-length" not in small.request.headers  # chunked, and served
        declared = complete(url, max_tokens=1, stop=["x" * 500, "y" * 600])
        assert declared.status_code == 413 and "--max-request-bytes" in declared.json()["error"]["message"]
        port = int(url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 1500 + b"x" * 1500 + b"\r\n")
            # the body never ends: a server that read it whole would never answer
            reply = b""
            while b"--max-request-bytes" not in reply:
                data = s.recv(65536)
                if not data:
                    break
                reply += data
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b"--max-request-bytes" in reply


def test_a_fault_of_the_server_is_a_500_without_its_internals(caplog):
    def script(text):
        raise RuntimeError("secret-internal-detail")

    pair = Pair(base=ScriptedModel(base_tokenizer(), script), guide=None)
    with caplog.at_level(logging.ERROR, logger="blendin.server"), serving(pair, config(method="base")) as (url, engine):
        plain = complete(url)
        streamed = httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n", "stream": True}, timeout=30)
        untokenizable = complete(url, prompt="Q\u20ac\n")  # the fake tokenizer has no piece for it: raises in the handler
    assert plain.status_code == 500 and untokenizable.status_code == 500
    errors = [plain.json()["error"], untokenizable.json()["error"], events(streamed)[-1]["error"]]
    for err in errors:
        assert err["type"] == "server_error" and "internal error [err-" in err["message"]
        assert "secret" not in err["message"] and "Error" not in err["message"] and "cannot encode" not in err["message"]
    logged = caplog.text
    assert "secret-internal-detail" in logged and "cannot encode" in logged
    for err in errors:  # the id in each reply finds its traceback in the log
        assert err["message"].split("[")[1].split("]")[0] in logged


def test_a_request_the_server_cannot_serve_is_a_400_with_the_reason():
    pair = Pair(base=looping(base_tokenizer()), guide=None)
    with serving(pair, config(method="base")) as (url, _):
        r = complete(url, max_tokens=2, blendin={"method": "nudging"})
    assert r.status_code == 400, r.text
    assert "needs a guide model" in r.json()["error"]["message"] and r.json()["error"]["type"] == "invalid_request_error"


# -- context length ------------------------------------------------------------------------------

def context_pair(base_context, guide_context):
    base, guide = looping(base_tokenizer()), looping(guide_tokenizer())
    base.context_length, guide.context_length = base_context, guide_context
    return Pair(base=base, guide=guide)


def test_prompt_plus_max_tokens_must_fit_the_base_context():
    with serving(context_pair(16, None), config(method="base", max_new_tokens=20)) as (url, _):
        over = complete(url, prompt="abcdefg\n", max_tokens=10)  # 8 tokens + 10
        fits = complete(url, prompt="abcdefg\n", max_tokens=8)
        default = complete(url, prompt="abcdefg\n")  # the server's 20 is lowered to the 8 that fit
        full = complete(url, prompt="abcdefghijklmno\n", max_tokens=1)  # 16 tokens: no room at all
        chat = post(url, "/chat/completions", {"model": "blendin", "messages": [{"role": "user", "content": "abcdefg"}],
                                               "max_completion_tokens": 9})
    assert over.status_code == 400 and over.json()["error"]["param"] == "max_tokens"
    assert over.json()["error"]["message"] == ("the prompt is 8 tokens and max_tokens is 10, 18 in all, above the base model's "
                                               "context of 16 tokens; lower max_tokens to at most 8")
    assert fits.status_code == 200 and fits.json()["usage"]["completion_tokens"] == 8
    assert default.status_code == 200, default.text
    assert default.json()["usage"]["completion_tokens"] == 8 and default.json()["choices"][0]["finish_reason"] == "length"
    assert full.status_code == 400 and full.json()["error"]["param"] == "prompt" and "16 tokens" in full.json()["error"]["message"]
    assert chat.status_code == 400 and "9, 17 in all" in chat.json()["error"]["message"]


def test_the_guide_context_counts_only_when_the_method_uses_the_guide():
    with serving(context_pair(None, 12), config(method="base")) as (url, _):
        base_only = complete(url, prompt="abcdefg\n", max_tokens=5)
        blended = complete(url, prompt="abcdefg\n", max_tokens=5, blendin={"method": "blendin"})
    assert base_only.status_code == 200
    assert blended.status_code == 400 and "above the guide model's context of 12 tokens; lower max_tokens to at most 4" in blended.text


# -- a failing row fails its own request only ------------------------------------------------------

def test_a_failing_row_fails_only_its_own_request_in_a_shared_batch(caplog):
    entered, gate = threading.Event(), threading.Event()

    def script(text):
        prompt, generated = text.split("\n", 1)
        if prompt == "bad" and generated:
            raise RuntimeError("secret-internal-detail")  # the bad row's second pass
        if prompt == "good" and not generated:
            entered.set()
            gate.wait(10)  # hold the good row's first pass until the bad request waits to join the batch
        return {"▁yes": 1.0}

    pair = Pair(base=ScriptedModel(base_tokenizer(), script), guide=None)
    with caplog.at_level(logging.ERROR, logger="blendin.server"), serving(pair, config(method="base")) as (url, engine):
        with ThreadPoolExecutor(2) as pool:
            good = pool.submit(complete, url, prompt="good\n", max_tokens=6)
            assert entered.wait(10)
            bad = pool.submit(complete, url, prompt="bad\n", max_tokens=6)
            deadline = time.time() + 10
            while engine.waiting == 0 and time.time() < deadline:
                time.sleep(0.01)
            assert engine.waiting == 1  # the bad row will join the good one's batch at its next round
            gate.set()
            good, bad = good.result(), bad.result()
        after = complete(url, prompt="good\n", max_tokens=2)
        assert engine.running == 0 and engine.waiting == 0
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["text"] == " yes" * 6 and good.json()["choices"][0]["finish_reason"] == "length"
    assert bad.status_code == 500 and "secret" not in bad.text and "secret-internal-detail" in caplog.text
    assert after.status_code == 200


# -- the log: a start-up line, and one line per request ---------------------------------------------

def test_every_request_is_logged_in_one_line(caplog):
    pair = scripted_pair(SWITCH_BASE, SWITCH_GUIDE)
    with caplog.at_level(logging.INFO, logger="blendin.server"), serving(pair) as (url, _):
        assert complete(url, n=2, blendin={"method": "switch"}).status_code == 200
        streamed = post(url, "/chat/completions", {"model": "blendin", "messages": [{"role": "user", "content": "Q"}],
                                                   "stream": True, "blendin": {"method": "switch"}})
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
        assert complete(url, max_tokens=0).status_code == 400
        assert httpx.get(url + "/nowhere", timeout=30).status_code == 404
        assert httpx.get(url.removesuffix("/v1") + "/health", timeout=30).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "blendin.server" and r.levelno == logging.INFO]
    expected = [
        # ' maybe cat' and the end: 3 tokens a row, the guide's at ' cat'
        r"POST /v1/completions 200 rows=2 method=switch tokens=6 interventions=2 \(33\.3%\) \d+ ms",
        r"POST /v1/chat/completions 200 rows=1 method=switch tokens=3 interventions=1 \(33\.3%\) \d+ ms",  # at the stream's end
        r"POST /v1/completions 400 \d+ ms: max_tokens must be at least 1 .*",
        r"GET /v1/nowhere 404 \d+ ms: no route GET /v1/nowhere; .*",
        r"GET /health 200 \d+ ms",
    ]
    assert len(lines) == len(expected), lines
    for pattern, line in zip(expected, lines):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_a_row_that_fails_mid_stream_is_logged_with_its_error(caplog):
    def script(text):
        if text.split("\n", 1)[1]:
            raise RuntimeError("secret-internal-detail")  # the second pass: after the 200 went out
        return {"▁yes": 1.0}

    pair = Pair(base=ScriptedModel(base_tokenizer(), script), guide=None)
    with caplog.at_level(logging.INFO, logger="blendin.server"), serving(pair, config(method="base")) as (url, _):
        r = httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n", "stream": True}, timeout=30)
    assert r.status_code == 200 and "internal error [err-" in r.text
    line = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("POST ")][0]
    assert re.fullmatch(r"POST /v1/completions 200 rows=1 method=base tokens=0 interventions=0 \(0\.0%\) \d+ ms: "
                        r"decoding failed: internal error \[err-\w+\]; .*", line), line
    assert "secret" not in line  # the traceback is logged apart, under the id


@pytest.fixture
def server_logger():
    """The "blendin.server" logger as it was: ``serve`` configures it for the process."""
    log = logging.getLogger("blendin.server")
    saved = (list(log.handlers), log.level, log.propagate)
    yield log
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def test_serve_logs_a_start_up_line_and_requests_to_stderr(monkeypatch, capsys, server_logger):
    import blendin.pair
    import blendin.server
    from blendin.server import serve

    ran = {}

    class Ran:  # uvicorn's server as serve() builds it, run at once
        def __init__(self, config, app, log):
            ran.update(config=config, app=app)

        def run(self):
            pass

    monkeypatch.setattr(blendin.pair, "load_pair", lambda cfg, methods=None: scripted_pair(SWITCH_BASE, SWITCH_GUIDE))
    monkeypatch.setattr(blendin.server, "DrainingServer", Ran)
    serve(config(base="my-base", guide="my-guide", method="switch"), ServeSettings(host="127.0.0.1", port=8123))
    err = capsys.readouterr().err
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO blendin: serving 'blendin' "
                     r"\(base my-base, guide my-guide, method switch\) at http://127\.0\.0\.1:8123/v1 "
                     r"\(a page to try it: http://127\.0\.0\.1:8123/\)$", err, re.M), err
    assert ran["config"].access_log is False and ran["config"].port == 8123 and ran["config"].timeout_graceful_shutdown == 30
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE), config(method="switch")) as (url, _):  # the logger serve() set up
        complete(url)
    assert re.search(r"INFO blendin: POST /v1/completions 200 rows=1 method=switch tokens=3 interventions=1 \(33\.3%\) \d+ ms$",
                     capsys.readouterr().err, re.M)
