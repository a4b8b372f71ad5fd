"""Half precision on the CPU: bfloat16 against float32, for speed, memory and greedy answers.

    python benchmarks/precision.py                       # the embedded pair (about 10 minutes here)
    python benchmarks/precision.py --pair qwen           # Qwen2.5-Coder 1.5B + 0.5B (about 40 minutes)
    python benchmarks/precision.py --dtypes float32,bfloat16,float16 --tokens 64

For each dtype, in a process of its own (so that peak memory is that dtype's): load seconds, peak RSS,
and the greedy answers of the base alone and of BlendIn to the 16 word problems of decode.py, at
batch 16. Answers are compared with float32's: identical answers, and the tokens that agree before
the first difference. Then, in one process holding every dtype (interleaved, two rounds, so that the
machine's drift hits all alike): BlendIn's decode tokens/s at batch 1 and 16, and each dtype's speed
over float32's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from decode import PAIRS, PROMPTS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="embedded", choices=sorted(PAIRS))
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one dtype's answers, in its own process
    a = ap.parse_args()
    if a.child:
        print(json.dumps(answers(a.pair, a.child, a.tokens)))
        return 0
    dtypes = a.dtypes.split(",")
    per_dtype = {}
    for dtype in dtypes:
        cmd = [sys.executable, __file__, "--pair", a.pair, "--tokens", str(a.tokens), "--child", dtype]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        per_dtype[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {dtype}: answers done ({per_dtype[dtype]['decode_s']} s)", file=sys.stderr, flush=True)
    ref = per_dtype[dtypes[0]]
    result = {"pair": list(PAIRS[a.pair]), "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
              "tokens": a.tokens, "prompts": len(PROMPTS), "dtypes": {}}
    for dtype, d in per_dtype.items():
        row = {"load_s": d["load_s"], "peak_rss_mb": d["peak_rss_mb"], "intervention_rate": d["intervention_rate"]}
        for method in ("base", "blendin"):
            row[f"{method}_agreement"] = agreement(ref["ids"][method], d["ids"][method])
        result["dtypes"][dtype] = row
    speed = decode_speed(a.pair, dtypes, a.tokens)
    for dtype in dtypes:
        result["dtypes"][dtype].update(speed[dtype])
        for b in ("b1", "b16"):
            result["dtypes"][dtype][f"speedup_{b}"] = round(speed[dtype][f"blendin_tps_{b}"] / speed[dtypes[0]][f"blendin_tps_{b}"], 2)
    print(json.dumps(result))
    print(table(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0


def agreement(ref: list[list[int]], other: list[list[int]]) -> dict:
    """Identical answers, and the tokens agreeing before the first difference (mean, least) over prompts."""
    prefix = []
    for x, y in zip(ref, other):
        n = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
        prefix.append(n)
    identical = sum(x == y for x, y in zip(ref, other))
    return {"identical": identical, "mean_agreeing": round(sum(prefix) / len(prefix), 1), "least_agreeing": min(prefix)}


def _pair(pair_name: str, dtype: str):
    from blendin import BlendConfig
    from blendin.pair import load_pair

    base, guide = PAIRS[pair_name]
    config = BlendConfig(base=base, guide=guide, device="cpu", dtype=dtype, turn_stop=False)
    return load_pair(config, methods=("base", "guide")), config


def answers(pair_name: str, dtype: str, tokens: int) -> dict:
    from blendin.decoding import generate_many

    start = time.perf_counter()
    pair, config = _pair(pair_name, dtype)
    load_s = time.perf_counter() - start
    ids, rate = {}, None
    start = time.perf_counter()
    for method in ("base", "blendin"):
        results = dict(generate_many(pair, PROMPTS, config.with_(method=method, max_new_tokens=tokens), batch_size=16))
        ids[method] = [[s.token_id for s in results[i].steps] for i in range(len(PROMPTS))]
        if method == "blendin":
            rate = sum(r.interventions for r in results.values()) / max(1, sum(r.tokens for r in results.values()))
    return {"load_s": round(load_s, 1), "decode_s": round(time.perf_counter() - start, 1), "ids": ids, "intervention_rate": round(rate, 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def decode_speed(pair_name: str, dtypes: list[str], tokens: int) -> dict:
    """BlendIn's tokens/s per dtype at batch 1 (2 prompts) and 16, interleaved over two rounds."""
    from blendin.decoding import generate_many

    pairs = {d: _pair(pair_name, d) for d in dtypes}
    totals = {}
    for _ in range(2):
        for batch in (1, 16):
            for dtype, (pair, config) in pairs.items():
                prompts = PROMPTS[:2] if batch == 1 else PROMPTS
                n_tok = tokens // 2 if batch == 1 else tokens
                start = time.perf_counter()
                results = [r for _, r in generate_many(pair, prompts, config.with_(method="blendin", max_new_tokens=n_tok), batch_size=batch)]
                t = totals.setdefault((dtype, batch), [0, 0.0])
                t[0], t[1] = t[0] + sum(r.tokens for r in results), t[1] + time.perf_counter() - start
                print(f"  speed {dtype} b{batch}: {t[0]} tokens in {t[1]:.1f} s", file=sys.stderr, flush=True)
    return {d: {f"blendin_tps_b{b}": round(totals[(d, b)][0] / totals[(d, b)][1], 2) for b in (1, 16)} for d in dtypes}


def table(result: dict) -> str:
    lines = [f"precision benchmark: {' + '.join(result['pair'])}, {result['tokens']} new tokens, greedy, {result['prompts']} prompts; {result['machine']}",
             "| dtype | load s | peak RSS MB | BlendIn tok/s b1 | b16 | speed vs float32 b1 / b16 | identical answers base / BlendIn | "
             "tokens agreeing before the first difference, mean (least), base / BlendIn | intervention rate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for dtype, r in result["dtypes"].items():
        b, bl = r["base_agreement"], r["blendin_agreement"]
        lines.append(f"| {dtype} | {r['load_s']} | {r['peak_rss_mb']} | {r['blendin_tps_b1']} | {r['blendin_tps_b16']} | "
                     f"{r['speedup_b1']} / {r['speedup_b16']} | {b['identical']} / {bl['identical']} of {result['prompts']} | "
                     f"{b['mean_agreeing']} ({b['least_agreeing']}) / {bl['mean_agreeing']} ({bl['least_agreeing']}) | {r['intervention_rate']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
