"""PNG plots from eval run folders (their results.jsonl), re-made without re-running models.

    written = report(["runs/gsm8k", "runs/gsm8k-other-pair"], "report/")

- score_vs_interventions.png: one point per configuration and run (pair): the paper's diagnostic,
  where a higher intervention rate goes with a lower score;
- alpha_hist.png: the weights BlendIn gave the guide, over every intervention;
- interventions_by_correctness.png: each sample's intervention rate, split by right and wrong answers.
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
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
