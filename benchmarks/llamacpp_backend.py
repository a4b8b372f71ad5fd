"""The llama.cpp backend against the transformers float32 path, on one pair, in one process (issue 34).

    python benchmarks/llamacpp_backend.py --pair qwen           # Qwen2.5-Coder-1.5B + 0.5B (both Q4_K_M GGUF)
    python benchmarks/llamacpp_backend.py --pair embedded       # Gemma-3-270m + SmolLM2-135M
    python benchmarks/llamacpp_backend.py --pair qwen --quick   # 16 tokens, two prompts

Greedy, 64 new tokens (16 with --quick), the word problems of ``decode.py``, without the stop at the
base's next turn, so every configuration writes its full length. Configurations, timed interleaved
(each round runs them all, so that drift of the machine hits all alike), tokens/s = generated tokens
over wall time, prompt reading included:

    transformers blendin b1   the float32 path, BlendIn, one prompt at a time
    llama.cpp base b1         the base alone on llama.cpp
    llama.cpp blendin b1      BlendIn, both models on llama.cpp
    llama.cpp blendin b8      eight prompts at once (tokens/s summed over the rows)
    llama.cpp auto b1         BlendIn with --speculate auto

Peak memory is each path's own process (``--memory BACKEND``: load the pair, decode one prompt,
report the peak resident set), since one process holding both paths would count both.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from decode import PAIRS, PROMPTS  # noqa: E402

CONFIGS = [("transformers", "blendin", 1, "off"), ("llama.cpp", "base", 1, "off"), ("llama.cpp", "blendin", 1, "off"),
           ("llama.cpp", "blendin", 8, "off"), ("llama.cpp", "blendin", 1, "auto")]
TARGETS = {"llama.cpp blendin b1 / transformers blendin b1": 8.0, "llama.cpp blendin b1 / llama.cpp base b1": 0.85,
           "llama.cpp blendin b8 / llama.cpp blendin b1": 2.0, "llama.cpp auto b1 / llama.cpp base b1": 1.1,
           "peak memory llama.cpp / transformers": 0.4}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="qwen")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None, help="rounds of the configurations (default 2, quick 1)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory", choices=("transformers", "llama.cpp"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory:
        return _memory(a)
    from blendin import BlendConfig
    from blendin.pair import load_pair

    base, guide = PAIRS[a.pair]
    tokens, repeats = (16, a.repeats or 1) if a.quick else (64, a.repeats or 2)
    prompts = PROMPTS[:2] if a.quick else PROMPTS[:4]
    config = BlendConfig(base=base, guide=guide, max_new_tokens=tokens, turn_stop=False, device="cpu", threads=a.threads)
    pairs = {b: load_pair(config.with_(backend=b)) for b in ("transformers", "llama.cpp")}
    totals = {c: [0, 0.0] for c in CONFIGS}
    for _ in range(repeats):
        for c in CONFIGS:
            backend, method, batch, speculate = c
            n, seconds = _run(pairs[backend], config.with_(backend=backend, method=method, speculate=speculate),
                              PROMPTS[:8] if batch == 8 else prompts, batch)
            totals[c] = [totals[c][0] + n, totals[c][1] + seconds]
            print(f"  {_name(c):28s} {n:5d} tokens in {seconds:6.1f} s", file=sys.stderr, flush=True)
    tps = {_name(c): n / s for c, (n, s) in totals.items()}
    memory = {b: _peak(a, b) for b in ("transformers", "llama.cpp")}
    ratios = {k: tps[k.split(" / ")[0]] / tps[k.split(" / ")[1]] for k in TARGETS if not k.startswith("peak")}
    ratios["peak memory llama.cpp / transformers"] = memory["llama.cpp"] / memory["transformers"]
    print(f"llama.cpp backend benchmark{' (quick)' if a.quick else ''}: {base} + {guide}, {tokens} new tokens, greedy, "
          f"{repeats} round(s); {platform.machine()}, {len(os.sched_getaffinity(0))} cores")
    print("| configuration | tokens/s |\n|---|---|")
    for name, value in tps.items():
        print(f"| {name} | {value:.2f} |")
    print(f"| peak memory, transformers float32 (MB) | {memory['transformers']:.0f} |")
    print(f"| peak memory, llama.cpp (MB) | {memory['llama.cpp']:.0f} |")
    print("\n| ratio | value | target |\n|---|---|---|")
    for name, value in ratios.items():
        print(f"| {name} | {value:.2f} | {'<=' if name.startswith('peak') else '>='} {TARGETS[name]} |")
    return 0


def _name(c) -> str:
    backend, method, batch, speculate = c
    return f"{backend} {'auto' if speculate == 'auto' else method} b{batch}"


def _run(pair, config, prompts, batch: int) -> tuple[int, float]:
    from blendin.decoding import generate_many

    start = time.perf_counter()
    results = [r for _, r in generate_many(pair, prompts, config, batch_size=batch)]
    return sum(r.tokens for r in results), time.perf_counter() - start


def _peak(a, backend: str) -> float:
    """The peak resident memory (MB) of a process that loads the pair on ``backend`` and decodes one prompt."""
    argv = [sys.executable, __file__, "--pair", a.pair, "--memory", backend] + (["--threads", str(a.threads)] if a.threads else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _memory(a) -> int:
    from blendin import BlendConfig
    from blendin.decoding import generate
    from blendin.pair import load_pair

    base, guide = PAIRS[a.pair]
    config = BlendConfig(base=base, guide=guide, max_new_tokens=16, backend=a.memory, device="cpu", threads=a.threads)
    generate(load_pair(config), PROMPTS[0], config)
    # VmHWM, not ru_maxrss: on Linux the latter survives exec and would report the parent's peak
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
