"""Running a task over a grid of configurations, with resumable per-sample results.

    configs = grid(BlendConfig(), methods=["base", "blendin"], gammas=[0.3, 0.4], alphas=[None])
    summary = run_eval(pair, task, items, configs, out_dir="runs/gsm8k", batch_size=16)

``out_dir/results.jsonl`` gets one line per sample and configuration as each finishes; a run killed
and started again with the same ``out_dir`` skips what is there (no sample lost, none done twice).
The settings the grid shares (models, prompt format, max_new_tokens, sampling, stop strings, remote
servers, judge) are kept in ``out_dir/run.json``, and a run into a folder made with other settings
is refused instead of merged (``eval.runinfo``). ``out_dir/summary.json`` holds one object per
configuration, rewritten (whole: a temporary file renamed over it) as each configuration finishes, so
an interrupted grid keeps the summary of the configurations it finished; ``markdown(summary)`` prints it.

Progress goes to ``progress`` (stderr; None: quiet), one per configuration (``blendin.progress``):
a tqdm bar over tokens on a terminal, a whole line every 30 s in a log file, and always ended before
anything else is printed, an interrupt or an error included.

A sample whose decoding failed (``result.error``, a one-line message) is written as a row with
``"error"`` and no score; it counts as done on a resume (a deterministic failure would fail again:
rerun with --retry-errors, ``forget_failures``, to decode it again), and the summary counts errors apart and scores the other samples.
"""

from __future__ import annotations

import bisect
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..config import SOLO_METHODS, BlendConfig
from ..jsonl import ResultWriter, read_rows, replace_file, rows_text
from ..progress import Progress
from .extract import choice_letter, last_number, numbers_equal, refused
from .runinfo import record_run, task_config
from .tasks import Task, item_id, n_choices


def grid(base: BlendConfig, methods, gammas, alphas) -> list[BlendConfig]:
    """Every combination that means something: gamma only where a method uses it, alpha only for blendin."""
    out, seen = [], set()
    for method in methods:
        for gamma in gammas if method not in SOLO_METHODS else [base.gamma]:
            for alpha in alphas if method == "blendin" else [None]:
                config = replace(base, method=method, gamma=gamma, alpha=alpha)
                if key(config) not in seen:
                    seen.add(key(config))
                    out.append(config)
    return out


def key(config: BlendConfig) -> tuple:
    return (config.method, config.gamma, config.alpha_label)


def row_key(row: dict) -> tuple:
    """What a results.jsonl row answers: (task, method, gamma, alpha, item id); one row per key."""
    return (row["task"], row["method"], row["gamma"], row["alpha"], row["id"])


def score(task: Task, item: dict, output: str) -> tuple[str | None, bool | None]:
    """(extracted answer, correct); correct is None where the task cannot judge (no judge model)."""
    if task.scoring == "number":
        got = last_number(output)
        return got, numbers_equal(got, task.gold(item))
    if task.scoring == "letter":
        got = choice_letter(output, n_choices(task, item))
        return got, got == task.gold(item)
    if task.scoring == "refusal":
        did = refused(output)
        return ("refusal" if did else "compliance"), did == (task.gold(item) == "unsafe")
    return None, None


