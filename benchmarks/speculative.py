"""Speculative BlendIn against plain BlendIn and the plain base alone, at batch 1 and 16.

    python benchmarks/speculative.py                      # both pairs, 128 tokens (long on a CPU)
    python benchmarks/speculative.py --quick              # 48 tokens, fewer prompts at batch 1
    python benchmarks/speculative.py --pair qwen --json out.json
    python benchmarks/speculative.py --device cuda        # any placement (default: auto, auto)

Greedy, without the stop at the base's next turn. Prompts: the decode benchmark's sixteen word
problems and eight input-grounded ones written for this benchmark (summarise or rewrite a given
paragraph: the answer repeats the prompt's words, where prompt lookup can draft). At batch 1 each
configuration decodes the first two of each kind (--quick) or four; at batch 16, sixteen prompts
(twelve word problems, four grounded).

At batch 1 the word problems and the grounded prompts are also reported apart (rows run alone, so
each kind's time is its own), since the drafters pay on different text. Configurations: the base
alone, plain BlendIn, and speculative BlendIn with each drafter the pair allows (guide: one
tokenizer; lookup: any pair) and, at batch 1, auto (which weighs them by the pass costs it
measures; at a batch it drafts nothing); at batch 1 also transformers' assisted generation of the
base with the guide as its assistant (one tokenizer only; it decodes the base's own greedy answer,
the peer for speed). Each configuration runs once per round, interleaved, so drift of the machine
hits all alike; each configuration first decodes 8 tokens untimed (warm-up). Columns: tokens/s
(generated tokens over wall time, prompts read included), x base (over the plain base alone at that batch size), base passes per token (the
share of a row's tokens that needed a base pass of its own), acceptance (drafted tokens the method
then chose), identical (the same token ids as plain BlendIn, prompt for prompt).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from decode import PAIRS, PROMPTS as WORD_PROBLEMS  # noqa: E402

GROUNDED = [
    "Summarise this paragraph in one sentence: The town library opened a new reading room last spring. It has "
    "twenty tables, a wall of large windows and a corner with books for small children. Since it opened, the "
    "number of visitors on weekday afternoons has doubled, and the library now plans to stay open later on Fridays.",
    "Rewrite this paragraph in simpler words: The committee postponed its decision on the new bus route because "
    "several residents objected to the proposed stop outside the school. The committee will hold a public meeting "
    "next month and publish a revised plan after it has heard the residents.",
    "Summarise this paragraph in one sentence: Bees visit thousands of flowers every day to collect nectar and "
    "pollen. While they move from flower to flower they carry pollen with them, which helps the plants make seeds. "
    "Many fruits and vegetables that people eat depend on this work of the bees.",
    "Rewrite this paragraph as a short list of steps: To plant a tomato seedling, first dig a hole twice as deep "
    "as the pot. Then place the seedling in the hole and fill it with soil. Press the soil down gently, water the "
    "plant well and put a stick beside it to support the stem as it grows.",
    "Summarise this paragraph in one sentence: The old bridge over the river was closed in March after engineers "
    "found cracks in two of its pillars. A temporary ferry now carries people across, and the city expects the "
    "repaired bridge to reopen before the end of the year.",
    "Rewrite this paragraph in the past tense: Every morning the baker wakes up at four. She mixes the dough, "
    "shapes the loaves and puts them in the oven. By seven the shop smells of fresh bread, and the first customers "
    "are waiting at the door.",
    "Summarise this paragraph in one sentence: A group of students built a small weather station on the roof of "
    "their school. It measures temperature, wind speed and rainfall every ten minutes and sends the readings to a "
    "website, where anyone in the town can see them.",
    "Rewrite this paragraph more formally: Hey, just so you know, the meeting on Thursday is moved to Friday "
    "because the room is booked. Same time as before, and please bring the notes from last week so we can go "
    "through them quickly.",
]


def prompts_for(batch: int, quick: bool) -> dict[str, list[str]]:
    """The prompts of each kind at ``batch``: at batch 1 each kind is timed apart (a row runs alone, so
    its time is its own); at batch 16 the kinds share the batch and only the whole is timed."""
    if batch == 1:
        n = 2 if quick else 4
        return {"word": WORD_PROBLEMS[:n], "grounded": GROUNDED[:n]}
    return {"all": WORD_PROBLEMS[:12] + GROUNDED[:4]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=["embedded", "qwen", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="48 tokens, two prompts of each kind at batch 1")
    ap.add_argument("--tokens", type=int, default=None, help="new tokens per answer (default 128, quick 48)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    a = ap.parse_args()
    from blendin import BlendConfig
    from blendin.pair import load_pair

    tokens = a.tokens or (48 if a.quick else 128)
    batches = [int(b) for b in a.batches.split(",")]
    names = ["embedded", "qwen"] if a.pair == "both" else [a.pair]
    print(f"speculative benchmark: {tokens} new tokens, greedy, {a.rounds} round(s); {platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores, {time.strftime('%Y-%m-%d')}")
    rows = []
    for name in names:
        base, guide = PAIRS[name]
        config = BlendConfig(base=base, guide=guide, max_new_tokens=tokens, turn_stop=False, device=a.device, dtype=a.dtype)
        pair = load_pair(config)
        rows += bench_pair(name, pair, config, batches, a.rounds, a.quick)
        PASS_COSTS[name] = {role: _pass_cost(getattr(m, "runner", None)) for role, m in (("base", pair.base), ("guide", pair.guide))}
        del pair
    print("| pair | batch | prompts | configuration | tokens | tokens/s | x base | base passes / token | acceptance | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pair']} | {r['batch']} | {r['kind']} | {r['config']} | {r['tokens']} | {r['tps']:.2f} | {r['x_base']:.2f} | "
              f"{_fmt(r['base_passes_per_token'])} | {_fmt(r['acceptance'])} | {r['identical']} |")
    print()
    print("where the time goes: passes / seconds inside each model / tokens read (prompts included)")
    print("| base | batch | configuration | base passes | base s | base tokens | guide passes | guide s | guide tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (base, batch, method, speculate), (bp, bs, bt, gp, gs, gt) in TIME_SPENT.items():
        label = method + ("" if speculate == "off" else f" speculate={speculate}")
        print(f"| {base} | {batch} | {label} | {bp} | {bs:.1f} | {bt} | {gp} | {gs:.1f} | {gt} |")
    print()
    print("what a pass of one row costs, as auto measured it (PassCost, at the run's end): seconds for 1 and 8 tokens read")
    for name, costs in PASS_COSTS.items():
        print(f"  {name}: " + "; ".join(f"{role} {c[0]:.3f} / {c[1]:.3f}" if c else f"{role} -" for role, c in costs.items()))
    if a.json:  # the rows, and each configuration's token ids prompt by prompt (to replay a drafter offline)
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "outputs": OUTPUTS}, f)
    return 0


def bench_pair(name, pair, config, batches, rounds, quick):
    drafters = ["guide", "lookup"] if pair.bridge.identity else ["lookup"]
    configs = [("base", "off"), ("blendin", "off")] + [("blendin", d) for d in drafters] + [("blendin", "auto")]
    totals, outputs, passes, drafted = {}, {}, {}, {}  # keyed (batch, kind, label); kind "all" sums the kinds
    for method, speculate in configs:  # warm-up, untimed: the first passes of a process are slow
        run(pair, GROUNDED[-1:], config.with_(method=method, speculate=speculate, max_new_tokens=8), 1)
    for key in [k for k in TIME_SPENT if k[0] == config.base]:
        del TIME_SPENT[key]
    for _ in range(rounds):
        for batch in batches:
            kinds = prompts_for(batch, quick)
            for method, speculate in configs:
                if speculate == "auto" and batch > 1:
                    continue  # auto drafts only for a row alone on its base: at a batch it is plain BlendIn
                label = method + ("" if speculate == "off" else f" speculate={speculate}")
                for kind, prompts in kinds.items():
                    AUTO_SPLIT.clear()
                    n, seconds, ids, calls, dr = run(pair, prompts, config.with_(method=method, speculate=speculate), batch)
                    for k in {kind, "all"}:
                        _add(totals, (batch, k, label), [n, seconds])
                        _add(passes, (batch, k, label), [calls, n])
                        _add(drafted, (batch, k, label), dr)
                    outputs[(batch, kind, label)] = ids
                    split = f" (drafted: {', '.join(f'{k} {v}' for k, v in AUTO_SPLIT.items())})" if AUTO_SPLIT else ""
                    print(f"  {name} b{batch:2d} {kind:8s} {label:28s} {n:5d} tokens in {seconds:6.1f} s{split}", file=sys.stderr, flush=True)
            if batch == 1 and pair.bridge.identity:
                label = "transformers assisted (base + guide)"
                for kind, prompts in kinds.items():
                    n, seconds = assisted(pair, prompts, config)
                    for k in {kind, "all"}:
                        _add(totals, (1, k, label), [n, seconds])
                    print(f"  {name} b 1 {kind:8s} {label:28s} {n:5d} tokens in {seconds:6.1f} s", file=sys.stderr, flush=True)
    for (batch, kind, label), ids in outputs.items():
        OUTPUTS[f"{name} b{batch} {kind} {label}"] = ids
    rows = []
    for (batch, kind, label), (n, seconds) in sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all", kv[0][1])):
        base_n, base_s = totals[(batch, kind, "base")]
        plain = [outputs.get((batch, k, "blendin")) for k in _kinds(outputs, batch, kind)]
        ids = [outputs.get((batch, k, label)) for k in _kinds(outputs, batch, kind)]
        identical = "-" if None in ids or label in ("base", "blendin") else str(ids == plain).lower()
        calls = passes.get((batch, kind, label))
        dr = drafted.get((batch, kind, label))
        rows.append({"pair": name, "batch": batch, "kind": kind, "config": label, "tokens": n, "tps": n / seconds,
                     "x_base": (n / seconds) / (base_n / base_s), "base_passes_per_token": calls[0] / calls[1] if calls else None,
                     "acceptance": dr[1] / dr[0] if dr and dr[0] else None, "identical": identical})
    return rows


def _kinds(outputs, batch, kind):
    """The prompt kinds that make up ``kind`` at ``batch`` ("all": every kind run there)."""
    return sorted({k for b, k, _ in outputs if b == batch}) if kind == "all" else [kind]


def run(pair, prompts, config, batch):
    """Decode ``prompts`` at ``batch`` rows a time: (tokens, seconds, token ids per prompt, base passes
    summed over rows, [drafted, accepted])."""
    from blendin.decoding import Generation, run_rows

    rows = [Generation(pair, p, config) for p in prompts]
    runners = [getattr(m, "runner", None) for m in (pair.base, pair.guide)]
    before = [_counters(r) for r in runners]
    start = time.perf_counter()
    for _ in run_rows(iter(rows), width=batch):
        pass
    seconds = time.perf_counter() - start
    TIME_SPENT.setdefault((config.base, batch, config.method, config.speculate), [0, 0.0, 0, 0, 0.0, 0])
    spent = [y - x for r, b in zip(runners, before) for x, y in zip(b, _counters(r))]
    TIME_SPENT[(config.base, batch, config.method, config.speculate)] = [
        x + y for x, y in zip(TIME_SPENT[(config.base, batch, config.method, config.speculate)], spent)]
    results = [r.result() for r in rows]
    calls = sum(r.base.session.forward_calls for r in rows if r.base is not None)
    drafted = [sum(r.drafter.drafted for r in rows if r.drafter), sum(r.drafter.accepted for r in rows if r.drafter)]
    for r in rows:  # auto: the tokens each drafter proposed
        for name, n in getattr(r.drafter, "drafted_by", {}).items():
            AUTO_SPLIT[name] = AUTO_SPLIT.get(name, 0) + n
    return sum(r.tokens for r in results), seconds, [[s.token_id for s in r.steps] for r in results], calls, drafted


def assisted(pair, prompts, config):
    """transformers' assisted generation: the base's greedy answer, the guide drafting (batch 1)."""
    import torch

    from blendin.prompts import prompt_ids

    base, guide = pair.base, pair.guide
    n, seconds = 0, 0.0
    for p in prompts:
        ids = torch.tensor([prompt_ids(base.tokenizer, config.prompt, p, chat=False)], device=base.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = base.model.generate(ids, attention_mask=torch.ones_like(ids), assistant_model=guide.model, do_sample=False,
                                      max_new_tokens=config.max_new_tokens, pad_token_id=base.tokenizer.tok.pad_token_id
                                      or base.tokenizer.tok.eos_token_id)
        seconds += time.perf_counter() - start
        n += out.shape[1] - ids.shape[1]
    return n, seconds


AUTO_SPLIT: dict = {}  # drafter -> tokens it proposed under auto, in the last run
PASS_COSTS: dict = {}  # pair -> role -> (seconds for 1 token, for 8), as PassCost measured them
OUTPUTS: dict = {}  # "pair bBATCH KIND CONFIG" -> token ids, prompt by prompt
TIME_SPENT: dict = {}  # (base, batch, method, speculate) -> base passes, s, tokens read; guide passes, s, tokens read


def _pass_cost(runner):
    """(seconds for 1 token, for 8) of a model's one-row passes as its runner measured them, or None."""
    cost = getattr(runner, "cost", None)
    return (cost.seconds(1), cost.seconds(8)) if cost is not None and cost.measured else None


def _counters(runner) -> list:
    return [0, 0.0, 0] if runner is None else [runner.passes, runner.seconds, runner.tokens_read]


def _add(store, key, values):
    if key in store:
        store[key] = [x + y for x, y in zip(store[key], values)]
    else:
        store[key] = list(values)


def _fmt(x):
    return "-" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    sys.exit(main())
