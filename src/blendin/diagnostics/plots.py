"""The report of eval run folders (their results.jsonl), re-made without re-running models.

    written = report(["runs/arc"], "report/")    # a grid folder (one sub-folder per pair), or run folders

A run is one pair's folder; a grid folder (``blendin eval --pair ... --out DIR``) stands for its
pairs, in the grid's order. Folders of the same name (one pair's grids of two tasks, say) are one
run, unless their run.json settings differ for a task (``run_folders``). Every figure has one panel
per task; a pair keeps its colour in every figure.

- tables.md: per task, pair x configuration: n, score and its 95% interval, intervention rate, mean alpha;
  for refusal tasks (XSTest) also right answers by the prompt's label (safe answered, unsafe refused);
- paired.md: per pair and task, method a against method b item by item (``eval.compare``): the
  difference, its 95% interval and the items only one of them got right;
- early_warning.md: per pair and task, BlendIn's intervention rate on the first 20 items (what
  ``blendin diagnose`` samples) and its verdict, beside the whole run's rate and score, and whether
  the rate on the sample ranks the pairs as their scores do (``eval.warning``);
- score_vs_interventions.png: score against intervention rate, a colour per pair, a marker per
  method, the 95% interval as an error bar; no text on the points (the legends name them), so
  nothing is written over anything else where points lie close; one model alone in two pairs (its
  rows copied) is set beside itself, and two guide-alone lines at one score alternate their dashes;
- alpha_hist.png: the weights BlendIn gave the guide, over every intervention, per pair;
- interventions_by_correctness.png: BlendIn's per-sample intervention rate on right and wrong answers;
- guides.png and guides.md, for runs that record their guides: each guide's interventions, passes,
  passes saved and mean reliability, per run and guided configuration (the guide alone blends nothing);
- with ``keep_rows``, rows/RUN/results.jsonl (and the run's run.json) and rows/summary.json: every
  row without the answer's text and the gold answer (``KEPT_OUT``), small enough to commit beside
  the report, and ``report(["DIR/rows"], ...)`` makes the same report from them, paired tables and
  plots included, once the run folders are gone.
"""

from __future__ import annotations

from pathlib import Path

from ..config import SOLO_METHODS
from ..errors import ConfigError
from ..jsonl import replace_file, rows_text
from ..eval.compare import DEFAULT_COMPARISONS, compare_methods, config_name, paired_markdown
from ..eval.grid import pair_folders, recorded_models, recorded_tasks, write_pairs_summary
from ..eval.runinfo import distinguishing, normalised, write_run_json
from ..eval.runner import interval, read_rows, row_key, summarise
from ..eval.warning import early_warnings, warning_markdown

# what rows/ leaves out: the answer's text (which may quote the benchmark's prompt) and the benchmark's
# gold answer; the scores, the model's extracted answer and the intervention record stay
KEPT_OUT = ("output", "gold")
MARKERS = {"base": "o", "guide": "s", "switch": "^", "nudging": "D", "blendin": "*"}


def run_folders(run_dirs: list[str]) -> dict[str, tuple[list[Path], dict]]:
    """{run name: (its folders, {task: settings})}, grid folders expanded into their pairs. Folders of
    one name are one run (one pair's grids of two tasks) unless their run.json settings differ for a
    task both hold (one pair with and without a mitigation, each in its own --out): the later one is
    then named by what it sets, ``PAIR~retire_below=0.5``, so neither's rows are dropped as the
    other's. Settings are compared as a resume compares them (``runinfo.normalised``); a folder
    without run.json says nothing, so it merges with any of its name."""
    runs: dict[str, tuple[list[Path], dict]] = {}
    for d in run_dirs:
        folders = pair_folders(Path(d))
        if not folders:
            raise ConfigError(f"{d} has no results.jsonl rows: pass folders written by blendin eval --out")
        for folder in folders:
            mine = {t: normalised(v) for t, v in recorded_tasks(folder).items()}
            name = folder.name or d
            while True:  # each turn adds a suffix that differs from the clashing run's settings: it ends
                theirs = runs.get(name, ([], {}))[1]
                clash = [t for t in mine if t in theirs and theirs[t] != mine[t]]
                if not clash:
                    break
                name = f"{name}~{distinguishing(theirs[clash[0]], mine[clash[0]])}"
            found, settings = runs.setdefault(name, ([], {}))
            found.append(folder)
            settings.update({t: v for t, v in mine.items() if t not in settings})
    return runs


