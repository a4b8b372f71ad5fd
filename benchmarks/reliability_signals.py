"""Which label-free signal predicts whether a guide helps a base? Read from the kept eval rows.

    python benchmarks/reliability_signals.py

Reads the per-item rows kept under docs/pairs (nothing is decoded, no model is loaded) and prints,
as Markdown:

1. per cell (task x pair), the labelled targets, paired by item on the items both methods have:
   guide alone - base alone, and BlendIn - base alone (mean score difference);
2. per cell, label-free signals computed from BlendIn's rows (and, for the answer-level ones, the
   base's rows of the same cell; no "correct" or "score" is read for them);
3. each signal's Spearman rank correlation with both targets across the cells, with a rough 95%
   interval (Fisher z, standard error sqrt(1.06 / (n - 3)), the usual one for Spearman's rho);
   beside them, for reference, the correlation of a "signal" that only says which base runs;
4. the same correlation with guide - base within the cells of one base (7 each): what a signal
   says once the base's strength is held fixed.

The issue's rule: a signal may be used online only if its rank correlation with guide - base is at
least 0.6 across the cells. The main table is the single-guide cells; the two-guide cells (the
Gemma base with both guides on ARC and TruthfulQA, the 1.5B base with both on XSTest) are added in a
second correlation table, their guide - base being the mean of the two guides' (each guide alone
from the single-guide folders of the same base and task). The retirement runs
(``~retire_below=0.5``) change no verdict, so they are shown, not correlated (they would count the
same targets twice).

Rows: only rows without "error"; only the first 200 items by task order (rows with "index" >= 200
are dropped; rows without "index" are all in the first 100 or 200). XSTest keeps rows for P1 and P2
only (P3's and P4's went with their machines), so XSTest gives two single-guide cells.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

PAIRS = Path(__file__).resolve().parents[1] / "docs" / "pairs"
LIMIT = 200
GEMMA, CODER15 = "gemma-3-270m", "qwen2.5-coder-1.5b-instruct"
SMOL, CODER05 = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"
PAIR = {"P1": (GEMMA, SMOL), "P2": (CODER15, CODER05), "P3": (CODER15, SMOL), "P4": (GEMMA, CODER05)}

SIGNALS = {  # name: what it is (all from BlendIn's rows; the last three also read the base's)
    "rel": "mean within-answer reliability of the guide(s), over answers with >= 1 consultation",
    "rel_pooled": "the same agreement pooled over all consultations, the prior of 1 taken out",
    "rate": "intervention rate, tokens-weighted (sum of interventions / sum of tokens)",
    "alpha": "mean alpha over all interventions",
    "per_answer": "interventions per answer (cascade proxy)",
    "multi": "share of answers with more than one intervention (cascade proxy)",
    "len_ratio": "BlendIn's tokens / the base's tokens, summed over paired items",
    "changed": "share of paired items whose extracted answer BlendIn changed from the base's",
    "unparsed": "share of BlendIn's answers with no extracted answer minus the base's share",
}


def cell_folder(task: str, pair: str) -> Path:
    """The rows folder of one single-guide cell."""
    name = "+".join(PAIR[pair])
    if task == "xstest":
        return PAIRS / "xstest" / pair.lower() / "rows" / name
    return PAIRS / task / "rows" / name


def load(folder: Path, method: str) -> dict:
    """{item id: row} of ``method`` in ``folder``: rows without error, within the first LIMIT items."""
    rows = {}
    with open(folder / "results.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["method"] == method and not r.get("error") and r.get("index", 0) < LIMIT:
                rows[r["id"]] = r
    return rows


def paired_difference(a: dict, b: dict) -> tuple[float, int]:
    """Mean of a's score minus b's over the items both have, and how many."""
    ids = [i for i in a if i in b and a[i]["score"] is not None and b[i]["score"] is not None]
    return statistics.mean(a[i]["score"] - b[i]["score"] for i in ids), len(ids)


def single_cells() -> list[dict]:
    """Each task x pair with kept rows: its BlendIn, base and guide-alone rows."""
    cells = []
    for task in ("arc", "gsm8k", "truthfulqa", "xstest"):
        for pair in PAIR:
            folder = cell_folder(task, pair)
            if not (folder / "results.jsonl").exists():
                continue
            cells.append({"cell": f"{task} {pair}", "base_model": PAIR[pair][0],
                          "blendin": load(folder, "blendin"), "base": load(folder, "base"),
                          "guides": [load(folder, "guide")]})
    return cells


def kept(task: str, pairs: list[str]) -> Path:
    """The first of ``pairs`` whose rows are kept for ``task``."""
    return next(f for f in (cell_folder(task, p) for p in pairs) if (f / "results.jsonl").exists())


def two_guide_cells() -> list[dict]:
    """The kept both-guides runs, with the base and each guide alone from the single-guide folders (a
    guide-alone row does not depend on the base: the grid reuses them across pairs)."""
    cells = []
    for folder in sorted(p.parent for p in PAIRS.glob("*/both/rows/*/results.jsonl")):
        task, base = folder.parts[-4], folder.name.split("+")[0]
        base_pairs = [p for p, (b, _) in PAIR.items() if b == base]
        guide_pairs = [sorted((p for p, (_, g) in PAIR.items() if g == guide), key=lambda p: PAIR[p][0] != base)
                       for guide in (SMOL, CODER05)]  # the pair with this base first: the same items
        tag = " retire" if "retire_below" in folder.name else ""
        cells.append({"cell": f"{task} both{tag}", "retire": bool(tag), "base_model": base, "blendin": load(folder, "blendin"),
                      "base": load(kept(task, base_pairs), "base"),
                      "guides": [load(kept(task, ps), "guide") for ps in guide_pairs]})
    return cells


def targets(cell: dict) -> dict:
    """The labelled targets: guide - base (the mean over the guides where two) and BlendIn - base."""
    per_guide = [paired_difference(g, cell["base"]) for g in cell["guides"]]
    blend, n = paired_difference(cell["blendin"], cell["base"])
    return {"n": n, "guide_n": min(k for _, k in per_guide), "guide-base": statistics.mean(d for d, _ in per_guide),
            "blendin-base": blend, "per_guide": [d for d, _ in per_guide]}


def pooled_agreement(rows: list[dict]) -> float:
    """Agreement over all consultations: reliability = (1 + sum s) / (1 + consulted), so sum s = rel * (1 + c) - 1."""
    s = c = 0.0
    for r in rows:
        for g in r["guides"]:
            s += g["reliability"] * (1 + g["consulted"]) - 1
            c += g["consulted"]
    return s / c


def answer_signals(blend: dict, base: dict) -> dict:
    """The signals that compare BlendIn's answers with the base's, on the items both have."""
    ids = [i for i in blend if i in base]
    return {"len_ratio": sum(blend[i]["tokens"] for i in ids) / sum(base[i]["tokens"] for i in ids),
            "changed": statistics.mean(blend[i]["extracted"] != base[i]["extracted"] for i in ids),
            "unparsed": statistics.mean((blend[i]["extracted"] is None) - (base[i]["extracted"] is None) for i in ids)}


def signals(cell: dict) -> dict:
    """The label-free signals of one cell (no "correct", no "score")."""
    rows = list(cell["blendin"].values())
    consulted = [statistics.mean(g["reliability"] for g in r["guides"]) for r in rows
                 if all(g["consulted"] > 0 for g in r["guides"])]
    alphas = [a for r in rows for a in r["alphas"]]
    out = {"rel": statistics.mean(consulted), "rel_pooled": pooled_agreement(rows),
           "rate": sum(r["interventions"] for r in rows) / sum(r["tokens"] for r in rows),
           "alpha": statistics.mean(alphas) if alphas else 0.0,
           "per_answer": statistics.mean(r["interventions"] for r in rows),
           "multi": statistics.mean(r["interventions"] > 1 for r in rows)}
    out.update(answer_signals(cell["blendin"], cell["base"]))
    return out


def two_guide_extras(cell: dict) -> dict:
    """Per guide: its mean reliability and share of the guide interventions; and how often the two
    guides alone give the same extracted answer (label-free, but needs each guide decoded alone)."""
    rows = list(cell["blendin"].values())
    names = [g["guide"] for g in rows[0]["guides"]]
    inter = {n: sum(g["interventions"] for r in rows for g in r["guides"] if g["guide"] == n) for n in names}
    rel = {n: statistics.mean(g["reliability"] for r in rows for g in r["guides"] if g["guide"] == n and g["consulted"])
           for n in names}
    a, b = cell["guides"]
    same = statistics.mean(a[i]["extracted"] == b[i]["extracted"] for i in a if i in b)
    return {"names": names, "share": {n: inter[n] / sum(inter.values()) for n in names}, "rel": rel, "guides_agree": same}


def ranks(xs: list[float]) -> list[float]:
    """Ranks from 1, ties given their average rank."""
    order = sorted(range(len(xs)), key=lambda k: xs[k])
    out = [0.0] * len(xs)
    k = 0
    while k < len(order):
        j = k
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[k]]:
            j += 1
        for m in range(k, j + 1):
            out[order[m]] = (k + j) / 2 + 1
        k = j + 1
    return out


def pearson(x: list[float], y: list[float]) -> float | None:
    mx, my = statistics.mean(x), statistics.mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else None


def spearman(x: list[float], y: list[float]) -> tuple[float | None, float, float]:
    """Spearman's rho (Pearson on average ranks) and a rough 95% interval (Fisher z, se sqrt(1.06/(n-3)))."""
    rho = pearson(ranks(x), ranks(y))
    if rho is None or len(x) < 4:
        return rho, float("nan"), float("nan")
    z, se = math.atanh(max(-0.9999, min(0.9999, rho))), math.sqrt(1.06 / (len(x) - 3))
    return rho, math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)


