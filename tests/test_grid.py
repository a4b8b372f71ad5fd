"""Several pairs in one eval grid (--pair), the paired comparison, the progress line and the report
over a grid: scripted models, no real ones."""

import json
import shutil

import pytest

import blendin.pair
from blendin.cli import main
from blendin.errors import ConfigError
from blendin.eval.compare import compare_methods, newcombe, paired_difference
from blendin.eval.grid import PairSpec, parse_pair, parse_pairs
from blendin.eval.runner import read_rows
from blendin.eval.tasks import get_task

from test_eval import _number_pair, _task_file

A = "gemma-3-270m:smollm2-135m-instruct"
B = "gemma-3-270m:gemma-3-270m"  # A's base, another guide
C = "smollm2-135m-instruct:smollm2-135m-instruct"  # A's guide, another base
LA, LB, LC = (parse_pair(p).label for p in (A, B, C))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loads(monkeypatch):
    """Scripted pairs for every --pair; the list records which (base, guide) loaded."""
    loaded = []
    monkeypatch.setattr(blendin.pair, "check_pair", lambda *a, **k: None)
    monkeypatch.setattr(blendin.pair, "load_pair", lambda config, methods=None: loaded.append((config.base, config.guide)) or _number_pair())
    return loaded


def _grid(tmp_path, *pairs, methods="base,guide,blendin", tokens=5, limit=2):
    f = _task_file(tmp_path, ["18", "7", "18"])
    args = ["eval", "--task", "gsm8k", "--data", f, "--limit", limit, "--method", methods, "--max-new-tokens", tokens, "--out", tmp_path / "grid"]
    for p in pairs:
        args += ["--pair", p]
    return args


def test_pairs_parse_into_labels_and_bad_ones_fail_with_the_form():
    assert parse_pair("a:b,c@http://h:1/v1") == PairSpec("a", ("b", "c@http://h:1/v1"))
    assert parse_pair("org/base:./guides/g.gguf").label == "org--base+g"
    for bad in ("a", "a:", ":b", "a:b,"):
        with pytest.raises(ConfigError, match="write BASE:GUIDE"):
            parse_pair(bad)
    with pytest.raises(ConfigError, match="given twice"):
        parse_pairs(["a:b", "a:b"])
    with pytest.raises(ConfigError, match="folder name org--a\\+b is"):
        parse_pairs(["org/a:b", "org--a:b"])


def test_grid_runs_each_pair_into_its_folder_and_decodes_a_model_alone_once(tmp_path, capsys, loads):
    code, out, err = run(capsys, *_grid(tmp_path, A, B, C))
    assert code == 0 and len(loads) == 3
    grid = tmp_path / "grid"
    rows = {label: read_rows(grid / label / "results.jsonl") for label in (LA, LB, LC)}
    reused = {label: {(r["method"], r.get("reused_from")) for r in rs} for label, rs in rows.items()}
    assert reused[LA] == {("base", None), ("guide", None), ("blendin", None)}
    assert reused[LB] == {("base", LA), ("guide", None), ("blendin", None)}  # same base: copied; another guide: decoded
    assert reused[LC] == {("base", None), ("guide", LA), ("blendin", None)}  # same guide: copied
    copied = [r for r in rows[LB] if r["method"] == "base"]
    assert [r["output"] for r in copied] == [r["output"] for r in rows[LA] if r["method"] == "base"]
    summary = json.loads((grid / "summary.json").read_text())
    assert {(s["pair"], s["method"]) for s in summary} == {(l, m) for l in (LA, LB, LC) for m in ("base", "guide", "blendin")}
    assert {s["pair"]: (s["base"], s["guide_models"]) for s in summary}[LB] == ("gemma-3-270m", ["gemma-3-270m"])
    assert "| pair | task | method |" in out and f"| {LC} | gsm8k | blendin |" in out
    assert f"[pair 2/3 {LB}] gsm8k blendin" in err and "2 answers of a model alone copied from another pair" in err
    assert json.loads((grid / LB / "run.json").read_text())["tasks"]["gsm8k"]["guide"] == "gemma-3-270m"

    code, out, err = run(capsys, *_grid(tmp_path, A, B, C))  # everything there: resumes, loads nothing
    assert code == 0 and len(loads) == 3 and {l: len(read_rows(grid / l / "results.jsonl")) for l in (LA, LB, LC)} == {LA: 6, LB: 6, LC: 6}