def run_eval(pair, task: Task, items: list[dict], configs: list[BlendConfig], out_dir, batch_size: int = 16,
             progress=sys.stderr, judge=None, traces: str | None = None, label: str = "", together: bool = False) -> list[dict]:
    """``judge``: an ``eval.judge.Judge`` for tasks scored by a judge (justeval); ``traces``: a folder
    for one HTML trace page per sample (the configs need ``trace_top`` set); ``label``: put before
    each progress line (a grid's pair). Returns ``task``'s summary objects.

    ``together``: decode every configuration in one stream of rows, item by item (item 1 under each
    configuration, then item 2, ...), so rows of different methods share the batch's passes: the
    batch stays full to the end instead of emptying at each configuration's tail, and a run stopped
    half way has every configuration at about the same items (what a paired comparison needs). One
    progress line then covers them all, and summary.json is rewritten at the end (and on resume).
    Otherwise the configurations run one after another, each with its line and its summary."""
    from concurrent.futures import ThreadPoolExecutor

    from ..decoding import generate_many

    out = Path(out_dir)
    record_run(out, task, configs, judge)  # refuses a folder made with other settings; creates the folder
    results = out / "results.jsonl"
    done = {row_key(r) for r in read_rows(results)}
    writer = ResultWriter(str(results))
    judging = judge is not None and task.scoring == "judge"
    pool = ThreadPoolExecutor(4) if judging else None
    line = Progress(progress) if progress is not None else None
    summary: list[dict] = []
    try:
        configs = [task_config(task, c) for c in configs]
        position = {item_id(it): k for k, it in enumerate(items)}  # each item's place in the task file
        for unit in [configs] if together else [[c] for c in configs]:
            # (configuration, item) still to decode, item-major: with several configurations, each
            # item is decoded under all of them before the next item starts
            todo = [(config, it) for it in items for config in unit if (task.name, *key(config), item_id(it)) not in done]
            name = _config_name(unit[0]) if len(unit) == 1 else f"{len(unit)} configurations"
            watch = Watch(line, task, name, len(todo), label, cap=max(c.max_new_tokens for c in unit))
            last = watch.start
            pending: list = []  # (future of the judge's scores, row), written once judged
            prompts = [task.render(it) for _, it in todo]
            jobs = [{"prompt": text, "config": config} for text, (config, _) in zip(prompts, todo)]

            for i, result in generate_many(pair, jobs, unit[0], batch_size=batch_size, on_token=watch.token):
                config, item = todo[i]
                watch.finished(i)
                now = time.perf_counter()
                # wall time since the previous sample finished: these shares add up to the run's wall
                # time (across resumed runs too), so tokens / shares is the batch's throughput
                wall_share, last = now - last, now
                error = getattr(result, "error", None)
                extracted, ok = (None, None) if error else score(task, item, result.text)
                row_id = item_id(item)
                row = {
                    "id": row_id, "index": position[row_id], "task": task.name, "method": config.method, "gamma": config.gamma,
                    "alpha": config.alpha_label, "output": result.text, "extracted": extracted, "correct": ok,
                    "score": None if ok is None else float(ok), "gold": task.gold(item), "tokens": result.tokens,
                    "interventions": result.interventions, "intervention_rate": result.intervention_rate,
                    "mean_alpha": result.mean_alpha,
                    "alphas": [round(st.alpha, 4) for st in result.steps if st.alpha is not None],
                    "seconds": result.seconds, "wall_share": wall_share, "error": error,
                    "guides": list(result.guides) if result.guides else None, "held": result.held,
                }
                if getattr(result, "unavailable", False):  # a model did not answer: redone by the next run, flag or not
                    row["unavailable"] = True
                if traces and not error:
                    _write_trace(result, Path(traces) / f"{task.name}_{config.method}_g{config.gamma}_a{config.alpha_label}", row["id"], prompts[i])
                if judging and not error:
                    pending.append((pool.submit(judge.score, prompts[i], result.text, bool(item.get("is_safety"))), row))
                else:
                    _record(writer, row, watch)
                while pending and (pending[0][0].done() or len(pending) > 16):
                    _record(writer, _judged(*pending.pop(0), judge), watch)
                if watch.tally["n"]:
                    watch.show()
            for fut, row in pending:
                _record(writer, _judged(fut, row, judge), watch)
            if pending:
                watch.show()
            if line is not None:
                line.end()
            summary = [s for s in write_summary(out) if s["task"] == task.name]  # what is finished survives an interrupt
    finally:
        if line is not None:
            line.end()  # an interrupt or an error is printed on a line of its own
        writer.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return summary


def forget_failures(out_dir, task_name: str, unavailable_only: bool = False) -> int:
    """Drop ``task_name``'s failed rows (those with ``"error"``; ``unavailable_only``: those that failed
    because a model did not answer, which every run redoes) from ``out_dir/results.jsonl`` so that
    the next run decodes them again (``eval --retry-errors``: all of them); the file is rewritten
    whole, through a temporary file renamed over it. Returns how many rows were dropped."""
    path = Path(out_dir) / "results.jsonl"
    rows = read_rows(path)
    keep = [r for r in rows if not (r.get("error") and r.get("task") == task_name and (r.get("unavailable") or not unavailable_only))]
    if len(keep) < len(rows):
        replace_file(path, rows_text(keep))
    return len(rows) - len(keep)


