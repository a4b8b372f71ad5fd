"""vLLM's POST /tokenize and /detokenize on scripted models: the count a client gets is the count
the server's ``usage`` then reports for the same prompt or chat, ids round-trip, and bad input is a
400 naming the field (or a 404 naming the model)."""

import httpx2 as httpx
from scripted import base_tokenizer, config, scripted_pair
from test_server_scripted import serving

BASE = {"": {"▁yes": 1.0}, " yes": {"<eos>": 1.0}}
GUIDE = {"": {"Ġyes": 1.0}, " yes": {"<|end|>": 1.0}}


def post(url, path, body):
    return httpx.post(url.removesuffix("/v1") + path, json=body, timeout=30)


def test_counts_match_what_usage_reports():
    with serving(scripted_pair(BASE, GUIDE)) as (url, _):
        r = post(url, "/tokenize", {"model": "blendin", "prompt": "Q\n"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tokens"] == base_tokenizer().encode_prompt("Q\n") and body["count"] == len(body["tokens"])
        done = httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n", "max_tokens": 2}, timeout=30).json()
        assert done["usage"]["prompt_tokens"] == body["count"]
        chat = [{"role": "user", "content": "Q"}]
        counted = post(url, "/tokenize", {"model": "blendin", "messages": chat}).json()
        replied = httpx.post(url + "/chat/completions", json={"model": "blendin", "messages": chat, "max_tokens": 2}, timeout=30).json()
        assert counted["count"] == replied["usage"]["prompt_tokens"] > 1


def test_detokenize_round_trips_and_bad_input_names_the_field():
    with serving(scripted_pair(BASE, GUIDE)) as (url, _):
        ids = post(url, "/tokenize", {"prompt": "yes no\n", "add_special_tokens": False}).json()["tokens"]
        assert post(url, "/detokenize", {"model": "blendin", "tokens": ids}).json() == {"prompt": "yes no\n"}
        r = post(url, "/detokenize", {"model": "blendin", "tokens": [10**6]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "tokens" and "outside the vocabulary" in r.json()["error"]["message"]
        r = post(url, "/tokenize", {"model": "blendin", "prompt": "Q", "messages": [{"role": "user", "content": "Q"}]})
        assert r.status_code == 400 and "either prompt" in r.json()["error"]["message"]
        r = post(url, "/tokenize", {"model": "gpt-4", "prompt": "Q"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_tokenizer_info_names_the_end_token_that_tokenize_maps_to_its_id():
    """lm-evaluation-harness's remote tokenizer: GET /tokenizer_info at the root, then the end token's
    text through /tokenize (add_special_tokens false) must give the end token's id."""
    with serving(scripted_pair(BASE, GUIDE)) as (url, _):
        info = httpx.get(url.removesuffix("/v1") + "/tokenizer_info", timeout=30).json()
        assert info["eos_token"] == "<eos>" and "chat_template" in info and "bos_token" in info
        ids = post(url, "/tokenize", {"prompt": info["eos_token"], "add_special_tokens": False}).json()["tokens"]
        assert ids == [base_tokenizer().eos_id]