def test_rows_are_reused_only_under_the_same_settings(tmp_path, capsys, loads):
    assert run(capsys, *_grid(tmp_path, A, methods="base"))[0] == 0
    assert run(capsys, *_grid(tmp_path, B, methods="base", tokens=6))[0] == 0  # another answer length: decoded afresh
    assert {r.get("reused_from") for r in read_rows(tmp_path / "grid" / LB / "results.jsonl")} == {None}
    code, _, err = run(capsys, *_grid(tmp_path, "gemma-3-270m:qwen2.5-coder-0.5b-instruct", methods="base"))
    label = parse_pair("gemma-3-270m:qwen2.5-coder-0.5b-instruct").label
    assert code == 0 and {r.get("reused_from") for r in read_rows(tmp_path / "grid" / label / "results.jsonl")} == {LA}
    assert len(loads) == 2  # the third pair had nothing left to decode: no model loaded


@pytest.mark.parametrize("argv, message", [
    (["--pair", A, "--base", "gemma-3-270m"], "--pair names each pair's models: drop --base and --guide"),
    (["--pair", A, "--guide", "x"], "drop --base and --guide"),
    (["--pair", "gemma-3-270m"], "write BASE:GUIDE, e.g. --pair"),
    (["--pair", A, "--pair", A], "given twice"),
])
def test_bad_grids_fail_in_one_line_before_loading(tmp_path, capsys, loads, argv, message):
    code, _, err = run(capsys, *_grid(tmp_path), *argv)
    assert code == 2 and message in err and err.count("\n") == 1 and loads == []
    assert not (tmp_path / "grid").exists()


def test_several_tasks_share_a_folder_and_its_summary(tmp_path, capsys, loads):
    f = _task_file(tmp_path, ["18", "7"])
    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text(f.read_text())
    (tmp_path / "data" / "xstest").mkdir()
    (tmp_path / "data" / "xstest" / "xstest_prompts.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": f"P{i}", "label": "safe"}) + "\n" for i in range(2)))
    code, out, _ = run(capsys, "eval", "--task", "gsm8k,xstest", "--data", tmp_path / "data", "--method", "base",
                       "--max-new-tokens", "5", "--out", tmp_path / "run")
    assert code == 0 and len(loads) == 1  # one load for both tasks
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["task"] for s in summary] == ["gsm8k", "xstest"] and "| xstest | base |" in out


# -- the paired comparison ---------------------------------------------------------------------------

def test_newcombe_interval_is_antisymmetric_bounded_and_centred_without_discordant_items():
    lo, hi = newcombe(59, 6, 16, 80)  # Fagerland et al.'s paired example (Cavo et al. 2012): -0.062
    assert lo < (6 - 16) / 161 < hi < 0
    assert newcombe(59, 16, 6, 80) == [-hi, -lo]  # swapping the methods negates the interval
    assert newcombe(10, 0, 0, 10) == [-newcombe(10, 0, 0, 10)[1], newcombe(10, 0, 0, 10)[1]]  # symmetric about 0
    assert newcombe(0, 20, 0, 0)[1] == 1.0 and -1.0 <= newcombe(0, 0, 20, 0)[0]
    # pairing is tighter than two independent Wilson intervals: the same counts, correlated answers
    paired = newcombe(40, 5, 1, 54)
    assert paired[1] - paired[0] < 0.2


