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
    llama.cpp base b8         the base alone, eight prompts at once: what llama.cpp's batches give here

And the anchors, llama-cpp-python's own ``Llama`` on the base's GGUF (no blendin code):

    llama-cpp-python b1       ``create_completion``, greedy: the fastest one model decodes here
    llama-cpp-python lookup   the same with its own speculative decoding (``LlamaPromptLookupDecoding``,
                              the draft length that did best, of 2 and 10)

Each target is printed beside its ceiling on this machine: BlendIn at batch 1 cannot beat its base
alone (``llama-cpp-python b1`` over the float32 BlendIn), batching cannot beat the base's own
batches, and the speculative target's anchor is llama.cpp's own speculative decoding.

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
           ("llama.cpp", "blendin", 8, "off"), ("llama.cpp", "blendin", 1, "auto"), ("llama.cpp", "base", 8, "off")]
TARGETS = {"llama.cpp blendin b1 / transformers blendin b1": 8.0, "llama.cpp blendin b1 / llama.cpp base b1": 0.85,
           "llama.cpp blendin b8 / llama.cpp blendin b1": 2.0, "llama.cpp auto b1 / llama.cpp base b1": 1.1,
           "peak memory llama.cpp / transformers": 0.4}
# what this machine allows each target, measured in the same run (None: no ceiling but the target)
CEILINGS = {"llama.cpp blendin b1 / transformers blendin b1": "llama-cpp-python b1 / transformers blendin b1",
            "llama.cpp blendin b8 / llama.cpp blendin b1": "llama.cpp base b8 / llama.cpp base b1",
            "llama.cpp auto b1 / llama.cpp base b1": "llama-cpp-python lookup / llama-cpp-python b1"}


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
    del pairs  # the anchors load the base again
    tps.update(_anchors(base, prompts, tokens, repeats, a.threads))
    memory = {b: _peak(a, b) for b in ("transformers", "llama.cpp")}
    ratio = lambda k: tps[k.split(" / ")[0]] / tps[k.split(" / ")[1]]  # noqa: E731
    ratios = {k: ratio(k) for k in TARGETS if not k.startswith("peak")}
    ratios["peak memory llama.cpp / transformers"] = memory["llama.cpp"] / memory["transformers"]
    print(f"llama.cpp backend benchmark{' (quick)' if a.quick else ''}: {base} + {guide}, {tokens} new tokens, greedy, "
          f"{repeats} round(s); {platform.machine()}, {len(os.sched_getaffinity(0))} cores")
    print("| configuration | tokens/s |\n|---|---|")
    for name, value in tps.items():
        print(f"| {name} | {value:.2f} |")
    print(f"| peak memory, transformers float32 (MB) | {memory['transformers']:.0f} |")
    print(f"| peak memory, llama.cpp (MB) | {memory['llama.cpp']:.0f} |")
    print("\n| ratio | value | target | this machine's ceiling (the same run) |\n|---|---|---|---|")
    for name, value in ratios.items():
        ceiling = f"{ratio(CEILINGS[name]):.2f} ({CEILINGS[name]})" if name in CEILINGS else "-"
        print(f"| {name} | {value:.2f} | {'<=' if name.startswith('peak') else '>='} {TARGETS[name]} | {ceiling} |")
    return 0


def _name(c) -> str:
    backend, method, batch, speculate = c
    return f"{backend} {'auto' if speculate == 'auto' else method} b{batch}"


def _run(pair, config, prompts, batch: int) -> tuple[int, float]:
    from blendin.decoding import generate_many

    start = time.perf_counter()
    results = [r for _, r in generate_many(pair, prompts, config, batch_size=batch)]
    return sum(r.tokens for r in results), time.perf_counter() - start


def _anchors(base: str, prompts, tokens: int, repeats: int, threads) -> dict:
    """llama-cpp-python's own decoding of the base's GGUF, plain and with its prompt-lookup speculation:
    tokens/s over the same prompts (prompt reading included), ``repeats`` rounds."""
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    from blendin.backends.llama_cpp import physical_cores
    from blendin.models import gguf_file

    path, threads = str(gguf_file(base)), threads or physical_cores()
    out = {}
    for name, draft in (("llama-cpp-python b1", None), ("llama-cpp-python lookup k2", 2), ("llama-cpp-python lookup k10", 10)):
        llm = Llama(path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False, use_mmap=False,
                    draft_model=LlamaPromptLookupDecoding(num_pred_tokens=draft) if draft else None)
        n, seconds = 0, 0.0
        for _ in range(repeats):
            for prompt in prompts:
                llm.reset()
                start = time.perf_counter()
                n += llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, top_k=1)["usage"]["completion_tokens"]
                seconds += time.perf_counter() - start
        out[name] = n / seconds
        print(f"  {name:28s} {n:5d} tokens in {seconds:6.1f} s", file=sys.stderr, flush=True)
        del llm
    out["llama-cpp-python lookup"] = max(out.pop("llama-cpp-python lookup k2"), out.pop("llama-cpp-python lookup k10"))
    return out


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
