"""Several pairs in one evaluation grid: ``blendin eval --pair BASE:GUIDE --pair ... --out DIR``.

    DIR/<label>/       one run folder per pair, exactly what a one-pair run writes to its --out
                       (results.jsonl, run.json, summary.json); <label> is ``PairSpec.label``
    DIR/summary.json   every pair's summary objects, each with "pair" (the label), "base" and
                       "guide_models", rewritten as each pair's task finishes

A pair is ``BASE:GUIDE``, or ``BASE:GUIDE1,GUIDE2`` for several guides; a guide may be ``MODEL@URL``
(on a server), as for ``--guide``. Pairs run one after another, each loaded once for all its tasks.

A configuration that runs one model alone (the ``base`` method, the ``guide`` method) writes the
same answers whatever the other model of the pair is: a pair whose base (or guide) another pair of
this grid folder already ran alone (in this run or an earlier one), under the same task settings,
gets those rows copied (``"reused_from"``: the
pair that decoded them) instead of decoding them again. The settings compared are the pair's
run.json entry for the task without the other model's fields (``OTHER_SIDE``); any other difference
(answer length, prompt, placement of that model, ...) means the rows are decoded afresh.

    >>> spec = parse_pair("qwen2.5-coder-1.5b-instruct:smollm2-135m-instruct")
    >>> spec.base, spec.guides, spec.label
    ('qwen2.5-coder-1.5b-instruct', ('smollm2-135m-instruct',), 'qwen2.5-coder-1.5b-instruct+smollm2-135m-instruct')
    >>> parse_pair("meta-llama/Llama-3.1-8B:a.gguf,m@http://h:8000/v1").label
    'meta-llama--Llama-3.1-8B+a+m'
"""

from __future__ import annotations

import gc
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import ResultWriter, read_rows, replace_file
from . import runner
from .runinfo import normalised
from .runner import key, markdown, row_key, summarise
from .tasks import item_id

PAIR_EXAMPLE = "--pair qwen2.5-coder-1.5b-instruct:qwen2.5-coder-0.5b-instruct"
# run.json fields a model alone never reads, per solo method: the other model's side, and the
# guidance settings (mitigations, nudging's drafts) that only act where base and guide meet
_GUIDANCE = ("more_guides", "max_intervention_rate", "agreement_top_k", "reliability", "retire_below", "retire_after",
             "capability_gap", "nudge_chunk")
OTHER_SIDE = {
    "base": ("guide", "guide_remote", "placement.guide", *_GUIDANCE),
    "guide": ("base", "base_remote", "placement.base", *_GUIDANCE),
}


@dataclass(frozen=True)
class PairSpec:
    """One pair of a grid: the base's model spec and the guides' (``MODEL@URL`` for one on a server)."""

    base: str
    guides: tuple[str, ...]

    @property
    def label(self) -> str:
        """The pair's folder name: each model's name, joined by '+' (a Hugging Face id's '/' as '--')."""
        return "+".join(_slug(m) for m in (self.base, *self.guides))


def _slug(spec: str) -> str:
    model = spec.split("@http", 1)[0]  # MODEL@URL: the model's name
    if model.endswith(".gguf") or model.startswith(("/", ".", "~")):
        model = Path(model).stem if model.endswith(".gguf") else Path(model).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model.replace("/", "--")).strip("-") or "model"


def parse_pair(text: str) -> PairSpec:
    base, colon, guides = text.partition(":")
    names = tuple(g.strip() for g in guides.split(",")) if colon else ()
    if not base.strip() or not names or not all(names):
        raise ConfigError(f"--pair {text!r}: write BASE:GUIDE, e.g. {PAIR_EXAMPLE} (several guides: BASE:GUIDE1,GUIDE2)")
    return PairSpec(base.strip(), names)


