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
