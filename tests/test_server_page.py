"""The page at / and what it asks the server for (scripted models, fast): a static page with nothing
fetched from elsewhere; streams whose chunks carry each token's record (``blendin.steps``); and the
stop of an answer that repeats itself, asked per request (``blendin.repeat_stop``)."""

import json
import re

import httpx2 as httpx
from scripted import base_tokenizer, config, guide_tokenizer, scripted_pair
from test_server_scripted import SWITCH_BASE, SWITCH_GUIDE, events, looping, serving

from blendin.backends.fake import ScriptedModel
from blendin.pair import Pair


def test_the_page_is_served_at_the_root_whole_and_offline():
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE)) as (url, _):
        r = httpx.get(url.removesuffix("/v1") + "/", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<form id="ask">' in page and "/v1/chat/completions" in page and "steps: true" in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not fetch anything from another host (offline machines)"


def test_a_stream_with_steps_carries_every_token_s_record():
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE)) as (url, _):
        r = httpx.post(url + "/completions", timeout=30, json={"model": "blendin", "prompt": "Q\n", "stream": True,
                                                               "blendin": {"method": "blendin", "steps": True}})
    assert r.status_code == 200
    chunks = events(r)
    records = [c["choices"][0]["blendin"]["step"] for c in chunks if "step" in (c["choices"][0].get("blendin") or {})]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    done = chunks[-1]["choices"][0]["blendin"]
    assert "".join(s["token"] for s in records) == text and len(records) == done["tokens"]
    blended = [s for s in records if s["source"] == "blend"]
    assert len(blended) == done["interventions"] == 1  # at ' maybe' the base is unsure (0.35 < 0.4)
    step = blended[0]
    assert abs(step["base_top_prob"] - 0.35) < 1e-9 and 0 < step["alpha"] <= 1 and abs(step["guide_top_prob"] - 0.7) < 1e-9
    assert {"base", "guide", "blend"} <= set(step["alternatives"])  # both models' top tokens, for the hover card
    assert records[0]["source"] == "base" and records[0]["alpha"] is None


def test_a_stream_without_steps_is_unchanged():
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE)) as (url, _):
        r = httpx.post(url + "/completions", timeout=30, json={"model": "blendin", "prompt": "Q\n", "stream": True})
    assert all("step" not in (c["choices"][0].get("blendin") or {}) for c in events(r))


def test_repeat_stop_is_asked_per_request():
    pair = Pair(base=looping(base_tokenizer(), name="fake-base"), guide=ScriptedModel(guide_tokenizer(), lambda t: {"Ġno": 1.0}))
    with serving(pair, config(max_new_tokens=40)) as (url, _):
        body = {"model": "blendin", "messages": [{"role": "user", "content": "Q"}], "max_tokens": 40}
        on = httpx.post(url + "/chat/completions", timeout=30, json={**body, "blendin": {"repeat_stop": True}}).json()
        off = httpx.post(url + "/chat/completions", timeout=30, json=body).json()
    assert on["choices"][0]["finish_reason"] == "stop" and on["blendin"]["stop_reason"] == "repeat" and on["blendin"]["tokens"] == 8
    assert off["choices"][0]["finish_reason"] == "length" and off["blendin"]["tokens"] == 40  # the server's default: off


def test_a_bad_value_from_the_page_is_an_openai_error_naming_the_field():
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE)) as (url, _):
        r = httpx.post(url + "/chat/completions", timeout=30, json={"model": "blendin", "stream": True,
                       "messages": [{"role": "user", "content": "Q"}], "blendin": {"gamma": 7, "steps": True}})
    assert r.status_code == 400
    error = json.loads(r.text)["error"]
    assert "gamma" in error["message"] and error["param"].startswith("blendin")
