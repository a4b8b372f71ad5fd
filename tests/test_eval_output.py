"""What an eval run shows and leaves behind: the progress line, summary.json as configurations
finish, intervals that read right; and the ``--json`` field list (docs/json.md) against the records."""

import dataclasses
import io
import json
import math
import re
import typing
from pathlib import Path

import pytest

from blendin import BlendConfig
from blendin.eval.runner import diagnosis_text, grid, markdown, run_eval, summarise, wilson
from blendin.eval.tasks import get_task, load_items
from blendin.types import GenerationResult, Step, StopReason

from test_eval import _number_pair, _task_file

JSON_DOC = Path(__file__).resolve().parents[1] / "docs" / "json.md"  # the README links it


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _stopping_at(count, exc):
    """generate_many that raises ``exc`` once ``count`` results came out over the whole run."""
    from blendin import decoding

    real, seen = decoding.generate_many, [0]

    def generate_many(pair, prompts, config, batch_size=8, **kw):
        for i, result in real(pair, prompts, config, batch_size=batch_size, **kw):
            if seen[0] == count:
                raise exc
            seen[0] += 1
            yield i, result
    return generate_many


def _run(tmp_path, progress, out="run"):
    task = get_task("gsm8k")
    items = load_items(task, str(_task_file(tmp_path, ["18", "18", "7"])))
    return run_eval(_number_pair(), task, items, grid(BlendConfig(max_new_tokens=5), ["base", "blendin"], [0.4], [None]),
                    tmp_path / out, progress=progress)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("boom")])
def test_an_interrupt_or_error_starts_on_a_line_of_its_own(tmp_path, monkeypatch, exc):
    from blendin import decoding

    monkeypatch.setattr(decoding, "generate_many", _stopping_at(2, exc))
    term = Terminal()
    with pytest.raises(type(exc)):
        _run(tmp_path, term)
    out = term.getvalue()
    assert out.startswith("\r") and out.endswith("\n") and out.count("\n") == 1  # a bar redrawn in place, then ended
    assert out.rstrip("\n").rsplit("\r", 1)[1].startswith("gsm8k base g=0.4 a=auto: 2/3 score 1.000 interventions 0.0%")


def test_a_terminal_gets_a_bar_over_tokens_per_configuration(tmp_path):
    term = Terminal()
    _run(tmp_path, term)
    lines = term.getvalue().split("\n")
    assert len(lines) == 3 and lines[2] == ""  # one bar per configuration, each ended
    last = [line.rsplit("\r", 1)[1] for line in lines[:2]]
    assert last[0].startswith("gsm8k base g=0.4 a=auto: 3/3 score 0.667") and last[1].startswith("gsm8k blendin g=0.4 a=auto: 3/3")
    for text in last:  # tqdm's bar, full at the end, its time and its rate in tokens
        assert re.search(r" 100%\|#+\| \d\d:\d\d<00:00, [\d.]+(tok/s|s/tok)$", text), text  # tqdm: s/tok below 1 tok/s (a busy machine)
    assert "tok/s (" not in term.getvalue()  # the log line's own rate and time are not repeated beside the bar


def test_the_bar_counts_tokens_expected_from_running_rows(tmp_path):
    """Half way (one of two samples done, the other running), the bar's end is the tokens decoded
    plus those the running row is expected to take: the estimate _progress makes, not samples."""
    from blendin.eval.runner import Watch
    from blendin.progress import Progress

    term = Terminal()
    watch = Watch(Progress(term), get_task("gsm8k"), "base", total=2)
    for _ in range(10):
        watch.token(0)
    watch.finished(0)
    watch.count({"score": 1.0, "tokens": 10, "interventions": 0})
    for _ in range(4):
        watch.token(1)
    watch.show()
    assert watch.line.bar.n == 14 and watch.line.bar.total == 20  # row 1 (at 4) is expected to reach the finished one's 10
    watch.line.end()
    assert term.getvalue().rsplit("\r", 1)[1].startswith("gsm8k base: 1/2 score 1.000 interventions 0.0%  70%|")


def test_time_left_counts_running_rows_as_at_least_as_long_as_they_are():
    """XSTest at 14 of 500, 96 rows running: the 14 finished are one-line answers, the running rows
    are 34 tokens in. Cut off where they stood, the estimate said ~850 s left of a 42-minute run.
    Too few finished samples are longer than 34 tokens to say where those rows end, so they are
    expected to run to the cap; once enough long samples have finished, to their mean."""
    from blendin.eval.runner import _progress

    tally = dict(n=14, score=6.0, tokens=14 * 10, interventions=0, errors=0, decoded=14 * 10 + 96 * 34,
                 running={i: 34 for i in range(96)}, lengths=[10] * 14, cap=128)
    p = _progress(get_task("xstest"), "5 configurations", tally, 500, 237.0)  # 14.4 tok/s
    reach = (14 * 10 + 96 * 128) / 110  # a sample, estimated: 113 tokens
    assert p["total_tokens"] == pytest.approx(p["tokens"] + 96 * (128 - 34) + 390 * reach)
    assert p["log_text"].endswith("14.4 tok/s (237 s, ~3696 s left)")
    later = dict(tally, running={i: 34 for i in range(96)}, lengths=sorted([10] * 14 + [60] * 3))
    assert _progress(get_task("xstest"), "5", later, 500, 237.0)["total_tokens"] < p["total_tokens"]  # three finished at 60