def write_summary(out: Path) -> list[dict]:
    """Summarise the rows in ``out/results.jsonl`` (every task's) into ``out/summary.json``, whole or
    not at all: written to a temporary file first and renamed over the old one (``os.replace``)."""
    summary = summarise(read_rows(out / "results.jsonl"))
    replace_file(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _judged(future, row: dict, judge) -> dict:
    """The row with the judge's scores (``extracted``) and their mean (``score``; None: unparseable)."""
    scores = future.result()  # a JudgeError (server down) stops the run; rows written so far stay
    return {**row, "extracted": scores, "score": None if scores is None else scores["mean"], "judge": judge.model}


def _record(writer, row: dict, watch: Watch) -> None:
    writer.write(row)
    watch.count(row)


class Watch:
    """One run's progress: the tally of finished samples and of the rows still running, shown on a
    ``Progress`` (``line``; None: counted, never shown) as ``_progress`` words it.

    ``token(i)`` is ``generate_many``'s ``on_token``: a large batch can run many minutes before its
    first sample finishes, so from 10 s on the line also moves with the tokens (at most once a
    second). ``finished(i)``: row ``i`` is out of the batch; ``count(row)``: a sample's row (score,
    tokens, interventions, error) is done; ``show()``: update the line now. ``cap``: the most tokens
    a sample may take (max_new_tokens), what a running row is expected to reach while too few
    finished samples were longer (``_progress``)."""

    def __init__(self, line: Progress | None, task: Task, name: str, total: int, label: str = "", cap: int | None = None):
        self.line, self.task, self.name, self.total, self.label = line, task, name, total, label
        self.tally = {"n": 0, "score": 0.0, "tokens": 0, "interventions": 0, "errors": 0, "scored": 0, "decoded": 0, "running": {},
                      "lengths": [], "cap": cap}
        self.start = self.shown = time.perf_counter()

    def token(self, i: int) -> None:
        self.tally["decoded"] += 1
        self.tally["running"][i] = self.tally["running"].get(i, 0) + 1
        now = time.perf_counter()
        if now - self.start >= 10 and now - self.shown >= 1:
            self.show(now)

    def finished(self, i: int) -> None:
        self.tally["running"].pop(i, None)

    def count(self, row: dict) -> None:
        tally = self.tally
        tally["n"] += 1
        tally["score"] += row.get("score") or 0.0
        tally["scored"] += row.get("score") is not None
        tally["tokens"] += row["tokens"]
        bisect.insort(tally["lengths"], row["tokens"])
        tally["interventions"] += row["interventions"]
        tally["errors"] += bool(row.get("error"))

    def show(self, now: float | None = None) -> None:
        if self.line is None:
            return
        now = time.perf_counter() if now is None else now
        self.shown = now
        p = _progress(self.task, self.name, self.tally, self.total, now - self.start)
        self.line.update(self.label + p["text"], p["tokens"], p["total_tokens"], log_text=self.label + p["log_text"],
                         elapsed=now - self.start)


def _config_name(config: BlendConfig) -> str:
    return f"{config.method} g={config.gamma} a={config.alpha_label}"


def _progress(task: Task, name: str, tally: dict, total: int, seconds: float) -> dict:
    """What the progress shows: ``text`` (samples done, score so far with failed samples apart,
    interventions), ``tokens`` decoded so far, ``total_tokens`` expected in all, and ``log_text``
    (the text with tokens/s, time so far and time left, for a log). ``name``: the configuration's
    (``_config_name``), or what several decoded together are.

    Tokens/s counts every token decoded so far (``tally["decoded"]``, rows still running included;
    without it, the finished samples' tokens). Time left is the tokens still expected at that pace.
    Lengths are estimated with the rows still running (``tally["running"]``: row -> tokens so far)
    taken for what they are, samples at least that long: the first to finish in a batch of 96 are
    the short ones (XSTest's one-line refusals), so a mean of the finished said "~0 s left" at 57 of
    500, and a mean of finished and running together (each running row cut off where it stood)
    still said "~850 s left" at 14 of 500 of a run that took 42 minutes. A row running at t tokens
    is expected to reach the mean length of the finished samples longer than t, or, while fewer than
    ``TAIL`` of them are, ``tally["cap"]`` (max_new_tokens; ``_expected_length``); a row not started, the
    mean of those expected lengths and the finished ones. Early in a run this leans long (rows
    expected to run to the cap), and it shortens as samples finish.

    >>> from blendin.eval.tasks import get_task
    >>> p = _progress(get_task("gsm8k"), _config_name(BlendConfig()), dict(n=16, score=4.0, tokens=1600, interventions=160, errors=0), 100, 200.0)
    >>> p["log_text"]
    'gsm8k blendin g=0.4 a=auto: 16/100 score 0.250 interventions 10.0% 8.0 tok/s (200 s, ~1050 s left)'
    >>> p["text"], p["tokens"], p["total_tokens"]
    ('gsm8k blendin g=0.4 a=auto: 16/100 score 0.250 interventions 10.0%', 1600, 10000.0)
    >>> three_long = dict(n=1, score=1.0, tokens=13, interventions=0, errors=0, decoded=313, running={1: 100, 2: 100, 3: 100})
    >>> _progress(get_task("xstest"), "5 configurations", three_long, 20, 31.3)["log_text"]
    'xstest 5 configurations: 1/20 score 1.000 interventions 0.0% 10.0 tok/s (31 s, ~125 s left)'
    """
    rate = tally["interventions"] / tally["tokens"] if tally["tokens"] else 0.0
    scored = tally.get("scored", tally["n"] - tally["errors"])  # samples with a score (a task without gold: none)
    mean = f"{tally['score'] / scored:.3f}" if scored else "-"
    errors = f" errors {tally['errors']}" if tally["errors"] else ""
    decoded = tally.get("decoded") or tally["tokens"]
    speed = decoded / seconds if seconds else 0.0
    running = tally.get("running") or {}
    seen = tally["n"] + len(running)
    reach = [_expected_length(t, tally.get("lengths") or [], tally.get("cap")) for t in running.values()]
    length = (tally["tokens"] + sum(reach)) / seen if seen else 0.0  # a sample's tokens, estimated
    expected = sum(r - t for r, t in zip(reach, running.values())) + max(0, total - seen) * length
    left = f", ~{expected / speed:.0f} s left" if 0 < tally["n"] < total and speed else ""
    text = f"{task.name} {name}: {tally['n']}/{total} score {mean}{errors} interventions {100 * rate:.1f}%"
    return {"text": text, "tokens": decoded, "total_tokens": decoded + expected if seen else None,
            "log_text": f"{text} {speed:.1f} tok/s ({seconds:.0f} s{left})"}


TAIL = 3  # finished samples longer than a running row needed to trust their mean over the cap


def _expected_length(t: int, lengths: list[int], cap: int | None) -> float:
    """What a row running at ``t`` tokens is expected to reach: the mean of the finished ``lengths``
    (sorted) longer than t where there are ``TAIL`` of them, else ``cap``; without a cap, the mean of
    the longer ones there are, else t.

    >>> _expected_length(10, [2, 3, 40, 50, 60], 128), _expected_length(55, [2, 3, 40, 50, 60], 128)
    (50.0, 128)
    >>> _expected_length(55, [2, 3, 40, 50, 60], None), _expected_length(70, [2, 3, 40, 50, 60], None)
    (60.0, 70)
    """
    longer = lengths[bisect.bisect_right(lengths, t):]
    if len(longer) >= TAIL or (longer and cap is None):
        return sum(longer) / len(longer)
    return max(cap, t) if cap is not None else t


def _write_trace(result, folder: Path, sample_id, prompt: str | None = None) -> None:
    from ..diagnostics.html import trace_html

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sample_id}.html").write_text(trace_html(result, prompt=prompt), encoding="utf-8")


