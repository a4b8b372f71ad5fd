"""Two runs of the same eval cell on two backends, item by item: what the backend changed.

    python benchmarks/backend_rows.py docs/pairs/arc/rows/qwen2.5-coder-1.5b-instruct+qwen2.5-coder-0.5b-instruct \
        "runs/arc34/qwen2.5-coder-1.5b-instruct+qwen2.5-coder-0.5b-instruct" --names float32,llama.cpp --items 0-99

Reads each folder's ``results.jsonl`` (an eval run folder, or the rows ``blendin report --keep-rows``
writes), pairs rows by task, configuration (method, gamma, alpha) and item ``index``, keeps the items
both runs hold (and ``--items``), and prints two markdown tables: per method, each run's score, the
difference with its paired 95% interval (Newcombe's, as ``blendin report``), how often the extracted
answer is the same, and the intervention rates; then, per run, each method against the base alone.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from blendin.eval.compare import paired_difference
from blendin.eval.runner import interval

METHODS = ("base", "guide", "blendin", "switch", "nudging")


def load(folder: str) -> dict:
    """(task, method, gamma, alpha) -> {index: row}; rows that failed are left out."""
    rows = defaultdict(dict)
    for line in (Path(folder) / "results.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("error") is None and row.get("index") is not None:
            rows[(row["task"], row["method"], row["gamma"], str(row["alpha"]))][row["index"]] = row
    return rows


def span(text: str | None) -> range | None:
    if not text:
        return None
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def diff_cell(d: dict) -> str:
    return f"{d['difference']:+.3f} {interval(d['ci'])} ({d['a_only']} won / {d['b_only']} lost)"


def backend_table(a: dict, b: dict, names: list[str], items: range | None) -> tuple[str, dict]:
    """The per-method table, and for each key the indices both runs hold."""
    lines = [f"| method | n | {names[0]} | {names[1]} | {names[1]} - {names[0]} [95% CI] | same answer | interventions {names[0]} / {names[1]} |",
             "|---|---|---|---|---|---|---|"]
    common = {}
    for key in sorted(set(a) & set(b), key=lambda k: (k[0], METHODS.index(k[1]) if k[1] in METHODS else 99, k[2], k[3])):
        idx = sorted(i for i in set(a[key]) & set(b[key]) if items is None or i in items)
        if not idx:
            continue
        common[key] = idx
        ra, rb = [a[key][i] for i in idx], [b[key][i] for i in idx]
        d = paired_difference([r["correct"] for r in rb], [r["correct"] for r in ra])
        same = sum(x.get("extracted") == y.get("extracted") for x, y in zip(ra, rb))
        rate = lambda rows: sum(r["interventions"] for r in rows) / max(1, sum(r["tokens"] for r in rows))
        rates = "-" if key[1] == "base" else f"{100 * rate(ra):.1f}% / {100 * rate(rb):.1f}%"
        score = lambda rows: sum(r["correct"] for r in rows) / len(rows)
        lines.append(f"| {key[1]} | {len(idx)} | {score(ra):.3f} | {score(rb):.3f} | {diff_cell(d)} | {same}/{len(idx)} | {rates} |")
    return "\n".join(lines), common


def against_base(runs: list[dict], names: list[str], common: dict) -> str:
    lines = ["| run | method | n | method - base [95% CI] |", "|---|---|---|---|"]
    for name, rows in zip(names, runs):
        for key, idx in common.items():
            base = next((rows[k] for k in rows if k[:2] == (key[0], "base")), None)  # the base alone: any gamma, alpha
            if key[1] == "base" or base is None:
                continue
            both = [i for i in idx if i in base]
            d = paired_difference([rows[key][i]["correct"] for i in both], [base[i]["correct"] for i in both])
            lines.append(f"| {name} | {key[1]} | {len(both)} | {diff_cell(d)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first", help="run folder (or kept rows) of the first backend")
    p.add_argument("second", help="run folder of the second backend")
    p.add_argument("--names", default="first,second", help="the two runs' names in the tables")
    p.add_argument("--items", help="only these item indices, e.g. 0-99 or 100-199")
    a = p.parse_args()
    names = a.names.split(",")
    first, second = load(a.first), load(a.second)
    table, common = backend_table(first, second, names, span(a.items))
    print(table + "\n\n" + against_base([first, second], names, common))


if __name__ == "__main__":
    main()
