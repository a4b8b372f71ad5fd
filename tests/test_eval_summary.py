"""summary.json after a run of several tasks (issue 33): every task of the run, and every task an
earlier run left in the folder, one pair or a grid of them; scripted models, no real ones."""

import json

import pytest

import blendin.pair
from blendin.cli import main
from blendin.eval.grid import parse_pair

from test_eval import _number_pair, _task_file

PAIR = "gemma-3-270m:smollm2-135m-instruct"


@pytest.fixture
def loads(monkeypatch):
    loaded = []
    monkeypatch.setattr(blendin.pair, "check_pair", lambda *a, **k: None)
    monkeypatch.setattr(blendin.pair, "load_pair", lambda config, methods=None: loaded.append(config.base) or _number_pair())
    return loaded


@pytest.fixture
def data(tmp_path):
    """A data folder with two gsm8k items and two xstest prompts."""
    folder = tmp_path / "data"
    (folder / "gsm8k").mkdir(parents=True)
    (folder / "gsm8k" / "test.jsonl").write_text(_task_file(tmp_path, ["18", "7"]).read_text())
    (folder / "xstest").mkdir()
    (folder / "xstest" / "xstest_prompts.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": f"P{i}", "label": "safe"}) + "\n" for i in range(2)))
    return folder


def _eval(capsys, data, out, tasks, *more):
    code = main(["eval", "--task", tasks, "--data", str(data), "--method", "base", "--max-new-tokens", "5", "--out", str(out), *more])
    capsys.readouterr()
    assert code == 0


def _tasks(path) -> list[tuple]:
    return sorted((s["task"], s["method"], s["n"]) for s in json.loads(path.read_text()))


def test_a_two_task_run_summarises_both_and_a_later_run_keeps_them(tmp_path, capsys, data, loads):
    out = tmp_path / "run"
    _eval(capsys, data, out, "gsm8k,xstest")
    assert _tasks(out / "summary.json") == [("gsm8k", "base", 2), ("xstest", "base", 2)]
    _eval(capsys, data, out, "gsm8k", "--method", "base,blendin")  # one task only: the other stays
    assert _tasks(out / "summary.json") == [("gsm8k", "base", 2), ("gsm8k", "blendin", 2), ("xstest", "base", 2)]


def test_a_resume_with_nothing_left_to_decode_still_writes_every_task(tmp_path, capsys, data, loads):
    out = tmp_path / "run"
    _eval(capsys, data, out, "gsm8k,xstest")
    (out / "summary.json").write_text(json.dumps([{"task": "xstest", "method": "base", "n": 1}]))  # as a stopped run left it
    _eval(capsys, data, out, "gsm8k,xstest")
    assert len(loads) == 1  # nothing decoded the second time
    assert _tasks(out / "summary.json") == [("gsm8k", "base", 2), ("xstest", "base", 2)]


def test_a_grid_of_two_tasks_summarises_both_in_the_grid_and_in_the_pair_folder(tmp_path, capsys, data, loads):
    out = tmp_path / "grid"
    _eval(capsys, data, out, "gsm8k,xstest", "--pair", PAIR)
    label = parse_pair(PAIR).label
    assert _tasks(out / label / "summary.json") == [("gsm8k", "base", 2), ("xstest", "base", 2)]
    assert _tasks(out / "summary.json") == [("gsm8k", "base", 2), ("xstest", "base", 2)]
    assert {s["pair"] for s in json.loads((out / "summary.json").read_text())} == {label}
