"""Issue 35's measurement: BlendIn with a reliability profile, fitted on items 1-50, scored on 51-200.

    python benchmarks/profile_study.py fit --out runs/profiles35     # a profile per cell, from the kept rows' items 1-50
    python benchmarks/profile_study.py table --out runs/profiles35   # the table on items 51-200
    python benchmarks/profile_study.py members                       # does a blend beat both its members? (all kept items)
    python benchmarks/profile_study.py check --task T --rows DIR...  # the same on items 51-200 of rows decoded apart

The evidence is the per-item rows kept under docs/pairs/ (the four pairs' base, guide alone and
BlendIn on the first 200 items of each task, decoded greedily: decoding them again gives the same
rows). ``fit`` builds each cell's profile exactly as ``blendin diagnose --save-profile`` does
(``eval.profiling.build_profile``) from the rows of items 1-50, and writes it to OUT/<task>/<cell>.json.
"BlendIn with the profile" on items 51-200 is then, per cell:

    every guide weighed 1   BlendIn's own rows (a profile of 1 decodes bit for bit as none: tested)
    every guide weighed 0   the base alone's rows (no guide is consulted: tested)
    anything else           an eval run with --profile, which ``fit`` prints the command for (its
                            rows under OUT/eval/<task>/); ``table`` says which are still missing

``table`` prints, per cell, the scores on items 51-200 and the paired differences (95% Newcombe
intervals), the items lost net against the base alone, the share of BlendIn's gain kept, and the
profile's decision against the sign of the full 200-item run (BlendIn minus the base alone).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = {"P1": ("gemma-3-270m", "smollm2-135m-instruct"), "P2": ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"),
         "P3": ("qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"), "P4": ("gemma-3-270m", "qwen2.5-coder-0.5b-instruct")}
TASKS = {"arc_challenge": "arc", "gsm8k": "gsm8k", "truthfulqa": "truthfulqa", "xstest": "xstest"}
BOTH = {"arc_challenge": ("gemma-3-270m", ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")),
        "truthfulqa": ("gemma-3-270m", ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"))}
FIT, LAST = 50, 200  # fit on the first 50 items, score on the next 150


def cells():
    """(task, cell name, base, guides, BlendIn rows' folder) of every cell with kept rows."""
    for task, short in TASKS.items():
        for name, (base, guide) in PAIRS.items():
            folder = _rows_folder(short, f"{base}+{guide}")
            if folder is not None:
                yield task, name, base, (guide,), folder
        if task in BOTH:
            base, guides = BOTH[task]
            folder = ROOT / "docs" / "pairs" / short / "both" / "rows" / "+".join((base, *guides))
            if (folder / "results.jsonl").exists():
                yield task, "P1+P4 both guides", base, guides, folder


def _rows_folder(short: str, pair: str) -> Path | None:
    for folder in (ROOT / "docs" / "pairs" / short / "rows" / pair, *sorted((ROOT / "docs" / "pairs" / short).glob(f"p*/rows/{pair}"))):
        if (folder / "results.jsonl").exists():
            return folder
    return None


def cell_files(out: str, task: str, name: str) -> tuple[Path, Path]:
    """(the cell's profile file, the folder its profiled BlendIn is decoded into) under ``out``."""
    slug = name.replace(" ", "_")
    return Path(out) / task / f"{slug}.json", Path(out) / "eval" / task / slug


def _ci(d: dict) -> str:
    """A paired difference and its interval, as the tables print it."""
    return f"{d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def positions(task: str, data: str) -> dict:
    """{item id: its place in the task file}."""
    from blendin.eval.tasks import get_task, item_id, load_items

    return {item_id(it): k for k, it in enumerate(load_items(get_task(task), data, LAST))}


def rows_of(folder: Path, method: str, place: dict) -> dict:
    """{place: row} of ``method`` in ``folder`` (the first 200 items, rows without an error)."""
    out = {}
    for line in (folder / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["method"] == method and not r.get("error") and r["id"] in place and place[r["id"]] < LAST:
            out[place[r["id"]]] = r
    return out


def runs_of(task: str, base: str, guides: tuple, folder: Path, place: dict) -> dict:
    """The rows a cell reads: base alone, each guide alone and its single-guide BlendIn (from the
    pair's own folder), and BlendIn with every guide (``folder``)."""
    short = TASKS[task]
    runs = {"base": None, "blend": rows_of(folder, "blendin", place)}
    for k, guide in enumerate(guides):
        single = _rows_folder(short, f"{base}+{guide}")
        runs[f"guide {k}"] = rows_of(single, "guide", place) or _guide_elsewhere(short, guide, place)
        runs[f"blend {k}"] = rows_of(single, "blendin", place)
        runs["base"] = runs["base"] or rows_of(single, "base", place)
    return runs


def _guide_elsewhere(short: str, guide: str, place: dict) -> dict:
    """A guide's rows alone from another pair with it (the grid ran each model alone once)."""
    for name, (base, g) in PAIRS.items():
        folder = _rows_folder(short, f"{base}+{g}") if g == guide else None
        if folder is not None and rows_of(folder, "guide", place):
            return rows_of(folder, "guide", place)
    return {}


def fit(a) -> int:
    from blendin.eval.profiling import build_profile

    for task, name, base, guides, folder in cells():
        place = positions(task, a.data)
        runs = runs_of(task, base, guides, folder, place)
        items = [i for i in range(FIT) if all(i in rows for rows in runs.values())]
        scores = {k: [runs[k][i]["correct"] for i in items] for k in ["base"] + [f"{p} {j}" for j in range(len(guides)) for p in ("guide", "blend")]}
        rates = {j: _rate([runs[f"blend {j}"][i] for i in items]) for j in range(len(guides))}
        profile = build_profile(base, list(guides), task, 0.4, "auto", scores, rates, {"items": f"1-{FIT}", "rows": str(folder.relative_to(ROOT))})
        path, decoded = cell_files(a.out, task, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        profile.save(path)
        print(f"{task} {name}: " + ", ".join(f"{g} r={r:.3f} ({e['decision']})" for g, r, e in zip(guides, profile.reliabilities, profile.evidence)))
        if any(0.0 < r < 1.0 for r in profile.reliabilities):
            pair = ["--base", base] + [x for g in guides for x in ("--guide", g)]
            kept = min(LAST, 1 + max(max(rows, default=0) for rows in runs.values()))  # the rows' items: 100 for some cells
            tokens = _max_new_tokens(folder, task)  # the rows' answer length, not eval's default: GSM8K's rows ran 512
            print("  decode: blendin eval --task", task, "--data", a.data, "--limit", kept, "--max-new-tokens", tokens,
                  "--method blendin --batch-size 96",
                  *pair, "--profile", path, "--out", decoded)
    return 0


def _max_new_tokens(folder: Path, task: str) -> int | None:
    """The answer length ``task``'s rows in ``folder`` were decoded with (its run.json); None without one."""
    from blendin.eval.grid import recorded_tasks

    return recorded_tasks(folder).get(task, {}).get("max_new_tokens")


def _rate(rows: list) -> float:
    tokens = sum(r["tokens"] for r in rows)
    return sum(r["interventions"] for r in rows) / tokens if tokens else 0.0


def table(a) -> int:
    from blendin.eval.compare import paired_difference
    from blendin.profile import Profile

    print(f"BlendIn with a profile fitted on items 1-{FIT}, scored on items {FIT + 1}-{LAST} (greedy, gamma 0.4, alpha auto)\n")
    print("| task | cell | r | n | base | guide alone | BlendIn | with profile | profile - base [95%] | net items | BlendIn - base [95%] | gain kept | decision | full run (200) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    missing = []
    for task, name, base, guides, folder in cells():
        place = positions(task, a.data)
        runs = runs_of(task, base, guides, folder, place)
        path, decoded = cell_files(a.out, task, name)
        profile = Profile.load(path)
        tokens, rows_tokens = _max_new_tokens(decoded, task), _max_new_tokens(folder, task)
        if tokens is not None and tokens != rows_tokens:
            missing.append(f"{task} {name} (decoded with {tokens} new tokens, its rows with {rows_tokens})")
            continue
        weighed = _profiled(profile, runs, decoded, place)
        if weighed is None:
            missing.append(f"{task} {name}")
            continue
        print(_line(task, name, profile, runs, weighed, paired_difference))
    if missing:
        print(f"\nnot decoded yet (run the commands `fit` printed): {', '.join(missing)}")
    return 0


def _profiled(profile, runs: dict, folder: Path, place: dict) -> dict | None:
    rs = profile.reliabilities
    if all(r == 1.0 for r in rs):
        return runs["blend"]
    if all(r == 0.0 for r in rs):
        return runs["base"]
    decoded = rows_of(folder, "blendin", place) if (folder / "results.jsonl").exists() else {}
    return decoded if all(i in decoded for i in range(FIT, LAST) if i in runs["base"]) and decoded else None


def _line(task, name, profile, runs, weighed, paired) -> str:
    items = [i for i in range(FIT, LAST) if i in weighed and all(i in rows for rows in runs.values())]
    right = lambda rows: [bool(rows[i]["correct"]) for i in items]  # noqa: E731
    base, blend, with_p = right(runs["base"]), right(runs["blend"]), right(weighed)
    alone = max((right(runs[f"guide {k}"]) for k in range(len(profile.guides))), key=sum)
    p_b, b_b = paired(with_p, base), paired(blend, base)
    full = [i for i in range(LAST) if all(i in runs[k] for k in ("base", "blend"))]
    whole = paired([bool(runs["blend"][i]["correct"]) for i in full], [bool(runs["base"][i]["correct"]) for i in full])
    gain = f"{p_b['difference'] / b_b['difference']:.0%}" if b_b["ci"][0] > 0 else "-"
    sign = "helps" if whole["ci"][0] > 0 else "hurts" if whole["ci"][1] < 0 else "no clear effect"
    decisions = "/".join(e["decision"] for e in profile.evidence)
    mean = lambda xs: f"{sum(xs) / len(xs):.3f}"  # noqa: E731
    return (f"| {task} | {name} | {'/'.join(f'{r:.2f}' for r in profile.reliabilities)} | {len(items)} | {mean(base)} | {mean(alone)} | "
            f"{mean(blend)} | {mean(with_p)} | {_ci(p_b)} | {p_b['a_only'] - p_b['b_only']:+d} | {_ci(b_b)} | {gain} | {decisions} | "
            f"{sign} ({_ci(whole)}) |")


MEMBERS_HEADER = ("| task | cell | blend | n | base | guide alone | gap | blend | blend - base [95%] | blend - guide [95%] | beats both |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|")


def members(a) -> int:
    """BlendIn against each of its members alone: plain BlendIn on every kept item, BlendIn with the
    profile on the scored items (where decoded). The issue's "beyond any peer" target asks for a cell
    where the blend beats both past chance; "gap" is the members' distance (GaC and UniTE find an
    ensemble below its stronger member past about 10 points)."""
    from blendin.profile import Profile

    print(MEMBERS_HEADER)
    for task, name, base, guides, folder in cells():
        place = positions(task, a.data)
        runs = runs_of(task, base, guides, folder, place)
        print(_versus(task, name, "plain", range(LAST), runs, runs["blend"], len(guides)))
        path, decoded = cell_files(a.out, task, name)
        if path.exists():
            weighed = _profiled(Profile.load(path), runs, decoded, place)
            if weighed is not None:
                print(_versus(task, name, "profile", range(FIT, LAST), runs, weighed, len(guides)))
    return 0


def _versus(task, name, label, span, runs, blend_rows, n_guides) -> str:
    from blendin.eval.compare import paired_difference

    items = [i for i in span if i in blend_rows and all(i in rows for rows in runs.values())]
    right = lambda rows: [bool(rows[i]["correct"]) for i in items]  # noqa: E731
    alone = max((right(runs[f"guide {k}"]) for k in range(n_guides)), key=sum)
    blend, by_base = right(blend_rows), right(runs["base"])
    vs_base, vs_guide = paired_difference(blend, by_base), paired_difference(blend, alone)
    both = "yes" if vs_base["ci"][0] > 0 and vs_guide["ci"][0] > 0 else "no"
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return (f"| {task} | {name} | {label} | {len(items)} | {mean(by_base):.3f} | {mean(alone):.3f} | "
            f"{abs(mean(by_base) - mean(alone)) * 100:.0f} | {mean(blend):.3f} | {_ci(vs_base)} | {_ci(vs_guide)} | {both} |")


def check(a) -> int:
    """One pair's base alone, guide alone and BlendIn (with its profile) decoded apart, in one or more
    folders (a method's rows from the first folder that has them): BlendIn against both on items 51-200."""
    place = positions(a.task, a.data)
    runs = {}
    for key, method in (("base", "base"), ("guide 0", "guide"), ("blend", "blendin")):
        runs[key] = next((rows for rows in (rows_of(Path(f), method, place) for f in a.rows) if rows), {})
    print(MEMBERS_HEADER)
    print(_versus(a.task, a.cell, "profile", range(FIT, LAST), runs, runs["blend"], 1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("fit", "table", "members", "check"))
    ap.add_argument("--task", help="check: the task")
    ap.add_argument("--cell", default="-", help="check: the cell's name in the table")
    ap.add_argument("--rows", nargs="+", default=[], help="check: folders of results.jsonl")
    ap.add_argument("--out", default="runs/profiles35")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    a = ap.parse_args()
    return {"fit": fit, "table": table, "members": members, "check": check}[a.step](a)


if __name__ == "__main__":
    sys.exit(main())
