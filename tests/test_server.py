"""`blendin serve` on the embedded pair: the official openai client, raw HTTP errors, a load test.

Every answer is checked against the engine itself: a greedy request through the server must give
exactly what ``decoding.generate`` gives for the same rendered prompt.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import openai
import pytest

from blendin import BlendConfig
from blendin.decoding import generate
from blendin.prompts import render_chat, render_raw
from blendin.server import ServerThread, build
from blendin.server.settings import ServeSettings

pytestmark = pytest.mark.slow

KEY = "sk-test-blendin"
PROMPT = "Question: What is 12 + 7?\nAnswer:"
SETTINGS = ServeSettings(api_key=KEY, batch_size=16, max_tokens_cap=64, max_prompt_tokens=1024,
                         max_request_bytes=32_000, max_queue=128)


@pytest.fixture(scope="module")
def server(embedded_pair):
    app = build(embedded_pair, BlendConfig(), SETTINGS)
    with ServerThread(app) as url:
        yield url, app.state.engine


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0], api_key=KEY, max_retries=0, timeout=300)


def reference(pair, rendered, **changes):
    """What the engine decodes alone for this prompt (greedy unless told otherwise); a raw completion
    passes ``turn_stop=False``, as the server's completions route does (chat stops at the next turn)."""
    return generate(pair, rendered, BlendConfig().with_(**changes))


def raw(pair, text):
    return render_raw(pair.base.tokenizer, pair.guide.tokenizer, text=text)


def post(url, path, body, key=KEY, timeout=300):
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(url + path, content=content, headers=headers, timeout=timeout)


def test_models_lists_the_served_pair(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["blendin"]
    assert models[0].model_extra["blendin"]["base"] == "gemma-3-270m"


def test_completion_matches_the_engine(client, embedded_pair):
    r = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=24)
    ref = reference(embedded_pair, raw(embedded_pair, PROMPT), max_new_tokens=24, turn_stop=False)
    assert r.choices[0].text == ref.text
    assert r.choices[0].finish_reason == ("length" if ref.stop_reason == "length" else "stop")
    assert r.usage.completion_tokens == ref.tokens
    assert r.usage.prompt_tokens == len(raw(embedded_pair, PROMPT).base_ids)
    ext = r.model_extra["blendin"]
    assert (ext["method"], ext["interventions"]) == ("blendin", ref.interventions)
    assert ext["intervention_rate"] == pytest.approx(ref.interventions / ref.tokens)


def test_token_id_prompt_equals_text_prompt(client, embedded_pair):
    ids = list(raw(embedded_pair, PROMPT).base_ids)
    by_ids = client.completions.create(model="blendin", prompt=ids, max_tokens=16)
    by_text = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=16)
    assert by_ids.choices[0].text == by_text.choices[0].text


def test_streamed_completion_equals_unstreamed(client):
    whole = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=20).choices[0].text
    chunks = list(client.completions.create(model="blendin", prompt=PROMPT, max_tokens=20, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) > 3  # streamed, not one lump


def test_stop_string_is_cut_in_both_modes(client, embedded_pair):
    whole = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=40, stop=["Question"])
    ref = reference(embedded_pair, raw(embedded_pair, PROMPT), max_new_tokens=40, stop=("Question",), turn_stop=False)
    assert whole.choices[0].text == ref.text and "Question" not in ref.text
    assert whole.choices[0].finish_reason == ("stop" if ref.stop_reason == "stop" else "length")
    streamed = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=40, stop=["Question"], stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == ref.text


def test_chat_renders_guide_template_and_base_text(client, embedded_pair):
    messages = [{"role": "user", "content": "Name a colour of the sky."}]
    r = client.chat.completions.create(model="blendin", messages=messages, max_tokens=16)
    rendered = render_chat(embedded_pair.base.tokenizer, embedded_pair.guide.tokenizer, BlendConfig().prompt, messages)
    im_start = embedded_pair.guide.tokenizer.tok.convert_tokens_to_ids("<|im_start|>")
    assert im_start in rendered.guide_ids  # the guide reads its chat template
    assert embedded_pair.base.tokenizer.decode(list(rendered.base_ids)).endswith("Question: Name a colour of the sky.\nAnswer:\n")
    ref = reference(embedded_pair, rendered, max_new_tokens=16)
    assert r.choices[0].message.content == ref.text
    assert r.choices[0].message.role == "assistant"
    assert r.model_extra["blendin"]["interventions"] == ref.interventions