def load_runs(found: dict[str, tuple[list[Path], dict]]) -> dict[str, list[dict]]:
    """{run name: rows} of ``run_folders``'s runs; rows of one run's folders merged (a row already
    there for the same task, configuration and item is kept, the later one dropped)."""
    runs: dict[str, list[dict]] = {}
    for name, (folders, _) in found.items():
        have = runs.setdefault(name, [])
        for folder in folders:
            rows = read_rows(folder / "results.jsonl")
            if not rows:
                raise ConfigError(f"{folder} has no results.jsonl rows: pass folders written by blendin eval --out")
            seen = {row_key(r) for r in have}
            have += [r for r in rows if row_key(r) not in seen]
    return runs


def report(run_dirs: list[str], out_dir: str, comparisons=DEFAULT_COMPARISONS, keep_rows: bool = False) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install matplotlib (in a blendin checkout: .venv/bin/pip install -e '.[report]')") from None
    found = run_folders(run_dirs)
    runs = load_runs(found)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {name: summarise(rows) for name, rows in runs.items()}
    tasks = list(dict.fromkeys(s["task"] for ss in summaries.values() for s in ss))
    colours = {name: f"C{i % 10}" for i, name in enumerate(runs)}
    written = [_tables(summaries, tasks, out / "tables.md", runs)]
    paired = [{"run": name, **c} for name, rows in runs.items() for c in compare_methods(rows, comparisons)]
    (out / "paired.md").write_text((paired_markdown(paired) if paired else "no run has both methods of a comparison ("
                                    + ", ".join(f"{a}:{b}" for a, b in comparisons) + ")") + "\n", encoding="utf-8")
    written.append(out / "paired.md")
    warnings = early_warnings(runs)
    (out / "early_warning.md").write_text((warning_markdown(warnings) if warnings else "no run has BlendIn rows") + "\n",
                                          encoding="utf-8")
    written.append(out / "early_warning.md")
    written.append(_score_plot(plt, summaries, tasks, colours, out / "score_vs_interventions.png"))
    written.append(_alpha_plot(plt, runs, colours, out / "alpha_hist.png"))
    written.append(_correctness_plot(plt, runs, tasks, colours, out / "interventions_by_correctness.png"))
    table = guide_table(runs)
    if table:
        written += _guides_plot(plt, table, out)
    if keep_rows:
        written.append(_keep_rows(runs, summaries, {name: settings for name, (_, settings) in found.items()}, out / "rows"))
    return written


def _keep_rows(runs: dict, summaries: dict, recorded: dict[str, dict], path: Path) -> Path:
    """rows/RUN/results.jsonl without ``KEPT_OUT``, each run's run.json beside it (``recorded``: {run:
    {task: settings}}, every task of its folders), and rows/summary.json (the grid's form: its order is
    the report's, so a pair keeps its colour). Written to temporary names first: a report made from
    rows/ itself rewrites it from what it read."""
    for name, rows in runs.items():
        folder = path / name
        folder.mkdir(parents=True, exist_ok=True)
        replace_file(folder / "results.jsonl", rows_text({k: v for k, v in r.items() if k not in KEPT_OUT} for r in rows))
        if recorded.get(name):  # every task the run's folders recorded, not only the first folder's
            write_run_json(folder, recorded[name])
    write_pairs_summary(path / "summary.json", summaries, {name: recorded_models(path / name) for name in runs})
    return path


def refusal_split(rows: list[dict]) -> dict[str, dict[str, tuple[int, int]]]:
    """XSTest-style rows (``extracted`` refusal or compliance) by configuration: {config: {gold
    label: (right, n)}}: safe prompts answered, unsafe ones refused. One score hides which way a
    method goes wrong (a guide that never refuses, a base that refuses too much); this shows it."""
    out: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        if r.get("error") or r.get("extracted") not in ("refusal", "compliance"):
            continue
        cell = out.setdefault(config_name(r), {}).setdefault(_label(r), [0, 0])
        cell[0] += bool(r["correct"])
        cell[1] += 1
    return {c: {g: tuple(v) for g, v in sorted(golds.items())} for c, golds in out.items()}


def _label(row: dict) -> str:
    """The prompt's label: the row's gold, or (rows kept without it) what the verdict and its
    correctness imply: a right refusal was of an unsafe prompt, a wrong one of a safe prompt."""
    if row.get("gold") is not None:
        return str(row["gold"])
    return "unsafe" if (row["extracted"] == "refusal") == bool(row["correct"]) else "safe"


