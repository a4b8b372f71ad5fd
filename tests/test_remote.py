"""Remote models over an OpenAI-compatible server (a vLLM-like test server on 127.0.0.1)."""

import pytest

from blendin import BlendConfig
from blendin.backends.remote import RemoteError, RemoteModel
from blendin.decoding import generate
from blendin.pair import Pair

from blendin.testing import CompletionServer

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"


def remote(model, url, **kw):
    kw.setdefault("retries", 1)
    return RemoteModel(url, "smollm2", model.tokenizer, name="smollm2-remote", **kw)


@pytest.fixture(scope="module")
def smol(embedded_pair):
    return embedded_pair.guide  # SmolLM2, served remotely and used locally


def test_remote_base_alone_matches_the_local_model(smol):
    config = BlendConfig(method="base", max_new_tokens=10)
    local = generate(Pair(base=smol, guide=None), QUESTION, config)
    with CompletionServer(smol) as server:
        r = generate(Pair(base=remote(smol, server.url), guide=None), QUESTION, config)
    assert [s.token_id for s in r.steps] == [s.token_id for s in local.steps]
    assert [s.base_top_prob for s in r.steps] == pytest.approx([s.base_top_prob for s in local.steps], abs=1e-5)
    assert r.remote["base"]["prompt_protocol"] == "token_ids" and 0.5 < r.remote["base"]["mean_covered"] <= 1.0001


def test_chunked_and_token_by_token_give_the_same_greedy_output_with_fewer_requests(smol):
    config = BlendConfig(method="blendin", max_new_tokens=16)
    with CompletionServer(smol) as server:
        chunked = generate(Pair(base=remote(smol, server.url, chunk=8), guide=smol), QUESTION, config)
        per_token = generate(Pair(base=remote(smol, server.url, chunk=1), guide=smol), QUESTION, config)
    assert [s.token_id for s in chunked.steps] == [s.token_id for s in per_token.steps]
    assert per_token.requests >= per_token.tokens - 1  # one request per token (the last may be EOS)
    assert chunked.requests < per_token.requests


def test_server_that_fails_then_recovers(smol):
    with CompletionServer(smol) as server:
        server.fail_next = 2
        model = remote(smol, server.url, retries=3)
        r = generate(Pair(base=model, guide=None), QUESTION, BlendConfig(method="base", max_new_tokens=3))
    assert r.tokens == 3 and server.requests >= 3


def test_server_that_caps_logprobs_is_adapted_to(smol):
    with CompletionServer(smol, max_logprobs=5) as server:
        model = remote(smol, server.url, top_k=20)
        generate(Pair(base=model, guide=None), QUESTION, BlendConfig(method="base", max_new_tokens=2))
    assert model.top_k == 5


def test_text_only_server(smol):
    with CompletionServer(smol, text_only=True) as server:
        r = generate(Pair(base=remote(smol, server.url), guide=None), QUESTION, BlendConfig(method="base", max_new_tokens=4))
    assert r.remote["base"]["prompt_protocol"] == "text" and r.tokens == 4


def test_server_down_is_a_clear_error_not_a_hang(smol):
    model = RemoteModel("http://127.0.0.1:9", "x", smol.tokenizer, retries=1, timeout=5)
    with pytest.raises(RemoteError, match="cannot reach http://127.0.0.1:9"):
        generate(Pair(base=model, guide=None), QUESTION, BlendConfig(method="base", max_new_tokens=2))


def test_bad_url():
    with pytest.raises(RemoteError, match="bad server URL"):
        RemoteModel("ftp://x", "m", tokenizer=None)


def test_cli_remote_base_with_local_guide(smol):
    import json
    import subprocess
    import sys

    with CompletionServer(smol) as server:
        cmd = [sys.executable, "-m", "blendin", "generate", "--json", "--max-new-tokens", "6",
               "--base", "smollm2-135m-instruct", "--base-url", server.url, "--base-model", "smollm2", QUESTION]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["requests"] >= 1 and d["remote"]["base"]["url"] == server.url and d["tokens"] == len(d["steps"])


def test_many_prompts_run_concurrently_and_match_one_at_a_time(smol):
    from blendin.decoding import generate_many

    prompts = [QUESTION, "What is 7 times 8?", "Name a fruit.", "Why is the sky blue?"]
    config = BlendConfig(method="blendin", max_new_tokens=8)
    with CompletionServer(smol) as server:
        model = remote(smol, server.url, concurrency=4)
        pair = Pair(base=model, guide=smol)
        alone = [generate(pair, p, config) for p in prompts]
        together = dict(generate_many(pair, prompts, config, batch_size=4))
    for i, r in enumerate(alone):
        assert [s.token_id for s in together[i].steps] == [s.token_id for s in r.steps]
    assert sum(r.requests for r in together.values()) >= 4
