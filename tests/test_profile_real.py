"""A reliability profile end to end on the embedded pair: diagnose fits and writes it, eval and generate
read it (slow: real models)."""

import json

import pytest

from blendin.cli import main
from blendin.profile import Profile

pytestmark = pytest.mark.slow

ITEMS = [("Which gas do plants take in to make food?", ["oxygen", "carbon dioxide", "nitrogen", "helium"], "B"),
         ("What is frozen water called?", ["ice", "steam", "sand", "glass"], "A"),
         ("Which planet is closest to the Sun?", ["Earth", "Mars", "Mercury", "Jupiter"], "C"),
         ("How many legs does a spider have?", ["six", "four", "ten", "eight"], "D")]


def arc_file(tmp_path):
    f = tmp_path / "arc.jsonl"
    f.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "answerKey": key,
                                     "choices": [{"label": "ABCD"[j], "text": c} for j, c in enumerate(choices)]}) + "\n"
                         for i, (q, choices, key) in enumerate(ITEMS)))
    return str(f)


def test_diagnose_writes_a_profile_that_eval_and_generate_read(tmp_path, capsys):
    data, path = arc_file(tmp_path), tmp_path / "arc-profile.json"
    code = main(["diagnose", "--task", "arc_challenge", "--data", data, "--limit", "4", "--max-new-tokens", "8", "--save-profile", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and "reliability profile: gemma-3-270m on arc_challenge, 4 items scored" in out and f"--profile {path}" in out
    profile = Profile.load(path)
    assert profile.guides == ("smollm2-135m-instruct",) and profile.task == "arc_challenge" and 0.0 <= profile.reliabilities[0] <= 1.0
    evidence = profile.evidence[0]
    assert evidence["n"] == 4 and set(evidence) >= {"score_base", "score_guide_alone", "score_blend", "p_help", "decision"}
    assert main(["eval", "--task", "arc_challenge", "--data", data, "--limit", "4", "--max-new-tokens", "8", "--method", "blendin",
                 "--profile", str(path), "--out", str(tmp_path / "run")]) == 0
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["tasks"]["arc_challenge"]["profile"]
    assert recorded["reliabilities"] == {"smollm2-135m-instruct": profile.reliabilities[0]} and recorded["task"] == "arc_challenge"
    capsys.readouterr()
    assert main(["generate", "--profile", str(path), "--max-new-tokens", "8", "--json", "What is frozen water called?"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 0
