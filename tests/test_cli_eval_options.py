"""blendin eval's remote-model and sampling options, as generate has them (issue 33): listed in
--help, carried to the configuration the eval decodes with, and recorded in run.json."""

import json

import pytest

import blendin.eval.runner
import blendin.pair
from blendin.cli import build_parser, main

from test_cli_options import task_file

SHARED = ("--base-url", "--base-model", "--guide-url", "--guide-model", "--api-key", "--top-k", "--chunk", "--concurrency",
          "--temperature", "--top-p", "--seed")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_help_lists_the_remote_and_sampling_options(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert [flag for flag in SHARED if flag not in text] == []


def test_eval_and_generate_share_one_definition_of_each():
    """The same help and default in both commands: one helper adds them (cliargs)."""
    commands = build_parser().commands

    def described(name):
        return {a.option_strings[0]: (a.help, a.default, a.dest) for a in commands[name]._actions if a.option_strings}

    ev, gen = described("eval"), described("generate")
    same = [flag for flag in SHARED if flag != "--concurrency"]  # generate's adds ", with --input"
    assert {flag: ev[flag] for flag in same} == {flag: gen[flag] for flag in same}
    assert gen["--concurrency"][0].startswith(ev["--concurrency"][0])


@pytest.fixture
def evaluated(monkeypatch):
    """No model checked or loaded; the configurations ``run_eval`` is given, recorded."""
    configs = []
    monkeypatch.setattr(blendin.pair, "check_pair", lambda *a, **k: None)
    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: object())
    monkeypatch.setattr(blendin.eval.runner, "run_eval", lambda pair, task, items, cs, *a, **k: configs.extend(cs) or [])
    return configs


def test_the_options_reach_the_config_the_eval_runs_with_and_run_json(capsys, tmp_path, evaluated):
    code, _, err = run(capsys, "eval", "--task", "gsm8k", "--data", task_file(tmp_path), "--limit", "2", "--out", tmp_path / "run",
                       "--method", "base,blendin", "--temperature", "0.7", "--top-p", "0.9", "--seed", "11",
                       "--base", "gemma-3-270m", "--base-url", "http://h:8000/v1", "--base-model", "served-base",
                       "--api-key", "sk-secret", "--top-k", "5", "--chunk", "4", "--concurrency", "3",
                       "--guide-url", "http://g:9000/v1", "--guide-model", "served-guide")
    assert code == 0, err
    assert [c.method for c in evaluated] == ["base", "blendin"]
    for c in evaluated:
        assert (c.temperature, c.top_p, c.seed) == (0.7, 0.9, 11)
        assert (c.base_remote.url, c.base_remote.model, c.base_remote.api_key) == ("http://h:8000/v1", "served-base", "sk-secret")
        assert (c.base_remote.top_k, c.base_remote.chunk, c.base_remote.concurrency) == (5, 4, 3)
        assert (c.guide_remote.url, c.guide_remote.model) == ("http://g:9000/v1", "served-guide")
    text = (tmp_path / "run" / "run.json").read_text()
    recorded = json.loads(text)["tasks"]["gsm8k"]
    assert (recorded["temperature"], recorded["top_p"], recorded["seed"]) == (0.7, 0.9, 11)  # they change answers
    assert recorded["base_remote"] == {"url": "http://h:8000/v1", "model": "served-base", "top_k": 5, "chunk": 4}
    assert "sk-secret" not in text


def test_eval_defaults_stay_greedy(capsys, tmp_path, evaluated):
    assert run(capsys, "eval", "--task", "gsm8k", "--data", task_file(tmp_path), "--limit", "1", "--out", tmp_path / "run")[0] == 0
    c = evaluated[0]
    assert (c.temperature, c.top_p, c.seed, c.base_remote, c.guide_remote) == (0.0, 1.0, None, None, None)


@pytest.mark.parametrize("argv, message", [
    (["--pair", "a:b", "--base-url", "http://h/v1", "--base-model", "m"], "--base-url/--guide-url serve the one pair of --base/--guide"),
    (["--pair", "a:b", "--guide-url", "http://h/v1", "--guide-model", "m"], "MODEL@URL"),
    (["--base-url", "http://h/v1"], "--base-url and --base-model go together"),
    (["--seed", "-1"], "--seed must be a whole number in 0.."),
    (["--temperature", "-1"], "--temperature must be >= 0"),
])
def test_bad_remote_or_sampling_options_fail_in_one_line_before_loading(capsys, tmp_path, evaluated, argv, message):
    code, _, err = run(capsys, "eval", "--task", "gsm8k", "--data", task_file(tmp_path), "--out", tmp_path / "run", *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert evaluated == [] and not (tmp_path / "run").exists()