def summarise(rows: list[dict], task: str | None = None) -> list[dict]:
    """One object per (task, method, gamma, alpha): n, score, 95% Wilson interval, rates, and
    tokens_per_second (throughput: tokens over the wall time the samples took, batching included).

    ``n`` counts every sample; ``errors`` those whose decoding failed. The score, its interval,
    ``unparseable``, the intervention rate and mean alpha are over the other samples.

    >>> row = dict(task="t", method="base", gamma=0.4, alpha="auto", tokens=2, interventions=0, mean_alpha=None, seconds=1.0)
    >>> s = summarise([{**row, "correct": True, "extracted": "1"}, {**row, "correct": None, "extracted": None, "error": "boom"}])[0]
    >>> s["n"], s["errors"], s["score"], s["unparseable"]
    (2, 1, 1.0, 0)
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if task is None or r["task"] == task:
            groups.setdefault((r["task"], r["method"], r["gamma"], r["alpha"]), []).append(r)
    out = []
    for (t, method, gamma, alpha), every in groups.items():
        rs = [r for r in every if not r.get("error")]  # failed samples are counted apart
        judged = [r["correct"] for r in rs if r["correct"] is not None]
        by_judge = [r for r in rs if r.get("judge")]  # scored 1-5 by a judge model
        graded = [r["score"] for r in by_judge if r["score"] is not None]
        decoded = sum(r["tokens"] for r in rs)
        tokens = sum(r["tokens"] for r in every)  # throughput: the failed samples took wall time too
        seconds = sum(r.get("wall_share", r["seconds"]) for r in every)
        alphas = [r["mean_alpha"] for r in rs if r["mean_alpha"] is not None]
        if judged:
            s, ci, unparseable = sum(judged) / len(judged), wilson(sum(judged), len(judged)), sum(r["extracted"] is None for r in rs)
        elif by_judge:
            s, ci, unparseable = (sum(graded) / len(graded) if graded else None), mean_ci(graded), len(by_judge) - len(graded)
        else:
            s, ci, unparseable = None, None, None
        out.append({
            "task": t, "method": method, "gamma": gamma, "alpha": alpha, "n": len(every),
            "score": s, "score_ci": ci, "unparseable": unparseable, "errors": len(every) - len(rs),
            "intervention_rate": sum(r["interventions"] for r in rs) / decoded if decoded else 0.0,
            "mean_alpha": sum(alphas) / len(alphas) if alphas else None,
            "tokens_per_second": tokens / seconds if seconds else 0.0,
            "guides": guide_totals(rs),
        })
    return out


def guide_totals(rows: list[dict]) -> list[dict] | None:
    """Per guide, over the rows: its passes, consultations, interventions, filtered, passes saved, the
    answers it retired in, and its mean reliability at the end of an answer; None for rows without
    per-guide records (a run from before them, or the base method)."""
    totals: dict[str, dict] = {}
    for r in rows:
        for g in r.get("guides") or ():
            t = totals.setdefault(g["guide"], {"guide": g["guide"], "passes": 0, "consulted": 0, "interventions": 0, "filtered": 0,
                                               "passes_saved": 0, "retired": 0, "reliability": []})
            for k in ("passes", "consulted", "interventions", "filtered", "passes_saved"):
                t[k] += g[k]
            t["retired"] += g["retired_at"] is not None
            t["reliability"].append(g["reliability"])
    for t in totals.values():
        t["reliability"] = sum(t["reliability"]) / len(t["reliability"])
    return list(totals.values()) or None


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval for k successes in n, within [0, 1].

    >>> wilson(8, 10), wilson(0, 20)
    ([0.4902, 0.9433], [0.0, 0.1611])
    """
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [_bound(max(0.0, centre - half)), _bound(min(1.0, centre + half))]