def parse_pairs(texts: list[str]) -> list[PairSpec]:
    """The grid's pairs, in order; a pair given twice, or two pairs sharing a folder name, is refused."""
    specs, seen = [], {}
    for text in texts:
        spec = parse_pair(text)
        if spec.label in seen:
            same = seen[spec.label] == spec
            raise ConfigError(f"--pair {text}: " + ("given twice" if same else f"its folder name {spec.label} is {seen[spec.label]}'s too")
                              + "; give each pair once")
        seen[spec.label] = spec
        specs.append(spec)
    return specs


def reuse_solo(out: Path, label: str, others: list[str], task, configs, settings: dict, ids) -> int:
    """Copy into ``out/label`` the rows of the solo configurations (base, guide) that other pairs of
    this grid folder (``others``: their labels) decoded under the same settings for ``task``,
    for the items of this run (``ids``) that this pair does not have yet. ``settings``: this pair's
    run.json entry for the task. Returns the rows copied. Call after this pair's run.json is recorded."""
    ids = set(ids)
    here = out / label / "results.jsonl"
    done = {row_key(r) for r in read_rows(here)}
    copied = []
    for config in configs:
        if config.method not in OTHER_SIDE:
            continue
        for other in others:
            theirs = normalised(recorded_tasks(out / other).get(task.name))  # compared as a resume compares
            if theirs is None or _without(theirs, OTHER_SIDE[config.method]) != _without(settings, OTHER_SIDE[config.method]):
                continue
            for row in read_rows(out / other / "results.jsonl"):
                k = row_key(row)
                if k[:4] == (task.name, *key(config)) and k[4] in ids and k not in done and not row.get("error"):
                    done.add(k)
                    copied.append({**row, "reused_from": row.get("reused_from") or other})
    if copied:
        writer = ResultWriter(str(here))
        try:
            for row in copied:
                writer.write(row)
        finally:
            writer.close()
    return len(copied)


def recorded_models(folder: Path) -> tuple[str | None, list[str]]:
    """(base, guides) as a pair folder's run.json records them (its first task's entry)."""
    try:
        first = next(iter(json.loads((folder / "run.json").read_text(encoding="utf-8"))["tasks"].values()))
        return first["base"], [first["guide"], *(g["model"] for g in first.get("more_guides") or ())]
    except (OSError, ValueError, KeyError, AttributeError, StopIteration, TypeError):
        return None, []