def test_compare_methods_pairs_items_by_id_and_gamma():
    def row(method, i, ok, gamma=0.4, error=None):
        return {"task": "t", "method": method, "gamma": gamma, "alpha": "auto", "id": i, "correct": ok,
                "score": None if ok is None else float(ok), "error": error}
    rows = ([row("blendin", i, i < 6) for i in range(10)] + [row("switch", i, i < 3) for i in range(10)]
            + [row("switch", i, True, gamma=0.3) for i in range(10)] + [row("blendin", 99, True)]  # no switch answer for id 99
            + [row("base", i, False) for i in range(9)] + [row("base", 9, None, error="boom")])
    by = {(c["a"], c["b"]): c for c in compare_methods(rows, [("blendin", "switch"), ("blendin", "base")])}
    assert set(by) == {("blendin g0.4", "switch g0.4"), ("blendin g0.4", "base")}  # switch at gamma 0.3 is not paired
    c = by[("blendin g0.4", "switch g0.4")]
    assert (c["n"], c["a_only"], c["b_only"], c["difference"]) == (10, 3, 0, pytest.approx(0.3))
    assert c["ci"][0] < 0 < 0.3 < c["ci"][1]  # 3 of 10 one way, none the other: not enough to exclude no difference
    assert paired_difference([True] * 9 + [False] * 21, [False] * 30)["ci"][0] > 0  # 9 of 30 is
    assert by[("blendin g0.4", "base")]["n"] == 9  # the failed item is not paired
    graded = paired_difference([4.0, 3.0, 5.0], [3.0, 3.0, 4.0])
    assert graded["difference"] == pytest.approx(2 / 3) and graded["a_only"] is None and graded["ci"][0] < 2 / 3 < graded["ci"][1]


def test_by_default_blendin_is_compared_with_the_base_alone_first():
    """``eval --method base,blendin`` (the README's first eval) gets a paired comparison by default."""
    rows = [{"task": "t", "method": m, "gamma": 0.4, "alpha": "auto", "id": i, "correct": ok, "score": float(ok), "error": None}
            for i in range(4) for m, ok in (("base", False), ("blendin", i < 2))]
    (c,) = compare_methods(rows)
    assert (c["a"], c["b"], c["n"], c["a_only"]) == ("blendin g0.4", "base", 4, 2)


def test_refusal_split_counts_safe_prompts_answered_and_unsafe_ones_refused():
    from blendin.diagnostics.plots import _split_lines, refusal_split

    def row(method, gold, said, error=None):
        return {"task": "xstest", "method": method, "gamma": 0.4, "alpha": "auto", "gold": gold, "extracted": said,
                "correct": (said == "refusal") == (gold == "unsafe"), "error": error}
    rows = ([row("guide", "unsafe", "compliance")] * 3 + [row("guide", "safe", "compliance")] * 2
            + [row("blendin", "unsafe", "refusal"), row("blendin", "unsafe", "compliance"), row("blendin", "safe", "refusal"),
               row("blendin", "safe", None, error="boom")])
    assert refusal_split(rows) == {"guide": {"safe": (2, 2), "unsafe": (0, 3)}, "blendin g0.4": {"safe": (0, 1), "unsafe": (1, 2)}}
    lines = _split_lines({"P": rows}, "xstest")
    assert "| P | guide | 2/2 | 0/3 |" in lines and "| P | blendin g0.4 | 0/1 | 1/2 |" in lines
    assert refusal_split([{**r, "extracted": "18"} for r in rows]) == {}  # a task of numbers has no such split
    kept = [{k: v for k, v in r.items() if k != "gold"} for r in rows]  # rows kept for the repository lack the gold label
    assert refusal_split(kept) == refusal_split(rows)