def test_a_log_gets_whole_lines_without_carriage_returns(tmp_path, monkeypatch):
    from blendin import decoding

    log = io.StringIO()
    _run(tmp_path, log)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    # each configuration: its first sample at once, then at most every 30 s, and its last state
    assert [l.split(" score")[0] for l in lines] == ["gsm8k base g=0.4 a=auto: 1/3", "gsm8k base g=0.4 a=auto: 3/3",
                                                     "gsm8k blendin g=0.4 a=auto: 1/3", "gsm8k blendin g=0.4 a=auto: 3/3"]
    monkeypatch.setattr(decoding, "generate_many", _stopping_at(2, KeyboardInterrupt()))
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, log, out="again")
    assert [l.split(" score")[0] for l in log.getvalue().splitlines()] == ["gsm8k base g=0.4 a=auto: 1/3", "gsm8k base g=0.4 a=auto: 2/3"]


def test_summary_json_is_written_as_each_configuration_finishes(tmp_path, monkeypatch):
    from blendin import decoding

    monkeypatch.setattr(decoding, "generate_many", _stopping_at(4, KeyboardInterrupt()))  # in the second configuration
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, None)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [(s["method"], s["n"]) for s in summary] == [("base", 3)]  # the finished one
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.jsonl", "run.json", "summary.json"]  # no temp file left
    monkeypatch.undo()
    summary = _run(tmp_path, None)
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert [(s["method"], s["n"]) for s in summary] == [("base", 3), ("blendin", 3)]


def _no_negative_zero(x):
    return x is None or (math.copysign(1.0, x) > 0 or x != 0)


def test_intervals_read_right():
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and math.copysign(1.0, lo) == 1.0 and hi == pytest.approx(0.1611)
    assert wilson(20, 20)[1] == 1.0
    row = dict(task="t", method="base", gamma=0.4, alpha="auto", tokens=2, interventions=0, mean_alpha=None, seconds=1.0)
    s = summarise([{**row, "correct": False, "extracted": "1"}] * 20)[0]
    assert "-0.0" not in json.dumps(s) and all(_no_negative_zero(x) for x in s["score_ci"])
    table = markdown([s])
    assert "| 0.000 | [0.000, 0.161] |" in table and "-0.000" not in table
    assert "| [0.000, 0.161] |" in markdown([{**s, "score_ci": [-0.0, 0.1611]}])  # a summary.json written before
    assert "| 0.095-0.905 |" not in markdown([{**s, "score_ci": wilson(1, 2)}]) and "| [0.095, 0.905] |" in markdown([{**s, "score_ci": wilson(1, 2)}])


def test_diagnosis_text_prints_the_alpha_range_as_an_interval():
    d = {"samples": 2, "tokens": 10, "intervention_rate": 0.1, "threshold": 0.2, "top_token_agreement": 0.5,
         "alpha": {"mean": 0.6, "median": 0.6, "min": 0.5, "max": 0.75}, "vocab_exact_share": 0.9,
         "mean_guide_mass_exact": 0.99, "verdict": "guidance looks reliable for this pair"}
    text = diagnosis_text(d, "b guided by g", "gsm8k", 0.4)
    assert "range [0.50, 0.75]" in text and "0.50-0.75" not in text


def _json_section() -> str:
    return JSON_DOC.read_text(encoding="utf-8")


def test_readme_json_output_names_every_field():
    section = _json_section()
    named = {w for span in re.findall(r"`([^`]*)`", section) for w in re.findall(r"\w+", span)}
    for record in (GenerationResult, Step):
        missing = [f.name for f in dataclasses.fields(record) if f.name not in named]
        assert not missing, f"docs/json.md does not name {record.__name__}.{missing}"
    for reason in typing.get_args(StopReason):
        assert f'"{reason}"' in section, f"stop_reason {reason!r} not listed"


def test_the_line_moves_with_the_tokens_before_any_sample_finishes(tmp_path, monkeypatch):
    from blendin.eval import runner

    clock = iter(range(0, 100000, 20))  # every reading of the clock is 20 s later
    monkeypatch.setattr(runner.time, "perf_counter", lambda: float(next(clock)))
    log = io.StringIO()
    _run(tmp_path, log)
    first = log.getvalue().splitlines()[0]
    assert first.startswith("gsm8k base g=0.4 a=auto: 0/3 score - ") and " tok/s (" in first  # tokens, no sample yet


def test_diagnose_shows_each_variant_as_eval_shows_a_configuration(tmp_path):
    """diagnose decodes the sample once per variant: each gets its progress (its name, samples done,
    score, interventions), a whole line in a log, a bar on a terminal."""
    from blendin.eval.diagnose import DEFAULTS, diagnose_pair

    task = get_task("gsm8k")
    items = load_items(task, str(_task_file(tmp_path, ["18", "18", "7"])))
    config = BlendConfig(max_new_tokens=5)
    log = io.StringIO()
    diagnose_pair(_number_pair(), task, items, config, batch_size=2, settings=DEFAULTS, progress=log)
    heads = [line.split(" score")[0] for line in log.getvalue().splitlines()]
    assert heads[0] == "gsm8k diagnose blendin: 1/3" and "gsm8k diagnose blendin: 3/3" in heads
    assert "gsm8k diagnose reliability: 3/3" in heads and "gsm8k diagnose base alone: 3/3" in heads
    assert all("tok/s (" in line for line in log.getvalue().splitlines()) and "\r" not in log.getvalue()
    term = Terminal()
    diagnose_pair(_number_pair(), task, items, config, batch_size=2, progress=term)  # the plain check only: one bar
    [line, end] = term.getvalue().split("\n")
    assert end == "" and re.search(r"^gsm8k diagnose blendin: 3/3 score [\d.]+ interventions [\d.]+%  ?100%\|", line.rsplit("\r", 1)[1])
