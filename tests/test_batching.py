"""Batched decoding on the embedded pair: the same greedy tokens as each prompt alone."""

import json
import subprocess
import sys

import pytest

from blendin import BlendConfig
from blendin.decoding import generate, generate_many

pytestmark = pytest.mark.slow

PROMPTS = [
    "What is 7 times 8?",
    "A farmer has 12 cows and buys 7 more. Then 5 cows are sold. How many cows are left?",
    "Name a fruit.",
    "Maria reads 15 pages a day for two weeks, then 10 pages a day for one week. How many pages?",
]


@pytest.mark.parametrize("method", ["base", "guide", "switch", "nudging", "blendin"])
def test_batch_matches_alone(embedded_pair, method):
    config = BlendConfig(method=method, max_new_tokens=12)
    alone = [generate(embedded_pair, p, config) for p in PROMPTS]
    together = dict(generate_many(embedded_pair, PROMPTS, config, batch_size=3))  # refill: 4 prompts, 3 rows
    for i, r in enumerate(alone):
        assert [s.token_id for s in together[i].steps] == [s.token_id for s in r.steps], (method, i)
        assert together[i].text == r.text


def test_rows_that_finish_leave_the_batch(embedded_pair):
    config = BlendConfig(method="blendin", max_new_tokens=12, stop=("\n",))
    results = dict(generate_many(embedded_pair, PROMPTS, config, batch_size=4))
    assert sorted(results) == [0, 1, 2, 3]
    cache = embedded_pair.base.runner.cache
    assert len(cache.free) == cache.used  # every row's cache slot was given back


def test_methods_share_a_batch_and_read_a_common_prompt_once(embedded_pair, monkeypatch):
    """Rows of every method in one batch (eval --together): the tokens each method writes alone, and
    the rows that open with the same prompt read it once (copied from the row that read it)."""
    from blendin.backends.hf import SlotCache

    for model in (embedded_pair.base, embedded_pair.guide):  # fresh caches: their layers are made inside a pass
        monkeypatch.setattr(model.runner, "cache", SlotCache())
    methods = ["base", "switch", "nudging", "blendin", "guide"]
    configs = {m: BlendConfig(method=m, max_new_tokens=12) for m in methods}
    alone = {(m, i): generate(embedded_pair, p, configs[m]) for m in methods for i, p in enumerate(PROMPTS[:3])}
    runners = [embedded_pair.base.runner, embedded_pair.guide.runner]
    shared = [r.tokens_shared for r in runners]
    jobs = [(m, i) for i in range(3) for m in methods]
    mixed = dict(generate_many(embedded_pair, [{"prompt": PROMPTS[i], "config": configs[m]} for m, i in jobs],
                               configs["base"], batch_size=8))
    for n, job in enumerate(jobs):
        assert [s.token_id for s in mixed[n].steps] == [s.token_id for s in alone[job].steps], job
        assert mixed[n].interventions == alone[job].interventions
    # 4 methods run the base on each item: one row reads the prompt, three copy it (each over SHARE_MIN)
    assert runners[0].tokens_shared - shared[0] > 3 * 3 * runners[0].SHARE_MIN
    assert runners[1].tokens_shared > shared[1]  # and the guide's rows theirs
    cache = embedded_pair.base.runner.cache
    assert len(cache.free) == cache.used  # every row given back


def test_a_row_copies_the_beginning_another_row_read(embedded_pair, monkeypatch):
    """The copy goes into layers a pass made (inference tensors), and gives the row's own distribution."""
    import torch

    from blendin.backends.hf import SlotCache

    model = embedded_pair.base
    runner = model.runner
    monkeypatch.setattr(runner, "cache", SlotCache())
    ids = model.tokenizer.encode_prompt("Question: " + PROMPTS[1] + "\nAnswer:")
    first, second = model.session(), model.session()
    first.sync(ids)
    second.sync(ids)
    before = runner.tokens_shared
    model.forward_batch([first, second])  # one reads the prompt, the other copies it
    assert runner.tokens_shared - before == len(ids) - 1
    alone = model.session()
    alone.sync(ids + [ids[-1]])
    alone.logprobs()  # reads its last token only, after the copied beginning
    assert runner.tokens_shared - before == (len(ids) - 1) + len(ids)  # all of the first row it holds
    assert torch.allclose(first.logprobs(), second.logprobs(), atol=1e-4)
    assert int(first.logprobs().argmax()) == int(second.logprobs().argmax())
    for s in (first, second, alone):
        s.close()


def test_cli_input_output_resume(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": p}) for i, p in enumerate(PROMPTS[:3])) + "\n")
    out.write_text(json.dumps({"id": "q1", "text": "done before"}) + "\n")  # as if a killed run did q1
    cmd = [sys.executable, "-m", "blendin", "generate", "--input", str(inp), "--output", str(out), "--max-new-tokens", "4", "--batch-size", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == ["q0", "q1", "q2"]
    assert all(x["tokens"] <= 4 and "steps" in x for x in lines if x["id"] != "q1")
    assert "1 of 3 prompts already in" in p.stderr
