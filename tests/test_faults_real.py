"""Faults with real processes (slow): ``blendin serve`` on the embedded pair, stopped with SIGTERM while
a request is in flight (it finishes within --drain-seconds, or is cut at their end, and the server
exits 0), and a guide served by another ``blendin serve`` that is killed, paused and restarted under
a concurrent load (every request answers 200 with the degradation recorded, never a 500)."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from blendin.testing import free_port, wait_until_up

pytestmark = pytest.mark.slow
BLENDIN = str(Path(sys.executable).with_name("blendin"))


def start(*args, port=None):
    port = port or free_port()
    proc = subprocess.Popen([BLENDIN, "serve", "--port", str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health", proc, 300, "blendin serve")
    return proc, url


def ask(url, out, max_tokens, **fields):
    try:
        r = httpx.post(url + "/v1/completions", timeout=300,
                       json={"model": "blendin", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": max_tokens, **fields})
        out.append(r)
    except httpx.HTTPError as exc:
        out.append(exc)


def in_flight(url, max_tokens):
    out = []
    t = threading.Thread(target=ask, args=(url, out, max_tokens))
    t.start()
    deadline = time.time() + 60
    while httpx.get(url + "/health", timeout=10).json()["running"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    return t, out


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0():
    proc, url = start("--drain-seconds", "60")
    t, out = in_flight(url, 24)
    proc.send_signal(signal.SIGTERM)
    t.join(timeout=120)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0 and "draining" in log
    assert isinstance(out[0], httpx.Response) and out[0].status_code == 200 and out[0].json()["usage"]["completion_tokens"] == 24


def test_past_the_drain_seconds_the_rows_are_cancelled_and_the_server_exits_0():
    proc, url = start("--drain-seconds", "1")
    t, out = in_flight(url, 1000)
    start_at = time.time()
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    t.join(timeout=60)
    assert proc.returncode == 0 and time.time() - start_at < 30, log
    assert not (isinstance(out[0], httpx.Response) and out[0].status_code == 200)  # cut, not answered whole


class Load:
    """``n`` clients sending short BlendIn completions back to back until stopped; every answer kept."""

    def __init__(self, url, n=16):
        self.url, self.answers, self.stop = url, [], threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def _client(self):
        with httpx.Client(timeout=120) as http:
            while not self.stop.is_set():
                try:
                    r = http.post(self.url + "/v1/completions", json={"model": "blendin", "prompt": "Question: What is 2+3?\nAnswer:",
                                                                      "max_tokens": 6})
                    self.answers.append((time.time(), r.status_code, r.json()))
                except httpx.HTTPError as exc:
                    self.answers.append((time.time(), None, str(exc)))

    def since(self, t):
        return [a for a in self.answers if a[0] >= t]

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=180)


def wait_for(what, timeout=90):
    deadline = time.time() + timeout
    while not what():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_a_guide_server_killed_paused_and_restarted_under_load_never_fails_a_request():
    gport = free_port()
    guide_args = ("--base", "smollm2-135m-instruct", "--method", "base", "--served-model-name", "smollm2-135m-instruct")
    guide, gurl = start(*guide_args, port=gport)
    main_, url = start("--guide", f"smollm2-135m-instruct@{gurl}/v1", "--guide-timeout", "2", "--guide-retries", "0")
    load = Load(url)
    try:
        health = lambda: httpx.get(url + "/health", timeout=30)  # noqa: E731
        wait_for(lambda: len(load.answers) >= 16)
        assert health().json()["status"] == "ok"
        t = time.time()
        guide.kill()  # the guide's server dies
        guide.wait()
        wait_for(lambda: any("guides_down" in a[2].get("blendin", {}) for a in load.since(t) if a[1] == 200))
        h = health()
        assert h.status_code == 200 and h.json()["status"] == "degraded" and "smollm2-135m-instruct" in h.json()["down"]
        guide, _ = start(*guide_args, port=gport)  # it comes back on the same address
        wait_for(lambda: health().json()["status"] == "ok")
        t = time.time()
        guide.send_signal(signal.SIGSTOP)  # paused: it accepts connections and never answers (timeouts)
        wait_for(lambda: any("guides_down" in a[2].get("blendin", {}) for a in load.since(t) if a[1] == 200))
        guide.send_signal(signal.SIGCONT)
        wait_for(lambda: health().json()["status"] == "ok")
        t = time.time()
        wait_for(lambda: any(a[1] == 200 and "guides_down" not in a[2]["blendin"] for a in load.since(t)))  # guided again
    finally:
        load.end()
        for p in (guide, main_):
            p.send_signal(signal.SIGCONT)
            p.terminate()
            p.wait(timeout=60)
    statuses = {a[1] for a in load.answers}
    assert statuses == {200}, [a for a in load.answers if a[1] != 200][:3]  # never a 500, never a lost request


def test_an_eval_whose_guide_server_dies_keeps_its_rows_and_redoes_only_the_failed_ones(tmp_path):
    import json

    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": f"#### {2 * i}", "final": str(2 * i)}) + "\n" for i in range(1, 7)))
    gport = free_port()
    guide_args = ("--base", "smollm2-135m-instruct", "--method", "base", "--served-model-name", "smollm2-135m-instruct")
    out = tmp_path / "run"

    def evaluate(limit):
        return subprocess.run([BLENDIN, "eval", "--task", "gsm8k", "--data", str(data), "--limit", str(limit), "--method", "blendin",
                               "--max-new-tokens", "12", "--guide", f"smollm2-135m-instruct@http://127.0.0.1:{gport}/v1",
                               "--guide-timeout", "2", "--guide-retries", "0", "--out", str(out)], capture_output=True, text=True, timeout=600)

    def rows():
        return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]

    guide, _ = start(*guide_args, port=gport)
    try:
        assert evaluate(3).returncode == 0
        first = {r["id"]: r["seconds"] for r in rows()}
        guide.kill()  # the guide's server dies between two runs of the same eval
        guide.wait()
        failed = evaluate(6)
        assert "a rerun decodes again those a model did not answer" in failed.stderr
        down = [r for r in rows() if r.get("error")]
        assert len(down) == 3 and all(r["unavailable"] and r["score"] is None for r in down)  # failed, not scored wrong
        guide, _ = start(*guide_args, port=gport)
        again = evaluate(6)
        assert again.returncode == 0 and "3 failed samples of an earlier run (a model did not answer) will be decoded again" in again.stderr
        done = rows()
        assert len(done) == 6 and not any(r.get("error") for r in done)
        assert {r["id"]: r["seconds"] for r in done if r["id"] in first} == first  # the rows done before were kept, not redone
    finally:
        guide.terminate()
        guide.wait(timeout=60)


def test_a_guide_on_llama_cpp_s_own_server_that_dies_degrades_the_answers():
    """The guide behind llama-cpp-python's server (as deployers run one), killed between requests:
    the next answers are 200, finished by the base alone, and say so; /health says degraded."""
    from blendin.models import EMBEDDED, cache_dir

    gport = free_port()
    gguf = EMBEDDED["smollm2-135m-instruct"].gguf(cache_dir())
    guide = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(gport),
                              "--logits_all", "true", "--n_ctx", "2048", "--model_alias", "smollm2-135m-instruct", "--n_threads", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    main_ = None
    try:
        wait_until_up(f"http://127.0.0.1:{gport}/v1/models", guide, 180, "llama-cpp-python's server")
        main_, url = start("--guide", f"smollm2-135m-instruct@http://127.0.0.1:{gport}/v1", "--guide-timeout", "5", "--guide-retries", "0")
        body = {"model": "blendin", "prompt": "Question: Name a colour and say why you like it.\nAnswer:", "max_tokens": 16}
        first = httpx.post(url + "/v1/completions", json=body, timeout=300).json()
        assert "guides_down" not in first["blendin"] and first["blendin"]["interventions"] > 0
        guide.kill()
        guide.wait()
        r = httpx.post(url + "/v1/completions", json=body, timeout=300)
        assert r.status_code == 200 and r.json()["blendin"]["guides_down"][0]["guide"].startswith("smollm2-135m-instruct")
        h = httpx.get(url + "/health", timeout=30).json()
        assert h["status"] == "degraded" and any(name.startswith("smollm2-135m-instruct") for name in h["down"])
    finally:
        guide.kill()
        if main_ is not None:
            main_.terminate()
            main_.wait(timeout=60)
