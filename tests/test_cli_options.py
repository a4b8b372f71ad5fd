"""Options: every bad value is one line naming the flag as typed (exit 2, before any model loads);
--help gives each command only its options, each with a text and its default; diagnose speaks eval's
vocabulary (--limit), decodes as eval does and says what a small sample is worth."""

import argparse
import shlex
import json
import re

import pytest

from blendin.backends.fake import ScriptedModel
from blendin.cli import build_parser, main
from blendin.pair import Pair

from scripted import base_tokenizer, guide_tokenizer


def task_file(tmp_path, n=3):
    f = tmp_path / "gsm.jsonl"
    f.write_text("".join(json.dumps({"idx": i, "question": f"Q{i}", "final": "18"}) + "\n" for i in range(n)))
    return str(f)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


BAD = [
    (["generate", "--gamma", "abc", "hi"], "--gamma must be a number, got 'abc'"),
    (["generate", "--temperature", "warm", "hi"], "--temperature must be a number, got 'warm'"),
    (["generate", "--top-p", "2", "hi"], "--top-p must be in (0, 1]"),
    (["generate", "--max-new-tokens", "lots", "hi"], "--max-new-tokens must be a whole number >= 1, got 'lots'"),
    (["generate", "--max-new-tokens", "-5", "hi"], "--max-new-tokens must be a whole number >= 1, got -5"),
    (["generate", "--seed", "-1", "hi"], "--seed must be a whole number in 0.."),
    (["generate", "--stop", "", "hi"], "--stop must be non-empty text"),
    (["generate", "--top-k", "0", "hi"], "--top-k must be a whole number >= 1, got 0"),
    (["generate", "--chunk", "0", "hi"], "--chunk must be a whole number >= 1, got 0"),
    (["generate", "--concurrency", "0", "hi"], "--concurrency must be a whole number >= 1, got 0"),
    (["generate", "--batch-size", "0", "--input", "q.jsonl", "--output", "r.jsonl"], "--batch-size must be a whole number >= 1, got 0"),
    (["generate", "--gamma"], "--gamma needs a value"),
    (["generate", "--speculate", "fast", "hi"], "unknown speculate 'fast'; choose one of: off, guide, lookup, auto"),
    (["eval", "--task", "gsm8k", "--out", "o", "--speculate", "gide"], "unknown speculate 'gide' (did you mean 'guide'?)"),
    (["generate", "--gama", "0.3", "hi"], "(did you mean '--gamma'?)"),
    (["eval", "--task", "gsm8k", "--out", "o", "--limit", "0"], "--limit must be a whole number >= 1, got 0"),
    (["eval", "--task", "gsm8k", "--out", "o", "--limit", "-1"], "--limit must be a whole number >= 1, got -1"),
    (["eval", "--task", "gsm8k", "--out", "o", "--batch-size", "0"], "--batch-size must be a whole number >= 1"),
    (["eval", "--task", "gsm8k", "--out", "o", "--max-new-tokens", "0"], "--max-new-tokens must be a whole number >= 1"),
    (["eval", "--task", "gsm8k", "--out", "o", "--judge-max-tokens", "0"], "--judge-max-tokens must be a whole number >= 1"),
    (["eval", "--task", "gsm8k", "--out", "o", "--gamma", "1.5"], "--gamma must be a number in [0, 1]"),
    (["eval", "--task", "gsm8k", "--out", "o", "--gamma", ","], "--gamma needs at least one number"),
    (["eval", "--task", "gsm8k", "--out", "o", "--alpha", "auto,2"], "--alpha must be a number in [0, 1] or 'auto'"),
    (["eval", "--task", "gsm8k", "--out", "o", "--method", ","], "--method needs at least one method"),
    (["eval", "--task", "gsm8k"], "blendin eval needs --out"),
    (["diagnose", "--limit", "0"], "--limit must be a whole number >= 1, got 0"),
    (["diagnose", "--n", "0"], "--n must be a whole number >= 1, got 0"),
    (["diagnose", "--threshold", "1.5"], "--threshold must be a number in [0, 1]"),
    (["diagnose", "--gamma", "x"], "--gamma must be a number, got 'x'"),
    (["diagnose", "--alpha", "2"], "--alpha must be a number in [0, 1] or 'auto' (BlendIn's adaptive alpha), got 2"),
    (["serve", "--port", "70000"], "--port must be a whole number in 0..65535, got 70000"),
    (["serve", "--port", "http"], "--port must be a whole number in 0..65535, got 'http'"),
    (["serve", "--max-queue", "0"], "--max-queue must be a whole number >= 1, got 0"),
    (["serve", "--max-tokens-cap", "0"], "--max-tokens-cap must be a whole number >= 1"),
    (["serve", "--max-prompt-tokens", "-3"], "--max-prompt-tokens must be a whole number >= 1"),
    (["serve", "--max-request-bytes", "0"], "--max-request-bytes must be a whole number >= 1"),
    (["serve", "--batch-size", "0"], "--batch-size must be a whole number >= 1"),
    (["serve", "--json"], "unrecognized arguments: --json"),
    (["demo", "--concurrency", "4"], "unrecognized arguments: --concurrency"),
    (["gnerate", "hi"], "unknown command 'gnerate' (did you mean 'generate'?)"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_every_bad_value_is_one_line_naming_the_flag(capsys, no_models, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "", err
    assert err.startswith("Error: ") and err.count("\n") == 1 and "usage:" not in err, err
    assert message in err, err
    assert not re.search(r"\b[a-z]+_[a-z_]+ must\b", err), err  # a flag, never a config field name


def test_eval_limit_zero_loads_nothing(capsys, tmp_path, models, no_models):
    """It used to evaluate one item: the models loaded and a run folder was written."""
    code, _, err = run(capsys, "eval", "--task", "gsm8k", "--data", task_file(tmp_path), "--limit", "0",
                       "--out", tmp_path / "run", *models)
    assert code == 2 and "--limit" in err and not (tmp_path / "run").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and re.fullmatch(r"blendin \S+\n", capsys.readouterr().out)


def commands():
    parser = build_parser()
    return {name: p for name, p in parser.commands.items()}


def options(parser):
    return {a.option_strings[0]: a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS}


@pytest.mark.parametrize("name", ["generate", "demo", "eval", "diagnose", "report", "serve", "prepare"])
def test_every_option_has_help_and_its_default(name):
    parser = commands()[name]
    formatter = parser._get_formatter()
    for flag, action in options(parser).items():
        if flag == "-h":
            continue
        assert action.help, f"{name} {flag} has no help text"
        text = formatter._expand_help(action)
        if not action.required and action.nargs != 0:
            assert "default" in text, f"{name} {flag}: no default in {text!r}"


def test_blendin_alone_prints_every_command_with_an_example_that_parses(capsys):
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    parser = build_parser()
    for name in parser.commands:  # every command is listed, with an example of its own
        example = next(line for line in out.splitlines() if line.strip().startswith(f"$ blendin {name}"))
        argv = shlex.split(example.split("$ blendin ", 1)[1].split("  #")[0])
        args, extra = parser.parse_known_args(argv)
        assert args.command == name and extra == [], example


def test_each_command_shows_only_options_that_apply(capsys):
    cmds = commands()
    assert "--json" not in options(cmds["serve"]) and "--json" in options(cmds["demo"])
    assert "--concurrency" not in options(cmds["demo"])
    assert "--input" not in cmds["serve"].format_help()
    assert "--input" in options(cmds["generate"])["--concurrency"].help
    assert "--output" in options(cmds["generate"])["--input"].help
    serve = options(cmds["serve"])
    formatter = cmds["serve"]._get_formatter()
    assert formatter._expand_help(serve["--port"]).endswith("(default: 8000)")
    assert formatter._expand_help(serve["--max-queue"]).endswith("(default: 256)")
    for name in ("eval", "diagnose", "prepare"):
        assert "Hugging Face id" in options(cmds[name])["--base"].help


def test_diagnose_speaks_of_limit_and_keeps_n_hidden(capsys):
    text = commands()["diagnose"].format_help()
    assert "--limit N" in text and "--n" not in text


def _scripted_pair():
    """A scripted base that answers ' 18' with certainty, except on the question 'Q0', where it is
    unsure of its first token (the guide steps in): prompts with different intervention rates."""
    def script(text):
        done = text.split("Answer:\n", 1)[1] if "Answer:\n" in text else ""
        if done == "" and "Q0" in text:
            return {"1": 0.35, "8": 0.35, "2": 0.3}
        return {"": {"1": 1.0}, "1": {"8": 1.0}}.get(done, {"<eos>": 1.0})

    return Pair(base=ScriptedModel(base_tokenizer(), script), guide=ScriptedModel(guide_tokenizer(), lambda t: {"1": 0.9, "<|end|>": 0.1}))


@pytest.fixture
def decoded(monkeypatch):
    """Scripted models instead of real ones; records the configurations generate_many decodes with."""
    import blendin.decoding
    import blendin.pair

    configs = []
    real = blendin.decoding.generate_many

    def spy(pair, prompts, config, batch_size=16, **kw):
        configs.append(config)
        return real(pair, prompts, config, batch_size=batch_size, **kw)

    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: _scripted_pair())
    monkeypatch.setattr(blendin.decoding, "generate_many", spy)
    return configs


def test_diagnose_decodes_as_eval_does(capsys, tmp_path, models, decoded, monkeypatch):
    import blendin.eval.runner
    from blendin.eval.runinfo import task_config
    from blendin.eval.tasks import get_task

    data = task_file(tmp_path)
    assert run(capsys, "diagnose", "--data", data, "--n", "2", "--gamma", "0.3", *models)[0] == 0  # --n: the old name
    evaluated = []
    monkeypatch.setattr(blendin.eval.runner, "run_eval", lambda pair, task, items, configs, *a, **k: evaluated.extend(configs) or [])
    assert run(capsys, "eval", "--task", "gsm8k", "--data", data, "--limit", "2", "--gamma", "0.3",
               "--out", tmp_path / "run", *models)[0] == 0
    assert decoded[0] == task_config(get_task("gsm8k"), evaluated[0])
    assert "Question:" in decoded[0].stops and decoded[0].max_new_tokens == 256


def test_diagnose_warns_below_twenty_prompts(capsys, tmp_path, models, decoded):
    code, out, err = run(capsys, "diagnose", "--data", task_file(tmp_path, 3), "--n", "3", *models)
    assert code == 0 and "verdict:" in out
    assert "warning: a verdict on 3 prompts is a rough sign" in err and "--limit 20" in err and "95% interval" in err
    assert "on both sides of the 20% threshold: the verdict could go either way" in err
    code, out, _ = run(capsys, "diagnose", "--data", task_file(tmp_path, 3), "--limit", "3", "--json", *models)
    d = json.loads(out)
    assert d["samples"] == 3 and "rough sign" in d["warning"]


def test_diagnose_on_twenty_prompts_does_not_warn(capsys, tmp_path, models, decoded):
    code, out, err = run(capsys, "diagnose", "--data", task_file(tmp_path, 25), "--json", *models)
    d = json.loads(out)
    assert code == 0 and d["samples"] == 20 and d["warning"] is None and "warning" not in err
