"""A grid of two real pairs sharing a base (Gemma-3-270m guided by SmolLM2-135M and by
Qwen2.5-Coder-0.5B): the base alone is decoded once, and the copy equals what decoding it again gives."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
P1, P4 = "gemma-3-270m:smollm2-135m-instruct", "gemma-3-270m:qwen2.5-coder-0.5b-instruct"
L1, L4 = "gemma-3-270m+smollm2-135m-instruct", "gemma-3-270m+qwen2.5-coder-0.5b-instruct"


def blendin(*argv):
    done = subprocess.run([sys.executable, "-m", "blendin", *map(str, argv)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_a_grid_copies_the_base_alone_and_the_copy_is_what_decoding_gives(tmp_path):
    common = ["--task", "arc_challenge", "--data", DATA, "--limit", "3", "--max-new-tokens", "8"]
    done = blendin("eval", *common, "--method", "base,blendin", "--pair", P1, "--pair", P4, "--out", tmp_path / "grid")
    assert "3 answers of a model alone copied from another pair" in done.stderr
    copied = {r["id"]: r for r in rows(tmp_path / "grid" / L4 / "results.jsonl") if r["method"] == "base"}
    assert {r["reused_from"] for r in copied.values()} == {L1}
    blendin("eval", *common, "--method", "base", "--base", "gemma-3-270m", "--guide", "qwen2.5-coder-0.5b-instruct", "--out", tmp_path / "fresh")
    fresh = {r["id"]: r for r in rows(tmp_path / "fresh" / "results.jsonl")}
    assert {i: r["output"] for i, r in fresh.items()} == {i: r["output"] for i, r in copied.items()}
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert {(s["pair"], s["method"]) for s in summary} == {(l, m) for l in (L1, L4) for m in ("base", "blendin")}
    blended = {s["pair"]: s for s in summary if s["method"] == "blendin"}
    assert blended[L1]["intervention_rate"] != blended[L4]["intervention_rate"]  # each pair decoded with its own guide
