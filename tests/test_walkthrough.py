"""What a new user's walk through the README still hit: each fails in one line before models load."""

import json
import socket

import pytest

from blendin.cli import main


def test_eval_data_of_another_task_is_refused_before_models_load(tmp_path, capsys, no_models):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text(json.dumps({"id": 1, "question": "2+3?", "final": "5"}) + "\n")
    code = main(["eval", "--task", "arc_challenge", "--data", str(data), "--limit", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a 'arc_challenge' item (no field 'choices')" in err and "--data" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_serve_on_a_port_in_use_fails_before_models_load(capsys, no_models):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_serve_port_0_is_resolved_before_start(monkeypatch, no_models):
    import blendin.server

    seen = {}
    monkeypatch.setattr(blendin.server, "serve", lambda config, settings: seen.setdefault("port", settings.port))
    assert main(["serve", "--port", "0"]) == 0
    assert seen["port"] > 0  # the start-up line names a real port


def test_two_unknown_models_are_both_named(capsys):
    code = main(["generate", "--base", "gemma-3-27m", "--guide", "smollm-135m", "hi"])
    err = capsys.readouterr().err
    assert code == 2 and "base model: " in err and "guide model: " in err
    assert "did you mean 'gemma-3-270m'" in err
