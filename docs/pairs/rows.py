"""The README's counts that `blendin report` does not print, made again from the rows kept here.

    python docs/pairs/rows.py changes docs/pairs/arc/rows/*/          # how each guided method changed the base's answer
    python docs/pairs/rows.py paired A_FOLDER:METHOD B_FOLDER:METHOD   # two runs' methods, paired by item
    python docs/pairs/rows.py follows BOTH_FOLDER GUIDE_FOLDER...      # whose answer a several-guide run gave
    python docs/pairs/rows.py unanswered FOLDER DATA.jsonl --limit 100 > OUT.jsonl   # the items a guided method left without an answer

A FOLDER is a run folder of `blendin eval` or its copy under docs/pairs/*/rows; only rows without an
error count. `paired` uses the report's own interval (blendin.eval.compare.paired_difference).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from blendin.eval.compare import paired_difference
from blendin.jsonl import read_rows

GUIDED = ("blendin", "switch", "nudging")


def by_id(folder: str, method: str) -> dict:
    """{item id: row} of ``method`` in ``folder``."""
    return {r["id"]: r for r in read_rows(Path(folder) / "results.jsonl") if r["method"] == method and not r.get("error")}


def changes(folders: list[str]) -> None:
    for folder in folders:
        base = by_id(folder, "base")
        print(Path(folder).name)
        for method in GUIDED:
            rows = by_id(folder, method)
            changed = [(base[i], r) for i, r in rows.items() if i in base and r["extracted"] != base[i]["extracted"]]
            print(f"  {method}: n={len(rows)} changed {len(changed)} "
                  f"(right -> wrong {sum(b['correct'] and not r['correct'] for b, r in changed)}, "
                  f"wrong -> right {sum(r['correct'] and not b['correct'] for b, r in changed)}, "
                  f"to none {sum(r['extracted'] is None for _, r in changed)}); unparseable "
                  f"{sum(r['extracted'] is None for r in rows.values())}")


def paired(a: str, b: str) -> None:
    (fa, ma), (fb, mb) = a.rsplit(":", 1), b.rsplit(":", 1)
    ra, rb = by_id(fa, ma), by_id(fb, mb)
    ids = sorted(set(ra) & set(rb), key=str)
    d = paired_difference([ra[i]["correct"] for i in ids], [rb[i]["correct"] for i in ids])
    print(f"n={d['n']} a - b {d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] "
          f"only a right {d['a_only']}, only b right {d['b_only']}")


def follows(both: str, singles: list[str]) -> None:
    rows = by_id(both, "blendin")
    for folder in singles:
        single = by_id(folder, "blendin")
        same = sum(single[i]["extracted"] == r["extracted"] for i, r in rows.items() if i in single)
        print(f"{Path(folder).name}: the same answer on {same} of {len(rows)}")


def unanswered(folder: str, data: str, limit: int) -> None:
    ids = {r["id"] for m in GUIDED for r in by_id(folder, m).values() if r["extracted"] is None}
    with open(data) as f:
        for k, line in enumerate(f):
            if k >= limit:
                break
            if json.loads(line).get("id") in ids:
                sys.stdout.write(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("changes").add_argument("folders", nargs="+")
    s = sub.add_parser("paired")
    s.add_argument("a")
    s.add_argument("b")
    s = sub.add_parser("follows")
    s.add_argument("both")
    s.add_argument("singles", nargs="+")
    s = sub.add_parser("unanswered")
    s.add_argument("folder")
    s.add_argument("data")
    s.add_argument("--limit", type=int, default=200)
    args = p.parse_args()
    if args.what == "changes":
        changes(args.folders)
    elif args.what == "paired":
        paired(args.a, args.b)
    elif args.what == "follows":
        follows(args.both, args.singles)
    else:
        unanswered(args.folder, args.data, args.limit)


if __name__ == "__main__":
    main()
