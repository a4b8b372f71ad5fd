"""GET /metrics and /health on scripted models: a scrape after a few requests shows them by route and status,
the tokens and interventions the responses reported, one intervention rate and one time to first
token per answered request, and an idle queue (parsed with prometheus-client's own parser)."""

import httpx2 as httpx
from prometheus_client.parser import text_string_to_metric_families
from scripted import scripted_pair
from test_server_scripted import NUDGE_BASE, NUDGE_GUIDE, SWITCH_BASE, SWITCH_GUIDE, post, serving


def scrape(url) -> dict:
    r = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(r.text) for s in f.samples}


def test_a_scrape_counts_the_requests_and_what_they_generated():
    base, guide = {**SWITCH_BASE, **NUDGE_BASE}, {**SWITCH_GUIDE, **NUDGE_GUIDE}
    with serving(scripted_pair(base, guide)) as (url, _):
        done = post(url, "/completions", {"model": "blendin", "prompt": "Q\n", "blendin": {"method": "switch"}}).json()
        chat = post(url, "/chat/completions", {"model": "blendin", "messages": [{"role": "user", "content": "Q"}], "stream": True,
                                               "stream_options": {"include_usage": True}, "blendin": {"method": "nudging"}})
        assert chat.status_code == 200
        assert post(url, "/completions", {"model": "blendin", "prompt": "Q\n", "max_tokens": 0}).status_code == 400
        assert httpx.get(url.removesuffix("/v1") + "/nowhere", timeout=30).status_code == 404
        usage = [line for line in chat.text.splitlines() if '"usage"' in line]
        streamed = httpx.Response(200, content=usage[0].removeprefix("data: ")).json()
        m = scrape(url)
    assert m[("blendin_requests_total", (("route", "/v1/completions"), ("status", "200")))] == 1
    assert m[("blendin_requests_total", (("route", "/v1/chat/completions"), ("status", "200")))] == 1
    assert m[("blendin_requests_total", (("route", "/v1/completions"), ("status", "400")))] == 1
    assert m[("blendin_requests_total", (("route", "other"), ("status", "404")))] == 1
    assert m[("blendin_generated_tokens_total", ())] == done["usage"]["completion_tokens"] + streamed["usage"]["completion_tokens"]
    interventions = done["blendin"]["interventions"] + streamed["blendin"]["interventions"]
    assert interventions > 0 and m[("blendin_interventions_total", ())] == interventions
    assert m[("blendin_intervention_rate_count", ())] == 2 and m[("blendin_time_to_first_token_seconds_count", ())] == 2
    assert m[("blendin_request_latency_seconds_count", (("route", "/v1/completions"),))] == 2
    assert m[("blendin_queue_depth", ())] == 0 and m[("blendin_running_rows", ())] == 0 and m[("blendin_batch_occupancy", ())] == 0


def test_health_says_the_models_are_loaded_and_which():
    with serving(scripted_pair(SWITCH_BASE, SWITCH_GUIDE)) as (url, _):
        health = httpx.get(url.removesuffix("/v1") + "/health", timeout=30).json()
    assert health["loaded"] is True and health["models"] == {"base": "fake-base", "guides": ["fake-guide"]}
