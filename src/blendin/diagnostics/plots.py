"""PNG plots from eval run folders (their results.jsonl), re-made without re-running models.

    written = report(["runs/gsm8k", "runs/gsm8k-other-pair"], "report/")

- score_vs_interventions.png: one point per configuration and run (pair): the paper's diagnostic,
  where a higher intervention rate goes with a lower score;
- alpha_hist.png: the weights BlendIn gave the guide, over every intervention;
- interventions_by_correctness.png: each sample's intervention rate, split by right and wrong answers;
- guides.png and guides.md, for runs that record their guides: each guide's interventions, passes,
  passes saved and mean reliability, per run and configuration.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..eval.runner import read_rows, summarise


def report(run_dirs: list[str], out_dir: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install matplotlib (in a blendin checkout: .venv/bin/pip install -e '.[report]')") from None
    runs = {}
    for d in run_dirs:
        rows = read_rows(Path(d) / "results.jsonl")
        if not rows:
            raise ConfigError(f"{d} has no results.jsonl rows: pass folders written by blendin eval --out")
        runs[Path(d).name or d] = rows
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in runs.items():
        points = [s for s in summarise(rows) if s["score"] is not None]
        ax.scatter([100 * s["intervention_rate"] for s in points], [s["score"] for s in points], label=name)
        for s in points:
            ax.annotate(f"{s['method']} {s['gamma']}" if s["method"] not in ("base", "guide") else s["method"],
                        (100 * s["intervention_rate"], s["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(20, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="intervention rate (%)", ylabel="score", title="score against intervention rate")
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "score_vs_interventions.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for name, rows in runs.items():
        alphas = [a for r in rows if r["method"] == "blendin" for a in r.get("alphas", [])]
        if alphas:
            ax.hist(alphas, bins=20, range=(0, 1), alpha=0.6, label=f"{name} ({len(alphas)} interventions)")
            drawn += 1
    ax.set(xlabel="alpha (the guide's weight)", ylabel="interventions", title="BlendIn's alpha")
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no BlendIn interventions in these runs", ha="center", transform=ax.transAxes)
    written.append(_save(fig, out / "alpha_hist.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    groups, labels = [], []
    for name, rows in runs.items():
        for ok in (True, False):
            groups.append([100 * r["intervention_rate"] for r in rows if r["method"] == "blendin" and r["correct"] is ok])
            labels.append(f"{name}\n{'right' if ok else 'wrong'}")
    ax.boxplot([g if g else [float("nan")] for g in groups])
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set(ylabel="intervention rate per sample (%)", title="BlendIn: interventions on right and wrong answers")
    written.append(_save(fig, out / "interventions_by_correctness.png"))
    table = guide_table(runs)
    if table:
        written += _guides_plot(plt, table, out)
    return written


def guide_table(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per run, configuration and guide: interventions, passes, passes saved, reliability."""
    out = []
    for name, rows in runs.items():
        for s in summarise(rows):
            for g in s.get("guides") or ():
                out.append({"run": name, "config": f"{s['method']} {s['gamma']}", **g})
    return out


def _guides_plot(plt, table: list[dict], out: Path) -> list[Path]:
    lines = ["| run | config | guide | interventions | passes | passes saved | answers retired in | mean reliability |", "|" + "---|" * 8]
    lines += [f"| {t['run']} | {t['config']} | {t['guide']} | {t['interventions']} | {t['passes']} | {t['passes_saved']} | "
              f"{t['retired']} | {t['reliability']:.2f} |" for t in table]
    md = out / "guides.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * len(table)))
    labels = [f"{t['run']} · {t['guide']}" for t in table]
    ax.barh(range(len(table)), [t["interventions"] for t in table], color="tab:blue", label="interventions")
    ax.barh(range(len(table)), [t["passes_saved"] for t in table], left=[t["interventions"] for t in table], color="tab:grey",
            label="passes saved (retired)")
    ax.set_yticks(range(len(table)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="tokens", title="each guide's interventions")
    ax.legend(fontsize=8)
    return [_save(fig, out / "guides.png"), md]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