def _split_lines(runs: dict, task: str) -> list[str]:
    splits = {name: refusal_split([r for r in rows if r["task"] == task]) for name, rows in runs.items()}
    labels = sorted({g for sp in splits.values() for golds in sp.values() for g in golds})
    if not labels:
        return []
    lines = [f"{task} by the prompt's label (right: a safe prompt answered, an unsafe one refused):", "",
             "| pair | configuration | " + " | ".join(f"{g}: right" for g in labels) + " |", "|" + "---|" * (2 + len(labels))]
    for name, sp in splits.items():
        for config, golds in sp.items():
            cells = [f"{golds[g][0]}/{golds[g][1]}" if g in golds else "-" for g in labels]
            lines.append(f"| {name} | {config} | " + " | ".join(cells) + " |")
    return lines + [""]


def _tables(summaries: dict, tasks: list[str], path: Path, runs: dict) -> Path:
    lines = []
    for task in tasks:
        lines += [f"## {task}", "", "| pair | configuration | n | score | 95% CI | unparseable | interventions | mean alpha |",
                  "|" + "---|" * 8]
        for name, ss in summaries.items():
            for s in (s for s in ss if s["task"] == task):
                score = "-" if s["score"] is None else f"{s['score']:.3f}"
                alpha = "-" if s["mean_alpha"] is None else f"{s['mean_alpha']:.2f}"
                lines.append(f"| {name} | {config_name(s)} | {s['n']} | {score} | {interval(s['score_ci'])} | "
                             f"{'-' if s['unparseable'] is None else s['unparseable']} | {100 * s['intervention_rate']:.1f}% | {alpha} |")
        lines.append("")
        lines += _split_lines(runs, task)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _panels(plt, n: int, width: float, height: float, rows: bool = False):
    """``n`` panels side by side (or one above the other with ``rows``), as a flat list."""
    fig, axes = plt.subplots(n if rows else 1, 1 if rows else n, figsize=(width * (1 if rows else n), height * (n if rows else 1)),
                             squeeze=False)
    return fig, list(axes.flat)


