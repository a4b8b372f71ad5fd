"""Cached load: a fresh process loads the converted embedded pair and generates one token.

    python benchmarks/load.py            # 3 runs, prints a table
    python benchmarks/load.py --runs 5 --json load.json
    python benchmarks/load.py --dtype bfloat16     # the same float32 cache, cast as it loads

Each run is a new Python process (so imports and file reads are paid in full, as a user would pay
them); the models must already be converted (``blendin prepare``). Target: under 15 s in total.
The child reports the phases: importing torch + transformers, loading each model from the
safetensors cache, building the vocabulary bridge, and deciding the first token.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
from blendin import BlendConfig
from blendin.models import load_model
from blendin.pair import Pair
from blendin.decoding import generate
t1 = time.perf_counter()
config = BlendConfig(method="blendin", max_new_tokens=1, device="cpu", dtype=sys.argv[1])
base = load_model(config.base, placement=config.placement("base"))
t2 = time.perf_counter()
guide = load_model(config.guide, placement=config.placement("guide"))
t3 = time.perf_counter()
pair = Pair(base=base, guide=guide)
t4 = time.perf_counter()
r = generate(pair, "What is 12 * 7?", config)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load_base": t2 - t1, "load_guide": t3 - t2, "bridge": t4 - t3,
                  "first_token": t5 - t4, "tokens": r.tokens}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (on the CPU)")
    a = ap.parse_args()
    subprocess.run([sys.executable, "-m", "blendin.cli", "prepare"], check=True, capture_output=True)
    rows = []
    for _ in range(a.runs):
        start = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", CHILD, a.dtype], capture_output=True, text=True, check=True)
        total = time.perf_counter() - start
        rows.append({**json.loads(p.stdout.strip().splitlines()[-1]), "total": total})
    cols = ["imports", "load_base", "load_guide", "bridge", "first_token", "total"]
    print(f"cached load + 1 token, fresh process, {a.dtype} ({platform.machine()}, {_cores()} cores, torch {_torch()})")
    print("| run | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for i, r in enumerate(rows, 1):
        print(f"| {i} | " + " | ".join(f"{r[c]:.2f} s" for c in cols) + " |")
    med = {c: statistics.median(r[c] for r in rows) for c in cols}
    print("| median | " + " | ".join(f"{med[c]:.2f} s" for c in cols) + " |")
    print(f"target: total < 15 s -> {'met' if med['total'] < 15 else 'NOT met'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": rows, "median": med}, f, indent=2)
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _torch() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())
