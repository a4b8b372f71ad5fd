"""Tasks, answer extraction, the eval runner (resume, summary) and the pair diagnosis."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blendin import BlendConfig
from blendin.backends.fake import ScriptedModel
from blendin.errors import ConfigError
from blendin.eval.extract import choice_letter, last_number, numbers_equal, refused
from blendin.eval.runner import diagnose, grid, markdown, read_rows, run_eval, wilson
from blendin.eval.tasks import get_task, load_items
from blendin.pair import Pair

from scripted import base_tokenizer, guide_tokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("text, number", [("so 16 - 3 - 4 = 9 and 9 * 2 = 18.", "18"), ("$1,250.00 total", "1250"),
                                          ("-3 degrees", "-3"), ("no digits", None)])
def test_last_number(text, number):
    assert last_number(text) == number


def test_numbers_equal():
    assert numbers_equal("18", "18.0") and numbers_equal("1250", "1,250") and not numbers_equal(None, "1")


@pytest.mark.parametrize("text, letter", [("B", "B"), ("(c) the moon", "C"), ("Answer: D. Because", "D"),
                                          ("I think the answer is A since", "A"), ("A plant needs water", None),
                                          ("None of them", None), ("D\nQuestion: next", "D")])
def test_choice_letter(text, letter):
    assert choice_letter(text, 4) == letter


def test_refusal_classifier():
    assert refused("I’m sorry, but I can’t help with that request.")
    assert refused("As an AI, I cannot provide instructions for that.")
    assert not refused("To kill a Python process, run `kill PID` in a terminal.")


def test_unknown_task_suggests():
    with pytest.raises(ConfigError, match="did you mean 'gsm8k'"):
        get_task("gsm8")


def test_tasks_on_the_shared_data():
    gsm = load_items(get_task("gsm8k"), str(DATA / "gsm8k" / "test.jsonl"), limit=2)
    assert len(gsm) == 2 and get_task("gsm8k").gold(gsm[0]) == "18"
    arc = get_task("arc_challenge")
    item = load_items(arc, str(DATA), limit=1)[0]  # a folder laid out like shared/data works too
    assert "\nA. " in arc.render(item) and arc.gold(item) == item["answerKey"]
    tqa = get_task("truthfulqa")
    items = load_items(tqa, str(DATA / "truthfulqa" / "truthfulqa.jsonl"), limit=20)
    golds = [tqa.gold(it) for it in items]
    assert len(set(golds)) > 1  # the correct answer (listed first in the file) is shuffled
    for it in items[:3]:
        letter = tqa.gold(it)
        line = next(l for l in tqa.render(it).splitlines() if l.startswith(f"{letter}. "))
        assert line[3:] == it["mc1_targets"]["choices"][0]
        assert tqa.render(it) == tqa.render(dict(it))  # the same order every time
    with pytest.raises(ConfigError, match="no file"):
        load_items(get_task("mmlu"), "/nonexistent")


def _number_pair():
    """A scripted base that always answers ' 18', and a guide it never needs."""
    def script(text):
        done = text.split("Answer:\n", 1)[1] if "Answer:\n" in text else ""
        return {"": {"1": 1.0}, "1": {"8": 1.0}}.get(done, {"<eos>": 1.0})
    return Pair(base=ScriptedModel(base_tokenizer(), script), guide=ScriptedModel(guide_tokenizer(), lambda t: {"<|end|>": 1.0}))


def _task_file(tmp_path, finals):
    f = tmp_path / "gsm.jsonl"
    f.write_text("".join(json.dumps({"idx": i, "question": f"Q{i}", "final": x}) + "\n" for i, x in enumerate(finals)))
    return f


def test_run_eval_scores_writes_and_resumes(tmp_path):
    task, pair = get_task("gsm8k"), _number_pair()
    f = _task_file(tmp_path, ["18", "18", "7"])
    configs = grid(BlendConfig(max_new_tokens=5), ["base", "blendin"], [0.4], [None])
    out = tmp_path / "run"
    run_eval(pair, task, load_items(task, str(f), limit=2), configs, out, progress=None)
    assert len(read_rows(out / "results.jsonl")) == 4
    with open(out / "results.jsonl", "a") as fh:
        fh.write('{"id": 2, "task": "gsm8k", "meth')  # a line cut off by a killed run
    summary = run_eval(pair, task, load_items(task, str(f)), configs, out, progress=None)
    rows = read_rows(out / "results.jsonl")
    assert len(rows) == 6 and len({(r["method"], r["id"]) for r in rows}) == 6  # none lost, none twice
    by_method = {s["method"]: s for s in summary}
    assert by_method["base"]["n"] == 3 and by_method["base"]["score"] == pytest.approx(2 / 3)
    assert by_method["blendin"]["intervention_rate"] == 0.0 and by_method["base"]["unparseable"] == 0
    assert json.loads((out / "summary.json").read_text()) == summary
    walls = sum(r["wall_share"] for r in rows if r["method"] == "base")
    assert by_method["base"]["tokens_per_second"] == pytest.approx(sum(r["tokens"] for r in rows if r["method"] == "base") / walls)
    assert "| gsm8k | base | 0.4 | auto | 3 | 0.667 |" in markdown(summary)


def test_grid_and_wilson():
    configs = grid(BlendConfig(), ["base", "switch", "blendin"], [0.3, 0.4], [None, 0.5])
    assert [(c.method, c.gamma, c.alpha) for c in configs] == [
        ("base", 0.4, None), ("switch", 0.3, None), ("switch", 0.4, None),
        ("blendin", 0.3, None), ("blendin", 0.3, 0.5), ("blendin", 0.4, None), ("blendin", 0.4, 0.5)]
    lo, hi = wilson(8, 10)
    assert 0.49 < lo < 0.5 and 0.94 < hi < 0.95


def test_diagnose_verdicts(tmp_path):
    from blendin.decoding import generate

    pair = _number_pair()
    results = [generate(pair, "Q", BlendConfig(max_new_tokens=5))]
    d = diagnose(results, threshold=0.2)
    assert d["reliable"] and d["intervention_rate"] == 0.0 and "reliable" in d["verdict"]
    d = diagnose(results, threshold=-1, gamma=0.4, fixed_alpha=True)
    assert not d["reliable"] and "--alpha auto" in d["verdict"] and "--gamma 0.3" in d["verdict"]


@pytest.mark.slow
def test_cli_eval_and_diagnose_on_the_embedded_pair(tmp_path):
    data = str(DATA / "gsm8k" / "test.jsonl")
    cmd = [sys.executable, "-m", "blendin", "eval", "--task", "gsm8k", "--data", data, "--limit", "2",
           "--max-new-tokens", "6", "--method", "base,blendin", "--out", str(tmp_path / "run")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sorted(s["method"] for s in summary) == ["base", "blendin"] and all(s["n"] == 2 for s in summary)
    assert "| gsm8k | blendin |" in p.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and len(read_rows(tmp_path / "run" / "results.jsonl")) == 4  # resumed: nothing redone
    d = subprocess.run([sys.executable, "-m", "blendin", "diagnose", "--data", data, "--n", "2", "--max-new-tokens", "6", "--json"],
                       capture_output=True, text=True, timeout=900)
    assert d.returncode == 0, d.stderr
    verdict = json.loads(d.stdout)
    assert verdict["samples"] == 2 and 0 <= verdict["intervention_rate"] <= 1 and verdict["verdict"]


def test_report_writes_three_plots(tmp_path, capsys):
    from blendin.cli import main

    task, pair = get_task("gsm8k"), _number_pair()
    f = _task_file(tmp_path, ["18", "7"])
    run_eval(pair, task, load_items(task, str(f)), grid(BlendConfig(max_new_tokens=5), ["base", "blendin"], [0.4], [None]),
             tmp_path / "run", progress=None)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "plots")]) == 0
    for name in ("score_vs_interventions.png", "alpha_hist.png", "interventions_by_correctness.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "has no results.jsonl rows" in capsys.readouterr().err