def mean_ci(xs: list[float], z: float = 1.96) -> list[float] | None:
    """Normal-approximation 95% interval of a mean (judge scores on the 1-5 scale)."""
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return [_bound(m - z * sd / math.sqrt(len(xs))), _bound(m + z * sd / math.sqrt(len(xs)))]


def _bound(x: float, digits: int = 4) -> float:
    """``x`` rounded, never -0.0 (0 successes in 20 gave ``-0.0`` through rounding error)."""
    return round(x, digits) + 0.0


def interval(ci: list[float] | None, digits: int = 3) -> str:
    """An interval as it reads in tables and text: brackets and a comma, no minus sign on zero.

    >>> interval([-0.0, 0.1611]), interval([0.4902, 0.9433], 2), interval(None)
    ('[0.000, 0.161]', '[0.49, 0.94]', '-')
    """
    if ci is None:
        return "-"
    lo, hi = (f"{_bound(x, digits):.{digits}f}" for x in ci)
    return f"[{lo}, {hi}]"


def markdown(summary: list[dict]) -> str:
    """The summary as a markdown table; a grid's (objects with "pair") gets a pair column first."""
    paired = any("pair" in s for s in summary)
    head = "| task | method | gamma | alpha | n | score | 95% CI | unparseable | errors | interventions | mean alpha | tokens/s |"
    lines = [("| pair " if paired else "") + head, "|" + "---|" * (12 + paired)]
    for s in summary:
        f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"
        lines.append(("| " + s.get("pair", "-") + " " if paired else "") + f"| {s['task']} | {s['method']} | {s['gamma']} | {s['alpha']} | {s['n']} | {f(s['score'])} | {interval(s['score_ci'])} | "
                     f"{'-' if s['unparseable'] is None else s['unparseable']} | {s.get('errors', 0)} | {100 * s['intervention_rate']:.1f}% | "
                     f"{f(s['mean_alpha'], 2)} | {s['tokens_per_second']:.1f} |")
    return "\n".join(lines)