def recorded_tasks(folder: Path) -> dict[str, dict]:
    """{task: settings} as a folder's run.json records them; {} where it has none (or an unreadable one)."""
    try:
        tasks = json.loads((folder / "run.json").read_text(encoding="utf-8"))["tasks"]
        return tasks if isinstance(tasks, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _without(settings: dict, names) -> dict:
    """``settings`` without the dotted ``names`` ('placement.guide'), copied (the input is kept)."""
    out = json.loads(json.dumps(settings))
    for name in names:
        *parents, last = name.split(".")
        node = out
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def write_grid_summary(out: Path, specs: list[PairSpec]) -> list[dict]:
    """``out/summary.json``: every pair's summary objects (all tasks), each keyed by its pair: the
    pairs of ``specs`` (this run's) first, then any other pair folder in ``out`` (an earlier run's;
    its models as its run.json records them)."""
    models = {spec.label: (spec.base, list(spec.guides)) for spec in specs}
    folders = [out / spec.label for spec in specs] + [p for p in pair_folders(out) if p != out and p.name not in models]
    return write_pairs_summary(out / "summary.json", {f.name: summarise(read_rows(f / "results.jsonl")) for f in folders},
                               {f.name: models.get(f.name) or recorded_models(f) for f in folders})


def write_pairs_summary(path: Path, summaries: dict[str, list[dict]], models: dict[str, tuple]) -> list[dict]:
    """``path`` (a grid's summary.json), whole or not at all: each pair's summary objects in the
    order of ``summaries`` ({pair: summarise's list}), each with "pair", "base" and "guide_models"
    (``models``: {pair: (base, guides)}); ``pair_folders`` reads the pairs' order back from it."""
    summary = [{"pair": name, "base": models[name][0], "guide_models": models[name][1], **s}
               for name, ss in summaries.items() for s in ss]
    replace_file(path, json.dumps(summary, indent=2))
    return summary


def pair_folders(path: Path) -> list[Path]:
    """The run folders under ``path``: itself when it holds results, else its pair folders (a grid)."""
    if (path / "results.jsonl").exists():
        return [path]
    if not path.is_dir():
        return []
    found = {p.name: p for p in path.iterdir() if p.is_dir() and (p / "results.jsonl").exists()}
    try:  # the grid's order (its summary's), then any other folder by name
        order = [s["pair"] for s in json.loads((path / "summary.json").read_text(encoding="utf-8"))]
    except (OSError, ValueError, KeyError, TypeError):
        order = []
    order = list(dict.fromkeys(o for o in order if o in found))
    return [found[n] for n in order] + [found[n] for n in sorted(found) if n not in order]


def run_plans(plans: list, items: dict, out: Path, methods: tuple, batch_size: int = 16, traces: str | None = None,
              progress=sys.stderr, together: bool = False, retry_errors: bool = False) -> int:
    """Run ``plans`` (``(PairSpec or None, run folder, [(task, configs, judge)])``, checked by the
    caller), one pair loaded at a time; print the summary table; return the samples that failed.
    ``PairSpec`` None: a one-pair run straight into its folder, as before grids. ``together``: as
    ``runner.run_eval``'s (a task's configurations share one batch). ``retry_errors``: the samples
    that failed in an earlier run are decoded again (``runner.forget_failures``)."""
    from ..pair import load_pair
    from .runinfo import record_run, run_settings

    specs = [spec for spec, _, _ in plans if spec is not None]
    folder_summary: list[dict] = []
    for n, (spec, folder, jobs) in enumerate(plans, 1):
        label = f"[pair {n}/{len(plans)} {spec.label}] " if spec else ""
        # every other pair folder in the grid, this run's and earlier runs' alike: the settings decide
        others = [p.name for p in pair_folders(out) if p != out and p.name != (spec.label if spec else None)]
        for task, configs, judge in jobs:
            record_run(folder, task, configs, judge)
            dropped = runner.forget_failures(folder, task.name, unavailable_only=not retry_errors)
            if dropped and progress is not None:
                why = "" if retry_errors else " (a model did not answer)"
                print(f"blendin: {label}{task.name}: {dropped} failed samples of an earlier run{why} will be decoded again",
                      file=progress, flush=True)
            if spec is not None:
                copied = reuse_solo(out, spec.label, others, task, configs, run_settings(task, configs[0], judge),
                                    [item_id(it) for it in items[task.name]])
                if copied and progress is not None:
                    print(f"blendin: {label}{task.name}: {copied} answers of a model alone copied from another pair "
                          "with the same model and settings", file=progress, flush=True)
        pair = None
        if any(_remaining(folder, task, configs, items[task.name]) for task, configs, _ in jobs):
            pair = load_pair(jobs[0][1][0], methods=methods)
        for task, configs, judge in jobs:
            if pair is not None:
                runner.run_eval(pair, task, items[task.name], configs, folder, batch_size=batch_size, progress=progress, judge=judge,
                         traces=traces, label=label, together=together)
            if specs:
                write_grid_summary(out, specs)
        # every task's, whether or not anything was left to decode: a resume with nothing left, or
        # rows copied from other pairs, leave a summary.json that run_eval never rewrote
        folder_summary = runner.write_summary(folder)
        del pair
        gc.collect()  # one pair's weights leave before the next pair's load
    names = {task.name for _, _, jobs in plans for task, _, _ in jobs}
    summary = write_grid_summary(out, specs) if specs else folder_summary
    summary = [s for s in summary if s["task"] in names]
    print(markdown(summary))
    return sum(s.get("errors", 0) for s in summary)


def _remaining(folder: Path, task, configs, items: list[dict]) -> int:
    """How many (configuration, item) answers ``folder`` still lacks for ``task``."""
    done = {row_key(r) for r in read_rows(folder / "results.jsonl")}
    return sum((task.name, *key(c), item_id(it)) not in done for c in configs for it in items)
