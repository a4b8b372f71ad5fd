"""Remote base: chunked speculation against the token-by-token protocol, on the same server.

    python benchmarks/remote.py                      # a loopback vLLM-like server serving the embedded base
    python benchmarks/remote.py --base-url http://127.0.0.1:8080 --base-model gemma   # any real server
    python benchmarks/remote.py --quick --json out.json

BlendIn, greedy, 64 new tokens (16 with --quick), the prompts of benchmarks/decode.py, the embedded
base served remotely and the embedded guide local. The two protocols run interleaved on the same
server. Fields: requests_per_token_chunked, requests_per_token_per_token, seconds_chunked,
seconds_per_token, identical_outputs. Target: requests_per_token_chunked <= 0.35.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from decode import PROMPTS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--base-url", help="a running server (default: start the loopback test server)")
    ap.add_argument("--base-model", default="gemma-3-270m")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--json")
    a = ap.parse_args()
    from blendin import BlendConfig
    from blendin.backends.remote import RemoteModel
    from blendin.decoding import generate
    from blendin.models import load_model
    from blendin.pair import Pair
    from blendin.testing import CompletionServer

    tokens = 16 if a.quick else 64
    prompts = PROMPTS[:2] if a.quick else PROMPTS[:6]
    guide = load_model("smollm2-135m-instruct")
    local_base = load_model("gemma-3-270m")
    server = contextlib.nullcontext() if a.base_url else CompletionServer(local_base)
    with server as s:
        url = a.base_url or s.url
        pairs = {
            "chunked": Pair(base=RemoteModel(url, a.base_model, local_base.tokenizer, chunk=a.chunk), guide=guide),
            "per_token": Pair(base=RemoteModel(url, a.base_model, local_base.tokenizer, chunk=1), guide=guide),
        }
        config = BlendConfig(method="blendin", max_new_tokens=tokens)
        stats = {k: [0, 0, 0.0] for k in pairs}  # requests, tokens, seconds
        texts = {k: [] for k in pairs}
        for prompt in prompts:
            for name, pair in pairs.items():
                start = time.perf_counter()
                r = generate(pair, prompt, config)
                st = stats[name]
                st[0], st[1], st[2] = st[0] + r.requests, st[1] + r.tokens, st[2] + time.perf_counter() - start
                texts[name].append(r.text)
                print(f"  {name:9s}: {r.tokens} tokens, {r.requests} requests, {r.interventions} interventions", file=sys.stderr)
    out = {
        "requests_per_token_chunked": stats["chunked"][0] / stats["chunked"][1],
        "requests_per_token_per_token": stats["per_token"][0] / stats["per_token"][1],
        "seconds_chunked": stats["chunked"][2],
        "seconds_per_token": stats["per_token"][2],
        "identical_outputs": texts["chunked"] == texts["per_token"],
    }
    where = a.base_url or "loopback test server (blendin.testing, token-id prompts)"
    print(f"remote benchmark{' (quick)' if a.quick else ''}: {tokens} new tokens, {len(prompts)} prompts, chunk {a.chunk}, server: {where}")
    print("| field | value | target |")
    print("|---|---|---|")
    for k, v in out.items():
        target = "<= 0.35" if k == "requests_per_token_chunked" else ""
        print(f"| {k} | {v if isinstance(v, bool) else f'{v:.3f}'} | {target} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
