"""``blendin serve`` when a model stops answering, on scripted models (fast; the same with real
servers killed and paused is in test_faults_real.py): a guide down degrades the answer, which says
so, and /health says which; the base down is a 503 with Retry-After, never a 500, and the server
turns healthy again when the base answers."""

import httpx2 as httpx
from scripted import after_prompt, base_tokenizer, config, guide_tokenizer
from test_server_scripted import post, serving

from blendin.backends.fake import ScriptedModel
from blendin.errors import ModelUnavailable
from blendin.pair import Pair


class Switch:
    """A model's server, up or down at the test's word."""

    def __init__(self):
        self.up = True

    def __call__(self, script):
        def answer(text):
            if not self.up:
                raise ModelUnavailable("cannot reach http://127.0.0.1:9/v1 (ConnectError: connection refused) after 4 tries")
            return script(text)
        return answer


def base_script(text):
    return {"▁yes": 0.35, "▁no": 0.33, "<eos>": 0.32} if len(after_prompt(text).split()) < 3 else {"<eos>": 1.0}


def pair(base_switch, guide_switch):
    base = ScriptedModel(base_tokenizer(), base_switch(base_script), name="fake-base")
    guide = ScriptedModel(guide_tokenizer(), guide_switch(lambda t: {"Ġno": 0.9, "<|end|>": 0.1}), name="fake-guide")
    return Pair(base=base, guide=guide)


def health(url):
    return httpx.get(url.removesuffix("/v1") + "/health", timeout=30)


def complete(url):
    return post(url, "/completions", {"model": "blendin", "prompt": "Q\n", "max_tokens": 8})


def test_a_guide_down_degrades_the_answer_and_health_says_which():
    base, guide = Switch(), Switch()
    with serving(pair(base, guide), config(method="blendin")) as (url, _):
        assert complete(url).status_code == 200 and health(url).json()["status"] == "ok"
        guide.up = False
        r = complete(url)
        assert r.status_code == 200
        down = r.json()["blendin"]["guides_down"]
        assert down[0]["guide"] == "smollm2-135m-instruct" and down[0]["failed_at"] == 0 and "connection refused" in down[0]["error"]
        h = health(url)
        assert h.status_code == 200 and h.json()["status"] == "degraded" and "fake-guide" in h.json()["down"]
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
        assert 'blendin_guide_failures_total{guide="smollm2-135m-instruct"} 1.0' in metrics
        guide.up = True
        assert complete(url).status_code == 200 and health(url).json()["status"] == "ok"  # consulted again, and answering


def test_the_base_down_is_a_503_with_retry_after_and_health_recovers():
    base, guide = Switch(), Switch()
    with serving(pair(base, guide), config(method="blendin")) as (url, _):
        base.up = False
        r = complete(url)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["error"]["code"] == "model_unavailable" and "fake-base" in r.json()["error"]["message"]
        h = health(url)
        assert h.status_code == 503 and h.json()["status"] == "down" and "fake-base" in h.json()["down"]
        base.up = True
        assert complete(url).status_code == 200 and health(url).json()["status"] == "ok"


def test_a_draining_server_refuses_new_requests_with_503_and_health_says_draining():
    from blendin.server import ServerThread, build
    from blendin.server.settings import ServeSettings

    app = build(pair(Switch(), Switch()), config(method="blendin"), ServeSettings())
    with ServerThread(app) as url:
        assert complete(url).status_code == 200
        app.state.draining = True  # what SIGTERM sets first (server.DrainingServer.handle_exit)
        r = complete(url)
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
        h = health(url)
        assert h.status_code == 503 and h.json()["status"] == "draining"