def test_streamed_chat_with_usage(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat.completions.create(model="blendin", messages=messages, max_tokens=16)
    chunks = list(client.chat.completions.create(model="blendin", messages=messages, max_tokens=16, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].model_extra["blendin"]["interventions"] == whole.model_extra["blendin"]["interventions"]


def test_blendin_extension_picks_method(client):
    base = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=12, extra_body={"blendin": {"method": "base"}})
    guide = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=12, extra_body={"blendin": {"method": "guide"}})
    fixed = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=12,
                                      extra_body={"blendin": {"method": "blendin", "gamma": 1.0, "alpha": 0.5}})
    assert base.model_extra["blendin"]["interventions"] == 0
    assert guide.model_extra["blendin"]["intervention_rate"] == 1.0
    assert fixed.model_extra["blendin"]["gamma"] == 1.0 and fixed.model_extra["blendin"]["mean_alpha"] == 0.5


def test_logprobs_and_seeded_sampling(client):
    r = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=10, logprobs=3)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(x <= 0 for x in lp.token_logprobs) and all(1 <= len(t) <= 3 for t in lp.top_logprobs)
    chat = client.chat.completions.create(model="blendin", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                          logprobs=True, top_logprobs=2)
    assert len(chat.choices[0].logprobs.content) == chat.usage.completion_tokens
    a = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=12, temperature=1.0, seed=7, n=2)
    b = client.completions.create(model="blendin", prompt=PROMPT, max_tokens=12, temperature=1.0, seed=7, n=2)
    assert [c.text for c in a.choices] == [c.text for c in b.choices] and len(a.choices) == 2


