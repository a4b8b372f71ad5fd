"""greedy_parity on scripted models: a faulty batched run (a row that fails, a row that stops early,
rows mixed up) is never ok; a healthy one is, and its output keeps the shape benchmarks/gpu.py reads."""

import json
from dataclasses import replace

import pytest

import blendin.decoding
from blendin.backends.fake import ScriptedModel, ScriptedSession
from blendin.pair import Pair
from blendin.parity import greedy_parity

from scripted import after_prompt, base_tokenizer, config, guide_tokenizer

PROMPTS = ["Q1", "Q22", "Q333"]  # different lengths: the batched run pads them together
# the base is sure of every token: " The cat" then the end; the guide is never consulted
ANSWER = {"": {"▁The": 0.9, "▁no": 0.1}, " The": {"▁cat": 0.8, "▁yes": 0.2}, " The cat": {"<eos>": 1.0}, " The yes": {"<eos>": 1.0}}


class FaultySession(ScriptedSession):
    broken = False  # set by a faulty batched pass: this row's cache is lost, every later pass fails

    def _forward_rows(self, new_ids, keep):
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super()._forward_rows(new_ids, keep)


class FaultyDevice(ScriptedModel):
    """A batched model (``forward_batch``) whose batched pass goes wrong for the rows ``fault(text)``
    picks (the decoded context, prompt included): "error" breaks them (the pass raises; the rows
    retried alone fail too), "swap" hands each of them the next row's distribution. One row at a
    time (``generate`` alone) never goes through the batched pass: always right."""

    batched = True

    def __init__(self, script, fault=lambda text: False, kind="error"):
        super().__init__(base_tokenizer(), script, name="fake-base")
        self.fault, self.kind = fault, kind

    def session(self):
        s = FaultySession(self)
        self.sessions.append(s)
        return s

    def forward_batch(self, sessions):
        decode = self.tokenizer.decode
        faulty = [s for s in sessions if self.fault(decode(s.ids))]
        if faulty and self.kind == "error":
            for s in faulty:
                s.broken = True
            raise RuntimeError("CUDA error: device-side assert triggered")
        right = {}
        for s in sessions:
            s.logprobs()
            right[s] = s._logprobs
        for i, s in enumerate(sessions):
            if s in faulty:
                s._logprobs = right[sessions[(i + 1) % len(sessions)]]


def pair_with(base) -> Pair:
    guide = ScriptedModel(guide_tokenizer(), lambda t: {"ĠThe": 1.0}, name="fake-guide")
    return Pair(base=base, guide=guide)


def answer(text):
    return ANSWER[after_prompt(text)]


def check(pair, **kw):
    return greedy_parity(pair, PROMPTS, config(method="base", **kw), batch_size=3)


def test_a_healthy_batched_run_is_ok_and_identical():
    r = check(pair_with(FaultyDevice(answer)))
    assert r["ok"] and r["identical"] == r["rows"] == 3 and r["partings"] == []
    assert r["agreeing_tokens"] == r["tokens"] == 3 * 3  # ' The', ' cat', the end


def test_a_row_that_fails_when_batched_is_a_failure():
    # the second prompt's row breaks after its first token, in the batched run only: before the fix its
    # one agreeing token was a "prefix" of the alone answer, counted as a near tie and ok
    base = FaultyDevice(answer, fault=lambda text: text.startswith("Q22") and after_prompt(text) == " The")
    r = check(pair_with(base))
    assert not r["ok"], r
    assert r["identical"] == 2
    (p,) = r["partings"]
    assert p["prompt"] == 1 and p["kind"] == "error" and not p["near_tie"]
    assert p["step"] == 1 and (p["alone_tokens"], p["batched_tokens"]) == (3, 1)
    assert (p["alone_stop"], p["batched_stop"]) == ("eos", "error")
    assert "batched" in p["detail"] and "illegal memory access" in p["detail"]


def test_a_row_that_fails_before_its_first_token_is_a_failure():
    base = FaultyDevice(answer, fault=lambda text: text.startswith("Q333"))
    r = check(pair_with(base))
    assert not r["ok"], r
    (p,) = r["partings"]
    assert (p["prompt"], p["step"], p["kind"], p["batched_tokens"]) == (2, 0, "error", 0)


def test_a_row_that_fails_alone_is_a_failure_not_a_crash():
    # the model fails on the third prompt in both runs: the check reports the row and compares the others
    def script(text):
        if text.startswith("Q333"):
            raise RuntimeError("the prompt is over the context length")
        return answer(text)

    r = check(pair_with(FaultyDevice(script)))
    assert not r["ok"] and r["identical"] == 2
    (p,) = r["partings"]
    assert p["prompt"] == 2 and p["kind"] == "error" and (p["alone_stop"], p["batched_stop"]) == ("error", "error")
    assert "context length" in p["detail"]


def _patch_batched(monkeypatch, row: int, change):
    """generate_many's result for ``row`` replaced by ``change(result)`` (an engine fault, simulated)."""
    real = blendin.decoding.generate_many

    def faulty(*args, **kwargs):
        for i, r in real(*args, **kwargs):
            yield i, change(r) if i == row else r

    monkeypatch.setattr(blendin.decoding, "generate_many", faulty)


