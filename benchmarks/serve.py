"""Server throughput and latency against concurrency: `blendin serve` on the embedded pair.

    python benchmarks/serve.py                      # starts `blendin serve` on a free port (about 3 minutes here)
    python benchmarks/serve.py --quick              # fewer, shorter requests (about 1 minute)
    python benchmarks/serve.py --url http://127.0.0.1:8000/v1 --api-key KEY   # a server already running
    python benchmarks/serve.py --json out.json

At each concurrency level (1, 4, 16, 64) that many clients send short completions (BlendIn, greedy,
--max-tokens new tokens, prompts written for this benchmark) back to back until the level's requests
are done. ``--load lm-eval``: instead, what lm-evaluation-harness sends for a multiple-choice item
(issue 36): four prompts (a question with each choice) in one request, echo + logprobs 1, max_tokens 1. The server runs in its own process, so the clients and the engine do not share a Python
interpreter (they do share this machine's cores). Fields per level: rps (requests per second),
p50_ms and p99_ms (request latency), errors (non-200 answers or failed connections), tokens_per_s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

PROMPTS = [
    "Question: What is 15 + 27?\nAnswer:",
    "Question: Name the largest planet in the solar system.\nAnswer:",
    "Question: How many legs does a spider have?\nAnswer:",
    "Question: What is the boiling point of water in Celsius?\nAnswer:",
    "Question: Which is heavier, a kilogram of iron or a kilogram of feathers?\nAnswer:",
    "Question: What colour do you get by mixing blue and yellow?\nAnswer:",
    "Question: How many minutes are in two hours?\nAnswer:",
    "Question: What is the capital of Japan?\nAnswer:",
]


def start_server(batch_size: int) -> tuple[subprocess.Popen, str]:
    from blendin.testing import free_port, wait_until_up

    port = free_port()
    blendin = Path(sys.executable).with_name("blendin")
    proc = subprocess.Popen([str(blendin), "serve", "--port", str(port), "--batch-size", str(batch_size)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health", proc, 300, "blendin serve")
    return proc, url + "/v1"


CHOICES = [" 42", " Jupiter", " eight", " 100 degrees"]


def body_for(i: int, model: str, max_tokens: int, load: str) -> dict:
    if load == "lm-eval":  # one multiple-choice item: its question with each choice, scored
        question = PROMPTS[i % len(PROMPTS)]
        return {"model": model, "prompt": [question + c for c in CHOICES], "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0}
    return {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0}


def level(url: str, key: str | None, model: str, concurrency: int, total: int, max_tokens: int, load: str = "generate") -> dict:
    """``concurrency`` clients share ``total`` requests; returns the level's row."""
    latencies: list[float] = []
    errors = tokens = 0
    lock = threading.Lock()
    counter = iter(range(total))
    headers = {"authorization": f"Bearer {key}"} if key else {}

    def client():
        nonlocal errors, tokens
        with httpx.Client(timeout=600, headers=headers) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = body_for(i, model, max_tokens, load)
                t0 = time.perf_counter()
                try:
                    r = http.post(url + "/completions", json=body)
                    ok = r.status_code == 200
                    used = r.json()["usage"]["completion_tokens"] if ok else 0
                except httpx.HTTPError:
                    ok, used = False, 0
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    errors += not ok
                    tokens += used

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {"concurrency": concurrency, "requests": total, "rps": total / wall,
            "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "errors": errors, "tokens_per_s": tokens / wall, "seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server's /v1 address (default: start blendin serve here)")
    ap.add_argument("--api-key", default=os.environ.get("BLENDIN_SERVE_API_KEY"))
    ap.add_argument("--model", default="blendin")
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16, help="the started server's --batch-size")
    ap.add_argument("--quick", action="store_true", help="4 new tokens, fewer requests")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--load", choices=("generate", "lm-eval"), default="generate",
                    help="lm-eval: each request scores a 4-choice item (echo + logprobs), as lm-evaluation-harness sends it")
    a = ap.parse_args()
    max_tokens = 4 if a.quick else a.max_tokens
    proc, url = (None, a.url) if a.url else start_server(a.batch_size)
    try:
        level(url, a.api_key, a.model, 1, 2, max_tokens, a.load)  # warm-up
        rows = []
        for c in [int(x) for x in a.levels.split(",")]:
            total = max(c, 4) if a.quick else max(2 * c, 8)
            rows.append(level(url, a.api_key, a.model, c, total, max_tokens, a.load))
            r = rows[-1]
            print(f"concurrency {c}: {r['rps']:.2f} req/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, errors {r['errors']}", file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    what = "4-choice items scored (echo + logprobs, max_tokens 1)" if a.load == "lm-eval" else f"{max_tokens} new tokens per request"
    print(f"\nblendin serve, BlendIn on the embedded pair, greedy, {what}, server batch {a.batch_size}; {machine}\n")
    print("| concurrency | requests | rps | p50_ms | p99_ms | errors | tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['rps']:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | {r['tokens_per_s']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"levels": rows, "max_tokens": max_tokens, "batch_size": a.batch_size, "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