BAD = [
    ("/completions", "{not json", 400, None),
    ("/completions", "[1, 2]", 400, None),
    ("/completions", {"model": "blendin"}, 400, "prompt"),
    ("/completions", {"model": "blendin", "prompt": "hi", "temperature": 5}, 400, "temperature"),
    ("/completions", {"model": "blendin", "prompt": "hi", "max_tokens": "many"}, 400, "max_tokens"),
    ("/completions", {"model": "blendin", "prompt": "hi", "max_tokens": 100000}, 400, "max_tokens"),
    ("/completions", {"model": "blendin", "prompt": "hi " * 1500}, 400, "prompt"),
    ("/completions", {"model": "blendin", "prompt": [10**9]}, 400, "prompt"),
    ("/completions", {"model": "blendin", "prompt": ""}, 400, "prompt"),
    ("/completions", {"model": "blendin", "prompt": "hi", "blendin": {"method": "blendn"}}, 400, "blendin.method"),
    ("/completions", {"model": "blendin", "prompt": "hi", "blendin": {"alpha": 3}}, 400, "blendin.alpha"),
    ("/completions", {"model": "gpt-4", "prompt": "hi"}, 404, "model"),
    ("/chat/completions", {"model": "blendin", "messages": []}, 400, "messages"),
    ("/chat/completions", {"model": "blendin", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
    ("/chat/completions", {"model": "blendin", "messages": [{"role": "user", "content": "x"}], "n": 0}, 400, "n"),
    ("/nowhere", {"model": "blendin"}, 404, None),
]


@pytest.mark.parametrize("path,body,status,param", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_requests_get_openai_errors_and_the_server_goes_on(server, path, body, status, param):
    url, _ = server
    r = post(url, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    if param:
        assert err["param"] == param and param.split(".")[0] in err["message"] + param
    good = post(url, "/completions", {"model": "blendin", "prompt": "Hello", "max_tokens": 2})
    assert good.status_code == 200 and good.json()["choices"][0]["text"] is not None


def test_auth_size_and_health(server):
    url, _ = server
    ok = {"model": "blendin", "prompt": "Hello", "max_tokens": 2}
    assert post(url, "/completions", ok, key=None).status_code == 401
    assert post(url, "/completions", ok, key="wrong").json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/models").status_code == 401
    big = post(url, "/completions", {"model": "blendin", "prompt": "x" * 40_000})
    assert big.status_code == 413 and "--max-request-bytes" in big.json()["error"]["message"]
    assert httpx.get(url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    assert post(url, "/completions", ok).status_code == 200


def test_stream_ends_with_done_and_disconnect_frees_the_row(server):
    url, engine = server
    body = {"model": "blendin", "prompt": PROMPT, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", url + "/completions", json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    done_before = engine.rows_done
    body["max_tokens"] = 64
    with httpx.stream("POST", url + "/completions", json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as r:
        next(line for line in r.iter_lines() if line)  # the first token arrived: the row is decoding
    deadline = time.time() + 30
    while engine.running and time.time() < deadline:
        time.sleep(0.1)
    assert engine.running == 0 and engine.rows_done == done_before  # dropped, not finished


def test_unstreamed_request_whose_client_gives_up_frees_the_row(server):
    url, engine = server
    done_before = engine.rows_done
    with pytest.raises(httpx.ReadTimeout):
        post(url, "/completions", {"model": "blendin", "prompt": PROMPT, "max_tokens": 64}, timeout=1.5)
    deadline = time.time() + 30
    while engine.running and time.time() < deadline:
        time.sleep(0.1)
    assert engine.running == 0 and engine.rows_done == done_before


def test_full_queue_answers_429(embedded_pair):
    app = build(embedded_pair, BlendConfig(), ServeSettings(batch_size=1, max_queue=2))
    with ServerThread(app) as url:
        body = {"model": "blendin", "prompt": PROMPT, "max_tokens": 64, "n": 2, "stream": True}
        with httpx.stream("POST", url + "/completions", json=body, timeout=60) as r:
            next(line for line in r.iter_lines() if line)  # row 0 decodes, row 1 waits
            full = httpx.post(url + "/completions", json={**body, "stream": False}, timeout=60)
            assert full.status_code == 429 and full.json()["error"]["type"] == "rate_limit_error"
        assert httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Hi", "max_tokens": 2}, timeout=60).status_code == 200


def test_64_concurrent_requests_all_answered_correctly(server, embedded_pair):
    url, engine = server
    prompts = [f"Question: What is {a} + {b}?\nAnswer:" for a, b in [(1, 2), (3, 4), (10, 20), (7, 8)]]
    expected = {p: reference(embedded_pair, raw(embedded_pair, p), max_new_tokens=8, turn_stop=False).text for p in prompts}

    def one(i):
        p = prompts[i % len(prompts)]
        r = post(url, "/completions", {"model": "blendin", "prompt": p, "max_tokens": 8})
        return p, r.status_code, r.json()

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(64)))
    assert [status for _, status, _ in answers] == [200] * 64
    assert all(body["choices"][0]["text"] == expected[p] for p, _, body in answers)
    assert engine.running == 0 and engine.waiting == 0


def test_blendin_serve_command():
    import subprocess
    import sys
    from pathlib import Path

    from blendin.testing import free_port, wait_until_up

    blendin = str(Path(sys.executable).with_name("blendin"))
    bad = subprocess.run([blendin, "serve", "--batch-size", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--batch-size must be a whole number >= 1, got 0" in bad.stderr
    port = free_port()
    proc = subprocess.Popen([blendin, "serve", "--port", str(port), "--api-key", "k1", "--max-tokens-cap", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/health", proc, 180, "blendin serve")
        ok = {"model": "blendin", "prompt": "Hello", "max_tokens": 4}
        assert post(url + "/v1", "/completions", ok, key="k1").status_code == 200
        assert post(url + "/v1", "/completions", ok, key=None).status_code == 401
        assert post(url + "/v1", "/completions", {**ok, "max_tokens": 9}, key="k1").json()["error"]["param"] == "max_tokens"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) in (0, -15)  # uvicorn shuts down, then re-raises SIGTERM
    log = proc.stderr.read()  # the start-up line and one line per request, through logging
    assert f"127.0.0.1:{port}/v1" in log
    assert "POST /v1/completions 200" in log and "POST /v1/completions 401" in log


def test_blendin_server_as_the_justeval_judge_with_traces(server, tmp_path):
    """A real OpenAI-compatible endpoint as the judge (this server: a 270M model mostly fails to give
    scores, which must count as unparseable), and one trace page per sample."""
    import subprocess
    import sys
    from pathlib import Path

    url, _ = server
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "justeval" / "just_eval_instruct.jsonl"
    cmd = [sys.executable, "-m", "blendin", "eval", "--task", "justeval", "--data", str(data), "--limit", "2", "--method", "base",
           "--max-new-tokens", "8", "--judge-url", url, "--judge-model", "blendin", "--judge-api-key", KEY, "--judge-max-tokens", "48",
           "--out", str(tmp_path / "run"), "--trace-html", str(tmp_path / "traces")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["judge"] == "blendin" for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())[0]
    assert summary["unparseable"] + sum(r["score"] is not None for r in rows) == 2
    pages = sorted((tmp_path / "traces").glob("*/*.html"))
    assert [pg.name for pg in pages] == ["0.html", "1.html"] and "justeval_base" in pages[0].parent.name
    bad = subprocess.run(cmd[:5] + ["gsm8k"] + cmd[6:], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "judge tasks (justeval)" in bad.stderr
