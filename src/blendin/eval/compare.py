"""Paired comparison of two methods on the same items: which one the items say is better, and by how much.

Two methods of one pair answered the same items; the difference of their scores is measured item by
item (paired), which is far tighter than comparing two independent intervals: most items are right
(or wrong) under both methods and cancel.

    rows = read_rows("runs/arc/qwen2.5-coder-1.5b-instruct+smollm2-135m-instruct/results.jsonl")
    for c in compare_methods(rows, [("blendin", "switch")]):
        print(c["task"], c["a"], c["b"], c["difference"], c["ci"])

For right/wrong scores the interval is Newcombe's (1998, method 10; as in Altman et al.,
"Statistics with confidence", and Fagerland et al.'s square-and-add interval for the paired 2x2
table) for a difference of paired proportions: built from each method's Wilson interval and the
correlation of the two answers (continuity-corrected), it
stays inside [-1, 1] and behaves at 0 or n discordant items, where the normal approximation does not.
For graded scores (a judge's 1-5) it is the normal-approximation interval of the mean difference.
Only items both methods answered without an error, and scored, are paired.

    >>> d = paired_difference([True] * 30 + [False] * 10 + [True] * 5, [True] * 30 + [False] * 10 + [False] * 5)
    >>> d["n"], d["a_only"], d["b_only"], round(d["difference"], 3), d["ci"]
    (45, 5, 0, 0.111, [0.0084, 0.2156])
"""

from __future__ import annotations

import math

from ..config import SOLO_METHODS
from .runner import mean_ci, wilson

DEFAULT_COMPARISONS = (("blendin", "base"), ("blendin", "switch"), ("blendin", "nudging"))  # against the base alone first: does guidance help?


def paired_difference(a: list, b: list, z: float = 1.96) -> dict:
    """Score of ``a`` minus score of ``b`` over paired items (``a[i]`` and ``b[i]`` are one item):
    booleans (right/wrong) or numbers (graded). Returns n, the difference and its 95% interval, and
    for booleans the items only ``a`` got right (``a_only``) and only ``b`` did (``b_only``)."""
    n = len(a)
    if n == 0:
        return {"n": 0, "difference": None, "ci": None, "a_only": None, "b_only": None}
    if all(isinstance(x, bool) for x in (*a, *b)):
        both = sum(x and y for x, y in zip(a, b))
        a_only = sum(x and not y for x, y in zip(a, b))
        b_only = sum(y and not x for x, y in zip(a, b))
        return {"n": n, "difference": (a_only - b_only) / n, "ci": newcombe(both, a_only, b_only, n - both - a_only - b_only, z),
                "a_only": a_only, "b_only": b_only}
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    return {"n": n, "difference": sum(diffs) / n, "ci": mean_ci(diffs, z), "a_only": None, "b_only": None}


def newcombe(both: int, a_only: int, b_only: int, neither: int, z: float = 1.96) -> list[float]:
    """95% interval of p_a - p_b for paired right/wrong answers (Newcombe 1998, method 10).

    ``both``: items right under both; ``a_only``/``b_only``: right under one only; ``neither``."""
    n = both + a_only + b_only + neither
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson(both + a_only, n, z)
    l2, u2 = wilson(both + b_only, n, z)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    # the correlation of the two answers, with Newcombe's continuity correction (positive only past n/2)
    phi = ((cross - n / 2 if cross > n / 2 else 0.0) if cross >= 0 else cross) / math.sqrt(margins) if margins else 0.0
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    d = p1 - p2
    return [round(max(-1.0, d - lower), 4) + 0.0, round(min(1.0, d + upper), 4) + 0.0]


def config_name(row: dict) -> str:
    """A configuration as tables name it: the method, with gamma where it has one, alpha where fixed."""
    if row["method"] in SOLO_METHODS:
        return row["method"]
    alpha = f" a{row['alpha']}" if row["method"] == "blendin" and row["alpha"] != "auto" else ""
    return f"{row['method']} g{row['gamma']}{alpha}"


def compare_methods(rows: list[dict], pairs=DEFAULT_COMPARISONS) -> list[dict]:
    """Per task and (method a, method b) in ``pairs``: each configuration of a against each of b that
    shares its gamma (base and guide have none and pair with any), paired by item id."""
    out = []
    by_config: dict[tuple, dict] = {}
    for r in rows:
        if not r.get("error") and r.get("score") is not None:
            by_config.setdefault((r["task"], r["method"], r["gamma"], r["alpha"]), {})[r["id"]] = r
    for task in dict.fromkeys(r["task"] for r in rows):
        for ma, mb in pairs:
            for (ta, xa, ga, aa), ra in by_config.items():
                if (ta, xa) != (task, ma):
                    continue
                for (tb, xb, gb, ab), rb in by_config.items():
                    if (tb, xb) != (task, mb) or (ga != gb and ma not in SOLO_METHODS and mb not in SOLO_METHODS):
                        continue
                    ids = [i for i in ra if i in rb]
                    score = lambda r: r["correct"] if isinstance(r.get("correct"), bool) else r["score"]
                    d = paired_difference([score(ra[i]) for i in ids], [score(rb[i]) for i in ids])
                    out.append({"task": task, "a": config_name(next(iter(ra.values()))), "b": config_name(next(iter(rb.values()))), **d})
    return out


def paired_markdown(comparisons: list[dict]) -> str:
    """One row per comparison (with a run column when the objects carry "run")."""
    runs = any("run" in c for c in comparisons)
    head = "| task | a | b | n | a - b | 95% CI | only a right | only b right |"
    lines = [("| run " if runs else "") + head, "|" + "---|" * (8 + runs)]
    for c in comparisons:
        diff = "-" if c["difference"] is None else f"{c['difference']:+.3f}"
        ci = "-" if c["ci"] is None else f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
        only = lambda x: "-" if x is None else str(x)
        lines.append((f"| {c['run']} " if runs else "") + f"| {c['task']} | {c['a']} | {c['b']} | {c['n']} | {diff} | {ci} | "
                     f"{only(c['a_only'])} | {only(c['b_only'])} |")
    return "\n".join(lines)