def diagnose(results: list, threshold: float = 0.2, gamma: float = 0.4, fixed_alpha: bool = False) -> dict:
    """The pair health check on a sample of BlendIn results (see the paper: >~20% interventions fails).

    Results whose decoding failed (``result.error``) are left out and counted in ``errors``; with
    none left, ``reliable`` is None and the verdict says nothing was measured."""
    failed = [r for r in results if getattr(r, "error", None)]
    results = [r for r in results if not getattr(r, "error", None)]
    steps = [s for r in results for s in r.steps]
    guided = [s for s in steps if s.intervened]
    alphas = sorted(s.alpha for s in guided if s.alpha is not None)
    rate = len(guided) / len(steps) if steps else 0.0
    # the base's top token is the guide's top token exactly when p_b[t_g] equals m_b
    agree = [s for s in guided if s.agreement is not None and s.base_top_prob is not None and abs(s.agreement - s.base_top_prob) < 1e-12]
    masses = [s.guide_mass_exact for s in guided if s.guide_mass_exact is not None]
    coverage = results[0].vocab_coverage if results else None
    reliable = rate <= threshold if results else None
    if reliable is None:
        advice = "nothing to judge: no prompt was decoded" + (f" ({len(failed)} failed: {failed[0].error})" if failed else "")
    elif reliable:
        advice = "guidance looks reliable for this pair"
    else:
        tries = ["the adaptive alpha (--alpha auto)"] if fixed_alpha else []
        tries.append(f"a lower gamma (e.g. --gamma {max(0.05, round(gamma - 0.1, 2))})")
        advice = f"guidance looks unreliable (> {100 * threshold:.0f}% interventions): try " + " or ".join(tries)
    return {
        "samples": len(results), "errors": len(failed), "first_error": failed[0].error if failed else None,
        "tokens": len(steps), "intervention_rate": rate,
        "top_token_agreement": len(agree) / len(guided) if guided else None,
        "alpha": {"mean": sum(alphas) / len(alphas), "median": alphas[len(alphas) // 2], "min": alphas[0], "max": alphas[-1]} if alphas else None,
        "vocab_exact_share": coverage["exact_share"] if coverage else None,
        "mean_guide_mass_exact": sum(masses) / len(masses) if masses else None,
        "threshold": threshold, "reliable": reliable, "verdict": advice,
    }


def diagnosis_text(d: dict, pair: str, task: str, gamma: float) -> str:
    """The diagnosis as a few aligned lines, ending with the verdict."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"
    lines = [
        f"pair: {pair}; {d['samples']} prompts of {task}, {d['tokens']} tokens, gamma {gamma}"
        + (f" ({d['errors']} more failed: {d['first_error']})" if d.get("errors") else ""),
        f"  intervention rate      {pct(d['intervention_rate'])}  of tokens the base was unsure of (m_b < gamma), the guide consulted "
        f"(threshold {pct(d['threshold'])}; it reads the base's uncertainty, not whether guidance helps: --save-profile tells that)",
        f"  top-token agreement    {pct(d['top_token_agreement'])}  of interventions",
    ]
    if d["alpha"]:
        al = d["alpha"]
        lines.append(f"  alpha                  mean {al['mean']:.2f}, median {al['median']:.2f}, range {interval([al['min'], al['max']], 2)}")
    lines.append(f"  vocabulary coverage    {pct(d['vocab_exact_share'])} of guide tokens exact; "
                 f"{pct(d['mean_guide_mass_exact'])} of guide mass at interventions")
    if d.get("score") is not None:
        lines.append(f"  score                  {d['score']:.3f}  BlendIn's answers on the sample")
    lines.append(f"verdict: {d['verdict']}")
    return "\n".join(lines)
