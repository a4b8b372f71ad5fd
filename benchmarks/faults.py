"""Faults survived under load (issue 37): a guide's and a base's server killed, paused and restarted.

    python benchmarks/faults.py                 # about 5 minutes here; --seconds 10 per phase by default

Three real processes: the base (Gemma-3-270m) and the guide (SmolLM2-135M-Instruct) each served by a
``blendin serve --method base``, and the blending server in front of them (``--base-url``,
``--guide MODEL@URL``, ``--guide-timeout 2 --guide-retries 0``). 16 clients send short BlendIn
completions back to back while the phases below run; per phase, the answers by kind and what
/health said at its end. Counts, not timings: the machine's other work does not change them.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

BLENDIN = str(Path(sys.executable).with_name("blendin"))


def start(port: int, *args) -> subprocess.Popen:
    from blendin.testing import wait_until_up

    proc = subprocess.Popen([BLENDIN, "serve", "--port", str(port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_up(f"http://127.0.0.1:{port}/health", proc, 300, "blendin serve")
    return proc


class Load:
    def __init__(self, url: str, clients: int):
        self.url, self.answers, self.stop = url, [], threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def client(self) -> None:
        with httpx.Client(timeout=120) as http:
            while not self.stop.is_set():
                try:
                    r = http.post(self.url + "/v1/completions", json={"model": "blendin", "prompt": "Question: What is 2+3?\nAnswer:", "max_tokens": 6})
                    kind = "200 degraded" if r.status_code == 200 and "guides_down" in r.json()["blendin"] else str(r.status_code)
                except httpx.HTTPError:
                    kind = "no answer"
                self.answers.append((time.time(), kind))

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=180)


def main() -> int:
    from blendin.testing import free_port

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="each phase's length")
    ap.add_argument("--clients", type=int, default=16)
    a = ap.parse_args()
    bport, gport, mport = free_port(), free_port(), free_port()
    base_args = ("--base", "gemma-3-270m", "--method", "base", "--served-model-name", "gemma-3-270m")
    guide_args = ("--base", "smollm2-135m-instruct", "--method", "base", "--served-model-name", "smollm2-135m-instruct")
    procs = {"base": start(bport, *base_args), "guide": start(gport, *guide_args)}
    main_ = start(mport, "--base", "gemma-3-270m", "--base-url", f"http://127.0.0.1:{bport}/v1", "--base-model", "gemma-3-270m",
                  "--guide", f"smollm2-135m-instruct@http://127.0.0.1:{gport}/v1", "--guide-timeout", "2", "--guide-retries", "0")
    url = f"http://127.0.0.1:{mport}"
    load = Load(url, a.clients)
    rows = []

    def phase(name: str, act=None) -> None:
        t0 = time.time()
        if act is not None:
            act()
        time.sleep(a.seconds)
        kinds = [k for t, k in load.answers if t >= t0]
        health = httpx.get(url + "/health", timeout=30)
        rows.append((name, kinds, f"{health.status_code} {health.json()['status']}"))

    def restart(role: str, port: int, args) -> None:
        procs[role] = start(port, *args)

    try:
        phase("steady")
        phase("guide killed", lambda: (procs["guide"].kill(), procs["guide"].wait()))
        phase("guide restarted", lambda: restart("guide", gport, guide_args))
        phase("guide paused (SIGSTOP)", lambda: procs["guide"].send_signal(signal.SIGSTOP))
        phase("guide resumed", lambda: procs["guide"].send_signal(signal.SIGCONT))
        phase("base killed", lambda: (procs["base"].kill(), procs["base"].wait()))
        phase("base restarted", lambda: restart("base", bport, base_args))
    finally:
        load.end()
        for p in (*procs.values(), main_):
            p.send_signal(signal.SIGCONT)
            p.terminate()
            p.wait(timeout=60)
    kinds = ("200", "200 degraded", "503", "500", "no answer")
    print(f"\n{a.clients} clients, {a.seconds:.0f} s a phase; the blending server's answers by kind, and its /health at the phase's end\n")
    print("| phase | answers | " + " | ".join(kinds) + " | /health |")
    print("|---|---|" + "---|" * len(kinds) + "---|")
    for name, got, health in rows:
        print(f"| {name} | {len(got)} | " + " | ".join(str(got.count(k)) for k in kinds) + f" | {health} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