def verdict(rho: float | None) -> str:
    """The issue's rule on guide - base: rho >= 0.6 passes; rho <= -0.6 would pass only with its sign flipped."""
    if rho is None:
        return "-"
    return "**passes**" if rho >= 0.6 else ("fails (-0.6 or below: passes only negated)" if rho <= -0.6 else "fails")


def cell_table(cells: list[dict]) -> str:
    names = list(SIGNALS)
    lines = ["| cell | n | guide - base | BlendIn - base | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for c in cells:
        t, s = c["targets"], c["signals"]
        lines.append(f"| {c['cell']} | {t['n']} | {t['guide-base']:+.3f} | {t['blendin-base']:+.3f} | "
                     + " | ".join(f"{s[k]:.3f}" for k in names) + " |")
    return "\n".join(lines)


def rho_cells(x: list[float], y: list[float]) -> tuple[str, str]:
    rho, lo, hi = spearman(x, y)
    return ("-", "-") if rho is None else (f"{rho:+.2f}", f"[{lo:+.2f}, {hi:+.2f}]")


def correlation_table(cells: list[dict]) -> str:
    """Each signal's rho with both targets; last, for reference, a "signal" that only knows the base."""
    gb, bb = [c["targets"]["guide-base"] for c in cells], [c["targets"]["blendin-base"] for c in cells]
    lines = [f"n = {len(cells)} cells\n",
             "| signal | rho with guide - base | 95% CI | rho with BlendIn - base | 95% CI | rule (>= 0.6 with guide - base) |",
             "|---|---|---|---|---|---|"]
    for k in SIGNALS:
        x = [c["signals"][k] for c in cells]
        lines.append(f"| {k} | {' | '.join(rho_cells(x, gb))} | {' | '.join(rho_cells(x, bb))} | {verdict(spearman(x, gb)[0])} |")
    x = [float(c["base_model"] == GEMMA) for c in cells]
    ref = f"(reference: base is {GEMMA}, 1 or 0)"
    lines.append(f"| {ref} | {' | '.join(rho_cells(x, gb))} | {' | '.join(rho_cells(x, bb))} | - |")
    return "\n".join(lines)


def within_base_table(cells: list[dict]) -> str:
    """The same correlation with guide - base, within the cells of one base: what is left once the
    base's strength is held fixed."""
    groups = {b: [c for c in cells if c["base_model"] == b] for b in (GEMMA, CODER15)}
    lines = ["| signal | " + " | ".join(f"{b} (n = {len(g)}): rho, 95% CI" for b, g in groups.items()) + " |", "|---|---|---|"]
    for k in SIGNALS:
        parts = [", ".join(rho_cells([c["signals"][k] for c in g], [c["targets"]["guide-base"] for c in g]))
                 for g in groups.values()]
        lines.append(f"| {k} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def extras_table(cells: list[dict]) -> str:
    lines = ["| cell | guide - base per guide (SmolLM2, Qwen-0.5B) | reliability (SmolLM2, Qwen-0.5B) | "
             "share of interventions (SmolLM2, Qwen-0.5B) | guides alone give the same answer |", "|---|---|---|---|---|"]
    for c in cells:
        e, pg = two_guide_extras(c), c["targets"]["per_guide"]
        rel = ", ".join(f"{e['rel'][n]:.3f}" for n in e["names"])
        share = ", ".join(f"{e['share'][n]:.2f}" for n in e["names"])
        lines.append(f"| {c['cell']} | {pg[0]:+.3f}, {pg[1]:+.3f} | {rel} | {share} | {e['guides_agree']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    single, both = single_cells(), two_guide_cells()
    for c in single + both:
        c["targets"], c["signals"] = targets(c), signals(c)
    plain_both = [c for c in both if not c["retire"]]
    print("## Signals\n")
    print("\n".join(f"- `{k}`: {v}" for k, v in SIGNALS.items()))
    print("\n## Per cell\n")
    print(cell_table(single + both))
    print("\n## Two-guide cells: per guide\n")
    print(extras_table(both))
    print("\n## Spearman correlations: single-guide cells\n")
    print(correlation_table(single))
    print("\n## Spearman correlations: single-guide and two-guide cells (retirement runs left out)\n")
    print(correlation_table(single + plain_both))
    print("\n## Within one base: rho with guide - base (single-guide cells)\n")
    print(within_base_table(single))


if __name__ == "__main__":
    main()