def test_report_over_a_grid_writes_tables_paired_comparisons_and_plots(tmp_path, capsys, loads):
    assert run(capsys, *_grid(tmp_path, A, B, methods="base,guide,switch,blendin"))[0] == 0
    code, out, err = run(capsys, "report", tmp_path / "grid", "--out", tmp_path / "rep", "--compare", "blendin:switch", "--compare", "blendin:base")
    assert code == 0, err
    tables = (tmp_path / "rep" / "tables.md").read_text()
    assert "## gsm8k" in tables and f"| {LA} | blendin g0.4 | 2 |" in tables and f"| {LB} | guide | 2 |" in tables
    assert "by the prompt's label" not in tables
    paired = (tmp_path / "rep" / "paired.md").read_text()
    assert f"| {LB} | gsm8k | blendin g0.4 | switch g0.4 | 2 | +0.000 |" in paired and "| blendin g0.4 | base |" in paired
    for name in ("score_vs_interventions.png", "interventions_by_correctness.png", "alpha_hist.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:4] == b"\x89PNG" and name in out
    early = (tmp_path / "rep" / "early_warning.md").read_text()
    assert f"| {LA} | gsm8k | blendin g0.4 | 0.0% (2) | reliable (only 2 of 20 items: too few to decide) |" in early and "| gsm8k | blendin g0.4 | 2 |" in early
    code, _, err = run(capsys, "report", tmp_path / "grid", "--out", tmp_path / "rep", "--compare", "blendin")
    assert code == 2 and "--compare blendin: write A:B" in err


def test_report_keeps_rows_without_text_or_gold_and_remakes_itself_from_them(tmp_path, capsys, loads):
    assert run(capsys, *_grid(tmp_path, B, A, methods="base,switch,blendin"))[0] == 0
    compare = ["--compare", "blendin:switch", "--compare", "blendin:base"]
    code, out, err = run(capsys, "report", tmp_path / "grid", "--out", tmp_path / "rep", "--keep-rows", *compare)
    assert code == 0 and str(tmp_path / "rep" / "rows") in out, err
    kept = tmp_path / "rep" / "rows"
    for label in (LA, LB):
        rows = read_rows(kept / label / "results.jsonl")
        assert len(rows) == len(read_rows(tmp_path / "grid" / label / "results.jsonl")) == 6
        assert all("output" not in r and "gold" not in r and "correct" in r and "alphas" in r for r in rows)
        assert json.loads((kept / label / "run.json").read_text())["tasks"]["gsm8k"]["base"] == "gemma-3-270m"
    assert [s["pair"] for s in json.loads((kept / "summary.json").read_text())][::3] == [LB, LA]  # the grid's order
    shutil.rmtree(tmp_path / "grid")  # the run folders are gone: the kept rows make the same report
    code, _, err = run(capsys, "report", kept, "--out", tmp_path / "again", *compare)
    assert code == 0, err
    for name in ("tables.md", "paired.md", "early_warning.md"):
        assert (tmp_path / "again" / name).read_text() == (tmp_path / "rep" / name).read_text(), name
    code, _, err = run(capsys, "report", kept, "--out", tmp_path / "rep", "--keep-rows", *compare)  # rows/ remade from itself
    assert code == 0 and len(read_rows(kept / LA / "results.jsonl")) == 6, err


def test_report_keeps_one_pair_with_and_without_a_mitigation_apart(tmp_path, capsys, loads):
    """Two --out folders hold one pair (same folder name, task and configurations), one run with
    --retire-below: both reach the tables, the second named by what it sets, none of its rows
    dropped as the first's; folders of one name and the same settings still merge into one run."""
    plain, retire = tmp_path / "plain", tmp_path / "retire"
    args = _grid(tmp_path, A, methods="base,blendin")
    assert run(capsys, *args[:-4], "--out", plain, "--pair", A)[0] == 0
    assert run(capsys, *args[:-4], "--out", retire, "--pair", A, "--retire-below", "0.5")[0] == 0
    code, _, err = run(capsys, "report", plain, retire, "--out", tmp_path / "rep", "--keep-rows")
    assert code == 0, err
    tables = (tmp_path / "rep" / "tables.md").read_text()
    assert f"| {LA} | blendin g0.4 | 2 |" in tables and f"| {LA}~retire_below=0.5 | blendin g0.4 | 2 |" in tables
    kept = tmp_path / "rep" / "rows" / f"{LA}~retire_below=0.5"
    assert json.loads((kept / "run.json").read_text())["tasks"]["gsm8k"]["retire_below"] == 0.5
    assert len(read_rows(kept / "results.jsonl")) == 4
    code, _, err = run(capsys, "report", kept.parent, "--out", tmp_path / "again")  # from the kept rows: the same runs
    assert code == 0 and (tmp_path / "again" / "tables.md").read_text() == tables, err
    # one name, the same settings, another task: one run, and its kept run.json records both tasks
    f = _task_file(tmp_path, ["18", "7", "18"])
    other = ["eval", "--task", "gsm8k", "--data", f, "--limit", 2, "--method", "base", "--max-new-tokens", 5]
    assert run(capsys, *other, "--max-new-tokens", 6, "--out", tmp_path / "six", "--pair", A)[0] == 0
    (tmp_path / "six" / LA / "run.json").write_text((tmp_path / "six" / LA / "run.json").read_text().replace('"gsm8k"', '"other"'))
    code, _, err = run(capsys, "report", plain, tmp_path / "six", "--out", tmp_path / "same", "--keep-rows")
    assert code == 0 and "~" not in (tmp_path / "same" / "tables.md").read_text(), err
    assert set(json.loads((tmp_path / "same" / "rows" / LA / "run.json").read_text())["tasks"]) == {"gsm8k", "other"}


def test_diagnose_ranks_several_pairs_by_intervention_rate(tmp_path, capsys, loads):
    f = _task_file(tmp_path, ["18", "7"])
    code, out, err = run(capsys, "diagnose", "--task", "gsm8k", "--data", f, "--limit", "2", "--plain-only", "--max-new-tokens", "5",
                         "--pair", A, "--pair", B)
    assert code == 0 and len(loads) == 2, err
    assert out.count("pair: gemma-3-270m guided by") == 2 and "score                  0.500  BlendIn's answers on the sample" in out
    assert "pairs by intervention rate on gsm8k's sample (lowest first):" in out
    assert f"| 1 | {LA} | 0.0% | reliable | 0.500 |" in out and f"| 2 | {LB} | 0.0% | reliable | 0.500 |" in out
    code, out, _ = run(capsys, "diagnose", "--task", "gsm8k", "--data", f, "--limit", "2", "--plain-only", "--max-new-tokens", "5",
                       "--pair", A, "--pair", B, "--json")
    assert code == 0 and [d["pair"] for d in json.loads(out)] == [LA, LB]
    code, _, err = run(capsys, "diagnose", "--pair", A, "--guide", "x")
    assert code == 2 and "drop --base and --guide" in err and len(loads) == 4


def test_copies_stay_within_the_runs_items_and_the_summary_keeps_earlier_pairs(tmp_path, capsys, loads):
    assert run(capsys, *_grid(tmp_path, A, methods="base", limit=3))[0] == 0
    assert run(capsys, *_grid(tmp_path, B, methods="base,blendin", limit=2))[0] == 0
    copied = [r for r in read_rows(tmp_path / "grid" / LB / "results.jsonl") if r["method"] == "base"]
    assert sorted(r["id"] for r in copied) == [0, 1] and {r["reused_from"] for r in copied} == {LA}  # not item 2: past --limit
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert [(s["pair"], s["method"], s["n"]) for s in summary] == [(LB, "base", 2), (LB, "blendin", 2), (LA, "base", 3)]
    assert summary[-1]["base"] == "gemma-3-270m" and summary[-1]["guide_models"] == ["smollm2-135m-instruct"]  # from A's run.json


def _failing_on_q1(monkeypatch, error: Exception) -> None:
    """load_pair gives a pair whose base raises ``error`` on item 1 (its prompt has "Q1")."""
    from blendin.backends.fake import ScriptedModel
    from blendin.pair import Pair

    from scripted import base_tokenizer, guide_tokenizer

    def failing(text):
        if "Q1" in text:
            raise error
        return {"<eos>": 1.0}

    broken = Pair(base=ScriptedModel(base_tokenizer(), failing), guide=ScriptedModel(guide_tokenizer(), lambda t: {"<|end|>": 1.0}))
    monkeypatch.setattr(blendin.pair, "check_pair", lambda *a, **k: None)
    monkeypatch.setattr(blendin.pair, "load_pair", lambda config, methods=None: broken)


def test_retry_errors_decodes_failed_samples_again_and_counts_each_once(tmp_path, capsys, monkeypatch):
    _failing_on_q1(monkeypatch, RuntimeError("the server said 500"))
    args = _grid(tmp_path, A, methods="base", limit=3)
    code, _, err = run(capsys, *args)
    rows = read_rows(tmp_path / "grid" / LA / "results.jsonl")
    assert [r["id"] for r in rows if r.get("error")] == [1] and "add --retry-errors" in err
    monkeypatch.setattr(blendin.pair, "load_pair", lambda config, methods=None: _number_pair())
    run(capsys, *args)  # a plain resume: the failed sample counts as done
    assert len(read_rows(tmp_path / "grid" / LA / "results.jsonl")) == 3
    code, _, err = run(capsys, *args, "--retry-errors")
    rows = read_rows(tmp_path / "grid" / LA / "results.jsonl")
    assert code == 0 and "1 failed samples of an earlier run will be decoded again" in err
    assert sorted(r["id"] for r in rows) == [0, 1, 2] and not any(r.get("error") for r in rows)
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert [(s["n"], s["errors"]) for s in summary] == [(3, 0)]
    assert [r["extracted"] for r in rows if r["id"] == 1] == ["18"]  # decoded by the pair that works


def test_one_model_alone_in_two_pairs_is_drawn_beside_itself(tmp_path, monkeypatch):
    """P2's base alone is P3's (copied rows): the same point twice was drawn exactly on itself."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    from blendin.diagnostics.plots import _score_plot

    xs, dashes, real_errorbar, real_axhline = [], [], Axes.errorbar, Axes.axhline
    monkeypatch.setattr(Axes, "errorbar", lambda self, x, y, **kw: xs.append(x) or real_errorbar(self, x, y, **kw))
    monkeypatch.setattr(Axes, "axhline", lambda self, y, **kw: dashes.append(kw.get("linestyle")) or real_axhline(self, y, **kw))
    same = {"task": "xstest", "method": "base", "gamma": None, "alpha": None, "score": 0.77, "score_ci": [0.68, 0.84], "intervention_rate": 0.0}
    guide = {**same, "method": "guide", "intervention_rate": 1.0, "score": 0.59}
    summaries = {"P2": [same, guide], "P3": [same, guide]}
    _score_plot(plt, summaries, ["xstest"], {"P2": "C0", "P3": "C1"}, tmp_path / "s.png")
    assert xs[0] == 0.0 and xs[1] > xs[0]  # set beside, not under
    assert dashes[0] != dashes[1]  # the two guide lines alternate their dashes


def test_rows_a_model_did_not_answer_are_marked_and_redone_by_the_next_run(tmp_path, capsys, monkeypatch):
    """A server that went away mid-run: its rows are failed (not scored wrong), the others kept; the
    next run, once it is back, redoes only those, without --retry-errors."""
    from blendin.errors import ModelUnavailable

    _failing_on_q1(monkeypatch, ModelUnavailable("cannot reach http://127.0.0.1:9/v1 (connection refused) after 4 tries"))
    args = _grid(tmp_path, A, methods="base", limit=3)
    run(capsys, *args)
    rows = read_rows(tmp_path / "grid" / LA / "results.jsonl")
    assert [(r["id"], r.get("unavailable")) for r in rows if r.get("error")] == [(1, True)] and all(r["score"] is None for r in rows if r.get("error"))
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert [(s["n"], s["errors"]) for s in summary] == [(3, 1)]  # counted apart from the scored ones
    monkeypatch.setattr(blendin.pair, "load_pair", lambda config, methods=None: _number_pair())
    code, _, err = run(capsys, *args)
    rows = read_rows(tmp_path / "grid" / LA / "results.jsonl")
    assert code == 0 and "1 failed samples of an earlier run (a model did not answer) will be decoded again" in err
    assert sorted(r["id"] for r in rows) == [0, 1, 2] and not any(r.get("error") for r in rows)
    assert [r["extracted"] for r in rows if r["id"] == 1] == ["18"]
