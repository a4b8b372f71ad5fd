"""Paths the CLI writes (--output, --trace-html, eval --out, report --out): checked before any model
loads, each mistake one line and exit 2; a results file that is not blendin's is refused, not appended to."""

import json
import os
from pathlib import Path

import pytest

from cli_fixtures import ModelLoaded
from blendin.cli import main


@pytest.fixture
def prompts(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "a", "prompt": "What is 2 + 2?"}\n')
    return f


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code, err, *parts):
    assert code == 2, err
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


def unwritable_folder(tmp_path) -> Path:
    """A folder where creating a file fails for this user: a read-only tmp folder, or (as root, whom
    permissions do not stop) /sys, which takes no new files even from root."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    for folder in (ro, Path("/sys")):
        try:
            (folder / ".blendin-test-probe").touch()
            (folder / ".blendin-test-probe").unlink()
        except OSError:
            return folder
    pytest.skip("no folder here refuses new files to this user (root, without a read-only /sys)")


def test_output_in_a_missing_folder(capsys, tmp_path, prompts, models, no_models):
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", tmp_path / "runs" / "r.jsonl", *models)
    one_error_line(code, err, "--output", "does not exist", f"mkdir -p {tmp_path / 'runs'}")


def test_output_under_a_file(capsys, tmp_path, prompts, models, no_models):
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", tmp_path / "notes.txt" / "r.jsonl", *models)
    one_error_line(code, err, "--output", "is a file, not a folder")


def test_output_naming_a_folder(capsys, tmp_path, prompts, models, no_models):
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", tmp_path, *models)
    one_error_line(code, err, f"--output {tmp_path} is a folder", "results.jsonl")


def test_output_in_a_folder_that_takes_no_files(capsys, tmp_path, prompts, models, no_models):
    folder = unwritable_folder(tmp_path)
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", folder / "r.jsonl", *models)
    one_error_line(code, err, "--output", "cannot write in the folder")


@pytest.mark.parametrize("lines, where", [
    (["# my notes", '{"id": "a", "text": "4"}'], "r.jsonl:1 is not valid JSON"),
    (['{"id": "a", "text": "4"}', "[1, 2]"], "r.jsonl:2 is a JSON list, not an object"),
    (['{"prompt": "What is 2 + 2?"}'], 'r.jsonl:1 is a JSON object without "id" and "text"'),
])
def test_output_that_is_not_blendin_results_is_refused(capsys, tmp_path, prompts, models, no_models, lines, where):
    out = tmp_path / "r.jsonl"
    out.write_text("\n".join(lines) + "\n")
    before = out.read_bytes()
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", out, *models)
    one_error_line(code, err, where, "nothing was written to it")
    assert out.read_bytes() == before


def test_output_with_a_line_cut_off_by_a_killed_run_resumes(capsys, tmp_path, prompts, models, no_models):
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "z", "text": "done"}\n{"id": "a", "tex')  # the writer's own start, cut off
    with pytest.raises(ModelLoaded):  # accepted: the run goes on to load the models
        run(capsys, "generate", "--input", prompts, "--output", out, *models)


def test_output_that_is_the_input_is_refused(capsys, prompts, models, no_models):
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", prompts, *models)
    one_error_line(code, err, "is the --input file")


def test_input_that_is_a_folder_or_not_utf8(capsys, tmp_path, models, no_models):
    code, _, err = run(capsys, "generate", "--input", tmp_path, "--output", tmp_path / "r.jsonl", *models)
    one_error_line(code, err, "--input", "is a folder")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    code, _, err = run(capsys, "generate", "--input", bad, "--output", tmp_path / "r.jsonl", *models)
    one_error_line(code, err, "latin1.jsonl:2 is not UTF-8 text")


def test_trace_html_is_checked_before_models_load(capsys, tmp_path, models, no_models):
    code, _, err = run(capsys, "generate", "--trace-html", tmp_path / "missing" / "t.html", *models, "hi")
    one_error_line(code, err, "--trace-html", "does not exist")
    code, _, err = run(capsys, "generate", "--trace-html", tmp_path, *models, "hi")
    one_error_line(code, err, "--trace-html", "is a folder")
    with pytest.raises(ModelLoaded):
        run(capsys, "generate", "--trace-html", tmp_path / "t.html", *models, "hi")
    assert not (tmp_path / "t.html").exists()  # nothing created by the check


def test_trace_html_with_input_is_refused(capsys, tmp_path, prompts, models, no_models):
    code, _, err = run(capsys, "generate", "--input", prompts, "--output", tmp_path / "r.jsonl",
                       "--trace-html", tmp_path / "t.html", *models)
    one_error_line(code, err, "--trace-html", "with PROMPT")


@pytest.fixture
def task_file(tmp_path):
    f = tmp_path / "gsm.jsonl"
    f.write_text("".join(json.dumps({"idx": i, "question": f"Q{i}", "final": "1"}) + "\n" for i in range(3)))
    return f


def eval_args(task_file, models, *more):
    return ["eval", "--task", "gsm8k", "--data", task_file, *models, *more]


def test_eval_out_that_is_a_file(capsys, tmp_path, task_file, models, no_models):
    code, _, err = run(capsys, *eval_args(task_file, models, "--out", task_file))
    one_error_line(code, err, "--out", "is a file; --out takes a folder")


def test_eval_out_and_traces_in_a_folder_that_takes_no_files(capsys, tmp_path, task_file, models, no_models):
    folder = unwritable_folder(tmp_path)
    code, _, err = run(capsys, *eval_args(task_file, models, "--out", folder / "run"))
    one_error_line(code, err, "--out", "cannot write in the folder")
    code, _, err = run(capsys, *eval_args(task_file, models, "--out", tmp_path / "run", "--trace-html", folder / "traces"))
    one_error_line(code, err, "--trace-html", "cannot write in the folder")
    assert not (tmp_path / "run").exists()


def test_eval_trace_html_that_is_a_file(capsys, tmp_path, task_file, models, no_models):
    code, _, err = run(capsys, *eval_args(task_file, models, "--out", tmp_path / "run", "--trace-html", task_file))
    one_error_line(code, err, "--trace-html", "is a file")


def test_eval_out_in_new_folders_is_fine(capsys, tmp_path, task_file, models, no_models):
    with pytest.raises(ModelLoaded):
        run(capsys, *eval_args(task_file, models, "--out", tmp_path / "a" / "b" / "run"))


def test_report_out_that_is_a_file(capsys, tmp_path):
    (tmp_path / "plots").write_text("x")
    code, _, err = run(capsys, "report", tmp_path, "--out", tmp_path / "plots")
    one_error_line(code, err, "--out", "is a file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="shows why the checks try a write: as root")
def test_root_is_not_stopped_by_permissions(capsys, tmp_path, prompts, models, no_models):
    """As root a folder without write permission still takes files: the check tries, so it lets this through."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(ModelLoaded):
        run(capsys, "generate", "--input", prompts, "--output", ro / "r.jsonl", *models)
