"""``--backend llama.cpp`` (issue 34): one option that flows through BlendConfig to every command,
checked before any model loads, and part of the eval's resume key (its numbers differ from float32's)."""

import json

import pytest

import blendin.eval.runner
import blendin.pair
from blendin.cli import build_parser, main
from blendin.config import BlendConfig
from blendin.errors import ConfigError
from blendin.eval.runinfo import check_run, record_run
from blendin.eval.tasks import get_task

from test_cli_options import task_file


def test_the_backend_is_checked_by_name_and_against_transformers_only_placements():
    with pytest.raises(ConfigError, match="unknown backend 'llamacpp'.*did you mean 'llama.cpp'"):
        BlendConfig(backend="llamacpp")
    with pytest.raises(ConfigError, match="--dtype.*transformers backend's.*--backend transformers"):
        BlendConfig(backend="llama.cpp", dtype="bfloat16")
    with pytest.raises(ConfigError, match="--guide-device.*--guide-backend transformers"):
        BlendConfig(guide_backend="llama.cpp", guide_device="cuda")
    with pytest.raises(ConfigError, match="threads must be a whole number"):
        BlendConfig(threads=0)
    c = BlendConfig(backend="llama.cpp", guide_backend="transformers", guide_dtype="bfloat16", device="cpu", threads=2)
    assert (c.backend_for("base"), c.backend_for("guide")) == ("llama.cpp", "transformers")


def test_every_command_that_loads_models_takes_the_backend():
    commands = build_parser().commands
    for name in ("generate", "demo", "eval", "diagnose", "serve"):
        flags = {f for a in commands[name]._actions for f in a.option_strings}
        assert {"--backend", "--guide-backend", "--threads"} <= flags, name


@pytest.fixture
def loaded(monkeypatch):
    """No model loaded: the configuration load_pair is asked for, recorded."""
    configs = []
    monkeypatch.setattr(blendin.pair, "check_pair", lambda *a, **k: None)

    def load(config, *a, **k):
        configs.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(blendin.pair, "load_pair", load)
    return configs


def test_generate_hands_the_backend_to_the_pair_it_loads(loaded):
    with pytest.raises(SystemExit):
        main(["generate", "--backend", "llama.cpp", "--guide-backend", "transformers", "--threads", "2", "hello"])
    assert (loaded[0].backend, loaded[0].guide_backend, loaded[0].threads) == ("llama.cpp", "transformers", 2)


def test_a_transformers_model_under_llama_cpp_is_refused_before_loading(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code = main(["generate", "--backend", "llama.cpp", "--base", str(folder), "hello"])
    err = capsys.readouterr().err
    assert code != 0 and "llama.cpp backend runs GGUF files" in err and "--backend transformers" in err


def test_the_backend_is_in_the_resume_key_and_the_threads_are_not(tmp_path):
    task = get_task("gsm8k")
    out = tmp_path / "run"
    record_run(out, task, [BlendConfig(backend="llama.cpp", threads=2)])
    check_run(out, task, BlendConfig(backend="llama.cpp", threads=1))  # threads: speed only
    with pytest.raises(ConfigError, match="backend"):
        check_run(out, task, BlendConfig())
    recorded = json.loads((out / "run.json").read_text())["tasks"]["gsm8k"]
    assert recorded["placement"]["base"] == {"device": "cpu", "dtype": "gguf"} and "threads" not in recorded


def test_a_folder_from_before_the_option_resumes_under_transformers(tmp_path):
    task = get_task("gsm8k")
    out = tmp_path / "run"
    record_run(out, task, [BlendConfig()])
    path = out / "run.json"
    data = json.loads(path.read_text())
    for key in ("backend", "guide_backend"):
        del data["tasks"]["gsm8k"][key]
    path.write_text(json.dumps(data))
    check_run(out, task, BlendConfig())
    with pytest.raises(ConfigError, match="backend"):
        check_run(out, task, BlendConfig(backend="llama.cpp"))


def test_a_row_that_does_not_fit_the_context_fails_before_a_session_opens():
    from blendin.decoding import generate, generate_many
    from scripted import config, scripted_pair

    pair = scripted_pair({"": {"▁yes": 1.0}, " yes": {"<eos>": 1.0}}, {"": {"Ġyes": 1.0}})
    pair.base.context_length, pair.base.context_flag = 8, "--context"
    with pytest.raises(ConfigError) as refused:
        generate(pair, "a prompt of many chars", config(method="base", max_new_tokens=4))
    message = str(refused.value)
    assert "past the base model's context of 8 tokens" in message and "--context" in message and "\n" not in message
    assert pair.base.sessions == []  # refused before any cache was taken
    # in a batch the row that does not fit fails alone; the one that fits decodes
    rows = dict(generate_many(pair, ["a prompt of many chars", "ok"], config(method="base", max_new_tokens=4), batch_size=2))
    assert rows[1].text == " yes" and "context of 8 tokens" in str(rows[0].error)


def test_the_context_option_reaches_the_config_and_is_not_in_the_resume_key(loaded, tmp_path):
    with pytest.raises(SystemExit):
        main(["generate", "--backend", "llama.cpp", "--context", "1024", "hello"])
    assert loaded[0].context == 1024
    with pytest.raises(ConfigError, match="context must be a whole number >= 16"):
        BlendConfig(context=8)
    task = get_task("gsm8k")
    record_run(tmp_path / "run", task, [BlendConfig(backend="llama.cpp", context=1024)])
    check_run(tmp_path / "run", task, BlendConfig(backend="llama.cpp"))  # memory only: the answers are the same