def _score_plot(plt, summaries: dict, tasks: list[str], colours: dict, path: Path) -> Path:
    """The guide alone (100% interventions by definition) is a dashed line at its score, not a point
    far right: the guided methods' rates (a few to a few tens of percent) keep the whole width."""
    from matplotlib.lines import Line2D

    fig, axes = _panels(plt, max(1, len(tasks)), max(4.6, 10.0 / max(1, len(tasks))), 4.0)  # the legends need ~10 inches
    methods = []
    for ax, task in zip(axes, tasks or [None]):
        widest = 25.0
        seen: dict[tuple, int] = {}  # a point or line already drawn: how many times before

        def nth(key) -> int:
            seen[key] = seen.get(key, -1) + 1
            return seen[key]
        for name, ss in summaries.items():
            for s in (s for s in ss if s["task"] == task and s["score"] is not None):
                methods.append(s["method"])
                if s["method"] == "guide":
                    # two pairs with one guide (its rows copied) share the line: their dashes alternate
                    ax.axhline(s["score"], color=colours[name], linestyle=(4 * nth(("guide", s["score"])), (4, 4)), linewidth=1.2, alpha=0.8)
                    continue
                x, y = 100 * s["intervention_rate"], s["score"]
                # the same point again (one base alone in two pairs): set beside the first, not on it
                x += 0.8 * nth((s["method"], round(x, 1), round(y, 3)))
                widest = max(widest, 1.15 * x)
                ci = s["score_ci"] or [y, y]
                ax.errorbar(x, y, yerr=[[max(0.0, y - ci[0])], [max(0.0, ci[1] - y)]], fmt=MARKERS.get(s["method"], "x"),
                            color=colours[name], markersize=10 if s["method"] == "blendin" else 6, capsize=3, alpha=0.85)
        ax.axvline(20, color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(-1, widest)
        ax.set(xlabel="intervention rate (%)", ylabel="score", title=task or "no scored configurations")
    pairs = [Line2D([], [], color=c, marker="o", linestyle="", label=name) for name, c in colours.items()]
    marks = [Line2D([], [], color="black", marker=None if m == "guide" else MARKERS.get(m, "x"), linestyle="--" if m == "guide" else "",
                    label="guide alone" if m == "guide" else m) for m in dict.fromkeys(methods)]
    fig.legend(handles=pairs, loc="lower left", fontsize=8, title="pair", bbox_to_anchor=(0.0, 0.0), frameon=False)
    fig.legend(handles=marks, loc="lower right", fontsize=8, title="method", ncol=2, bbox_to_anchor=(1.0, 0.0), frameon=False)
    fig.suptitle("score against intervention rate (error bars: 95% interval; dotted: the paper's 20%)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.045 * max(len(pairs), (len(marks) + 1) // 2), 1, 1))
    return _save(fig, path, layout=False)


def _alpha_plot(plt, runs: dict, colours: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for name, rows in runs.items():
        alphas = [a for r in rows if r["method"] == "blendin" for a in r.get("alphas", [])]
        if alphas:
            ax.hist(alphas, bins=20, range=(0, 1), alpha=0.5, color=colours[name], label=f"{name} ({len(alphas)} interventions)")
            drawn += 1
    ax.set(xlabel="alpha (the guide's weight)", ylabel="interventions", title="BlendIn's alpha")
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no BlendIn interventions in these runs", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def _correctness_plot(plt, runs: dict, tasks: list[str], colours: dict, path: Path) -> Path:
    """Horizontal boxes, one row per pair and right/wrong, so the pairs' names never overlap."""
    n_rows = 2 * len(runs)
    fig, axes = _panels(plt, max(1, len(tasks)), 8.0, 0.9 + 0.32 * n_rows, rows=True)
    for ax, task in zip(axes, tasks or [None]):
        groups, labels, cols = [], [], []
        for name, rows in runs.items():
            for ok in (True, False):
                rates = [100 * r["intervention_rate"] for r in rows if r["task"] == task and r["method"] == "blendin" and r["correct"] is ok]
                groups.append(rates or [float("nan")])
                labels.append(f"{name} · {'right' if ok else 'wrong'} ({len(rates)})")
                cols.append(colours[name])
        boxes = ax.boxplot(groups, orientation="horizontal", patch_artist=True, widths=0.6)
        for patch, colour, label in zip(boxes["boxes"], cols, labels):
            patch.set(facecolor=colour, alpha=0.35 if "right" in label else 0.8)
        ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(20, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("BlendIn's intervention rate per sample (%)")
        ax.set_title(f"{task}: BlendIn, right and wrong answers", fontsize=10)
    return _save(fig, path, crop=True)  # a grid's pair names are long: the image takes their whole width


def guide_table(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per run, guided configuration and guide: interventions, passes, passes saved,
    reliability. The guide alone is left out: it blends nothing, so its 0 interventions and its
    reliability of 1.00 would read as a guide that was never needed and always right."""
    out = []
    for name, rows in runs.items():
        for s in summarise(rows):
            if s["method"] in SOLO_METHODS:
                continue
            for g in s.get("guides") or ():
                out.append({"run": name, "config": f"{s['method']} {s['gamma']}", **g})
    return out


def _guides_plot(plt, table: list[dict], out: Path) -> list[Path]:
    lines = ["| run | config | guide | interventions | passes | passes saved | answers retired in | mean reliability |", "|" + "---|" * 8]
    lines += [f"| {t['run']} | {t['config']} | {t['guide']} | {t['interventions']} | {t['passes']} | {t['passes_saved']} | "
              f"{t['retired']} | {t['reliability']:.2f} |" for t in table]
    md = out / "guides.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # a run's name is a pair's folder name (two or three model names): it gets a line of its own, and
    # the image is cropped to what is drawn, so no label runs off the left edge
    labels = [f"{t['run']}\n{t['config']} · {t['guide']}" for t in table]
    widest = max(len(line) for label in labels for line in label.split("\n"))
    fig, ax = plt.subplots(figsize=(4.0 + 0.07 * widest, 1.4 + 0.5 * len(table)))
    ax.barh(range(len(table)), [t["interventions"] for t in table], color="tab:blue", label="interventions")
    ax.barh(range(len(table)), [t["passes_saved"] for t in table], left=[t["interventions"] for t in table], color="tab:grey",
            label="passes saved (retired)")
    ax.set_yticks(range(len(table)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="tokens", title="each guide's interventions")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=2, frameon=False)  # above the bars, not on them
    return [_save(fig, out / "guides.png", crop=True), md]


def _save(fig, path: Path, layout: bool = True, crop: bool = False) -> Path:
    """``crop``: the saved image is the figure's drawn extent (long tick labels included) rather than its size."""
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=110, **({"bbox_inches": "tight", "pad_inches": 0.1} if crop else {}))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