@pytest.mark.parametrize("reason", ["stop", "eos", "length"])
def test_a_batched_row_that_stops_early_is_a_divergence(monkeypatch, reason):
    # the same tokens as far as it goes, but it stopped a token early: the stop decision differed
    _patch_batched(monkeypatch, 0, lambda r: replace(r, steps=r.steps[:2], tokens=2, stop_reason=reason))
    r = check(pair_with(FaultyDevice(answer)))
    assert not r["ok"], r
    (p,) = r["partings"]
    assert p["prompt"] == 0 and p["step"] == 2 and p["kind"] == "stop" and not p["near_tie"]
    assert (p["alone_stop"], p["batched_stop"], p["alone_tokens"], p["batched_tokens"]) == ("eos", reason, 3, 2)
    assert "eos" in p["detail"] and reason in p["detail"]


def test_a_batched_row_that_goes_on_past_the_alone_answer_is_a_divergence(monkeypatch):
    _patch_batched(monkeypatch, 2, lambda r: replace(r, steps=r.steps + r.steps[-1:], tokens=4, stop_reason="length"))
    r = check(pair_with(FaultyDevice(answer)))
    assert not r["ok"], r
    (p,) = r["partings"]
    assert (p["prompt"], p["step"], p["kind"], p["alone_tokens"], p["batched_tokens"]) == (2, 3, "stop", 3, 4)


def test_the_same_tokens_with_an_error_are_a_failure(monkeypatch):
    _patch_batched(monkeypatch, 1, lambda r: replace(r, stop_reason="error", error="RuntimeError: out of memory"))
    r = check(pair_with(FaultyDevice(answer)))
    assert not r["ok"] and r["identical"] == 2, r
    (p,) = r["partings"]
    assert p["kind"] == "error" and p["step"] == 3 and "out of memory" in p["detail"]


def test_the_same_tokens_stopped_for_another_reason_are_a_divergence(monkeypatch):
    _patch_batched(monkeypatch, 1, lambda r: replace(r, stop_reason="stop"))
    r = check(pair_with(FaultyDevice(answer)))
    assert not r["ok"] and r["identical"] == 2, r
    (p,) = r["partings"]
    assert p["kind"] == "stop" and (p["alone_stop"], p["batched_stop"]) == ("eos", "stop")


def test_rows_mixed_up_part_on_a_clear_token():
    # the batched pass gives the first prompt's row the next row's distribution at the second step;
    # that row's own answer: ' The yes' (made to differ), so the parting is a token clearly led
    def script(text):
        if text.startswith("Q1") and after_prompt(text) == " The":
            return {"▁yes": 0.8, "▁cat": 0.2}
        return answer(text)

    base = FaultyDevice(script, fault=lambda text: text.startswith("Q1") and after_prompt(text) == " The", kind="swap")
    r = check(pair_with(base))
    assert not r["ok"], r
    (p,) = r["partings"]
    assert (p["prompt"], p["step"], p["kind"], p["near_tie"]) == (0, 1, "token", False)
    assert p["gap"] == pytest.approx((0.8 - 0.2) / 0.8)


def test_output_keeps_the_shape_benchmarks_gpu_reads(monkeypatch):
    _patch_batched(monkeypatch, 1, lambda r: replace(r, steps=r.steps[:1], tokens=1, stop_reason="error", error="boom"))
    r = check(pair_with(FaultyDevice(answer)))
    # benchmarks/gpu.py: these keys, and [prompt, step, round(gap, 4)] per parting
    assert {"identical", "rows", "agreeing_tokens", "tokens", "ok", "partings"} <= set(r)
    assert [[p["prompt"], p["step"], round(p["gap"], 4)] for p in r["partings"]] == [[1, 1, 0.0]]
    json.dumps(r, allow_nan=False)  # strict JSON


def scripted_base(first: dict) -> Pair:
    script = {**ANSWER, "": first, " no": {"<eos>": 1.0}}
    return pair_with(ScriptedModel(base_tokenizer(), lambda t: script[after_prompt(t)], name="fake-base"))


def test_across_backends_a_flip_within_the_backends_movement_is_a_near_tie():
    from blendin.parity import BACKEND_TIE_TOLERANCE, backend_parity

    tie = BACKEND_TIE_TOLERANCE["llama.cpp"]
    reference = scripted_base({"▁The": 0.52, "▁no": 0.48})  # the top two 0.04 apart: each moving 0.02 swaps them
    moved = scripted_base({"▁The": 0.48, "▁no": 0.52})
    r = backend_parity(reference, moved, PROMPTS, config(method="base", backend="llama.cpp"))
    assert r["ok"] and r["identical"] == 0 and r["tie_tolerance"] == tie
    assert all(p["kind"] == "token" and p["near_tie"] and p["gap"] == pytest.approx(0.02) for p in r["partings"])
    assert "reference chose token" in r["partings"][0]["detail"] and ", llama.cpp " in r["partings"][0]["detail"]
    clear = scripted_base({"▁The": 0.1, "▁no": 0.9})  # the reference led by 0.8: no quantization moves that far
    r = backend_parity(scripted_base({"▁The": 0.9, "▁no": 0.1}), clear, PROMPTS, config(method="base", backend="llama.cpp"))
    assert not r["ok"] and not any(p["near_tie"] for p in r["partings"])
    same = backend_parity(reference, scripted_base({"▁The": 0.52, "▁no": 0.48}), PROMPTS, config(method="base", backend="llama.cpp"))
    assert same["ok"] and same["identical"] == len(PROMPTS)
