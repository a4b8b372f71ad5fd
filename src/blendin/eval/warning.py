"""The early warning, read back from finished runs: would the paper's check on a small sample have
told the pairs apart the way their full runs then did?

    entries = early_warnings({"P3": rows_p3, "P4": rows_p4})      # {run name: results.jsonl rows}
    print(warning_markdown(entries))

``blendin diagnose`` decodes a task's first 20 items under BlendIn and calls a pair unreliable past
20% interventions (tokens guided / tokens decoded, pooled over the sample). A grid's BlendIn rows
already hold those 20 items, decoded with the same settings, so the same numbers come from them
without decoding anything again: the rate on the first ``sample`` items, its verdict, and beside them
what the whole run measured (rate, score, the base and the guide alone). Items are taken in id order,
which is the data file's order for shared/data (every file's ids count up).

Across pairs, ``rank_agreement`` says whether a lower early rate goes with a higher full-run score:
Kendall's tau between the two over the pairs of one task and configuration (+1: the rate on the
sample ranks the pairs exactly as their scores do; -1: exactly the other way).
"""

from __future__ import annotations

from itertools import combinations

from ..config import SOLO_METHODS
from .compare import config_name
from .diagnose import MIN_SAMPLE
from .runner import summarise


def _order(item_id):
    """Ids that are numbers sort as numbers (2 before 10), before any that are not."""
    try:
        return (0, float(item_id), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(item_id))


def _first(rows, sample: int) -> list[dict]:
    """The ``sample`` rows of the items that come first in the task file: by the rows' ``index`` (the
    item's place in the file, which eval records), else, for rows written before it did, by id. Ids
    alone are no order for tasks whose ids are names (ARC's "Mercury_7175875" is its first item and
    sorts after "ACTAAP_2009_7_8"): the sample would not be the one ``diagnose`` decodes."""
    rows = list(rows)
    if all(r.get("index") is not None for r in rows):
        return sorted(rows, key=lambda r: r["index"])[:sample]
    return sorted(rows, key=lambda r: _order(r["id"]))[:sample]


def early_warnings(runs: dict[str, list[dict]], sample: int = MIN_SAMPLE, threshold: float = 0.2) -> list[dict]:
    """One entry per run, task and BlendIn configuration: ``early_rate`` and ``reliable`` on the
    first ``sample`` items (``sample_n``: how many there were; fewer than ``sample``, and the verdict
    says it is too few to decide, as ``diagnose`` warns), ``rate``, ``score`` and ``n`` on all
    of the run's items, and ``base``/``guide``: those methods' scores on the same task (None where
    not run). Rows that failed are left out, as ``diagnose`` leaves them out; rates and scores are
    ``runner.summarise``'s."""
    out = []
    for name, rows in runs.items():
        rows = [r for r in rows if not r.get("error")]
        summaries = summarise(rows)
        for s in (s for s in summaries if s["method"] == "blendin"):
            alone = {m: next((a["score"] for a in summaries if (a["task"], a["method"]) == (s["task"], m)), None)
                     for m in SOLO_METHODS}
            config = (s["task"], "blendin", s["gamma"], s["alpha"])
            first = _first((r for r in rows if (r["task"], r["method"], r["gamma"], r["alpha"]) == config), sample)
            [early] = summarise(first)
            out.append({"run": name, "task": s["task"], "config": config_name(s), "sample_n": len(first), "sample": sample,
                        "early_rate": early["intervention_rate"], "reliable": early["intervention_rate"] <= threshold,
                        "early_score": early["score"], "rate": s["intervention_rate"], "score": s["score"], "n": s["n"],
                        **alone})
    return out


def kendall_tau(xs: list[float], ys: list[float]) -> float | None:
    """Kendall's tau-a of two equally long lists (ties count as neither); None below two values."""
    pairs = list(combinations(range(len(xs)), 2))
    if not pairs:
        return None
    sign = lambda v: (v > 0) - (v < 0)
    return sum(sign(xs[i] - xs[j]) * sign(ys[i] - ys[j]) for i, j in pairs) / len(pairs)


def rank_agreement(entries: list[dict]) -> list[dict]:
    """Per task and configuration with two or more runs: tau between the early rate, negated (a
    lower rate should mean a better pair), and the full run's score."""
    out = []
    for task, config in dict.fromkeys((e["task"], e["config"]) for e in entries):
        group = [e for e in entries if (e["task"], e["config"]) == (task, config)
                 and e["early_rate"] is not None and e["score"] is not None]
        if len(group) >= 2:
            out.append({"task": task, "config": config, "runs": len(group),
                        "tau": kendall_tau([-e["early_rate"] for e in group], [e["score"] for e in group])})
    return out


def warning_markdown(entries: list[dict], threshold: float = 0.2) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    num = lambda v: "-" if v is None else f"{v:.3f}"
    lines = [f"| run | task | configuration | rate on the first items | verdict (> {100 * threshold:.0f}%: unreliable) "
             "| score on them | n | rate, all items | score | base alone | guide alone |", "|" + "---|" * 11]
    for e in entries:
        verdict = "-" if e["reliable"] is None else ("reliable" if e["reliable"] else "unreliable")
        if e["reliable"] is not None and e["sample_n"] < e["sample"]:
            verdict += f" (only {e['sample_n']} of {e['sample']} items: too few to decide)"
        lines.append(f"| {e['run']} | {e['task']} | {e['config']} | {pct(e['early_rate'])} ({e['sample_n']}) | {verdict} | "
                     f"{num(e['early_score'])} | {e['n']} | {pct(e['rate'])} | {num(e['score'])} | {num(e['base'])} | {num(e['guide'])} |")
    agreement = rank_agreement(entries)
    if agreement:
        lines += ["", "Does the rate on the sample rank the runs as their scores do? (Kendall's tau of the negated "
                  "early rate and the score: +1 the same order, -1 the reverse)", "",
                  "| task | configuration | runs | tau |", "|---|---|---|---|"]
        lines += [f"| {a['task']} | {a['config']} | {a['runs']} | {a['tau']:+.2f} |" for a in agreement]
    return "\n".join(lines)
