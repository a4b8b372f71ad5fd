"""The CLI: errors before any model loads, and real runs in a subprocess."""

import io
import json
import subprocess
import sys

import pytest

from blendin.cli import main


def run_main(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--method", "blendn", "hi"], "did you mean 'blendin'"),
        (["generate", "--gamma", "1.5", "hi"], "--gamma must be a number in [0, 1]"),
        (["generate", "--alpha", "2", "hi"], "--alpha must be a number in [0, 1] or 'auto' (BlendIn's adaptive alpha), got 2"),
        (["generate", "--alpha", "lots", "hi"], "--alpha must be a number in [0, 1] or 'auto'"),
        (["generate", "--temperature", "-1", "hi"], "--temperature must be >= 0"),
        (["generate", "--max-new-tokens", "0", "hi"], "--max-new-tokens must be a whole number >= 1, got 0"),
        (["generate", "   "], "the prompt is empty"),
        (["generate", "--base", "no-such-model", "hi"], "Tried: embedded names"),
        (["generate", "--base-url", "http://127.0.0.1:8000", "hi"], "--base-url and --base-model go together"),
        (["generate", "--guide-model", "x", "hi"], "--guide-url and --guide-model go together"),
        (["generate", "--base-url", "u", "--base-model", "m", "--chunk", "0", "hi"], "--chunk must be"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and message in err and "Traceback" not in err


def test_empty_stdin_prompt(capsys, monkeypatch):
    code, _, err = run_main(capsys, "generate", "-", stdin="\n", monkeypatch=monkeypatch)
    assert code == 2 and "prompt is empty" in err


def test_help_lists_the_methods(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "base | guide | switch | nudging | blendin" in capsys.readouterr().out


def blendin(*args, stdin=None):
    exe = [sys.executable, "-m", "blendin.cli", *args]
    return subprocess.run(exe, input=stdin, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_generate_json_from_stdin():
    p = blendin("generate", "--json", "--max-new-tokens", "8", "-", stdin="What is 2 + 2?")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["method"] == "blendin" and d["tokens"] == len(d["steps"]) and 0 < d["tokens"] <= 8
    assert d["gamma"] == 0.4 and d["alpha"] == "auto"
    assert d["base"] == "gemma-3-270m" and d["guide"] == "smollm2-135m-instruct"


@pytest.mark.slow
def test_generate_prints_answer_and_summary():
    p = blendin("generate", "--method", "nudging", "--max-new-tokens", "8", "What is 2 + 2?")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip()
    assert "interventions" in p.stderr and "nudging:" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"prompt": "ok"}', "not json"], "in.jsonl:2: not valid JSON"),
        (['{"id": 1}'], 'needs a non-empty "prompt"'),
        (['{"id": "a", "prompt": "x"}', '{"id": "a", "prompt": "y"}'], "appears twice"),
    ],
)
def test_bad_input_file_is_named_with_its_line(capsys, tmp_path, lines, message):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    code, _, err = run_main(capsys, "generate", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2 and message in err
    assert not (tmp_path / "o.jsonl").exists()


def test_input_needs_output(capsys, tmp_path):
    code, _, err = run_main(capsys, "generate", "--input", str(tmp_path / "x.jsonl"))
    assert code == 2 and "--input and --output go together" in err
