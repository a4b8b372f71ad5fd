"""The early warning read back from runs (eval.warning): the rate on a run's first items, as
``blendin diagnose`` measures it on the same items, and whether it ranks pairs as their scores do."""

import json

import pytest

from blendin import BlendConfig
from blendin.backends.fake import ScriptedModel
from blendin.eval.diagnose import diagnose_pair
from blendin.eval.runner import grid, read_rows, run_eval
from blendin.eval.tasks import get_task, load_items
from blendin.eval.warning import early_warnings, kendall_tau, rank_agreement, warning_markdown
from blendin.pair import Pair

from scripted import base_tokenizer, guide_tokenizer
from test_eval import _task_file


def _row(method, i, tokens, interventions, ok, error=None):
    return {"task": "t", "method": method, "gamma": 0.4, "alpha": "auto", "id": i, "tokens": tokens,
            "interventions": interventions, "score": float(ok), "correct": ok, "extracted": "x", "error": error,
            "mean_alpha": None, "seconds": 1.0}


def test_the_first_items_are_the_lowest_ids_and_the_rate_is_pooled_over_their_tokens():
    # ids 0..24 written out of order (a batch finishes as it finishes); ids 2 and 10 sort as numbers
    rows = [_row("blendin", i, 10, 5 if i >= 20 else 1, i < 5) for i in reversed(range(25))]
    rows[0] = _row("blendin", 24, 10, 5, True, error="boom")  # a failed row is left out, as diagnose leaves it
    rows += [_row("base", i, 10, 0, i < 10) for i in range(25)] + [_row("guide", i, 10, 10, False) for i in range(25)]
    rows.append(_row("blendin", 3, 30, 0, True) | {"task": "other"})
    [e, other] = early_warnings({"P": rows})
    assert (e["task"], e["config"], e["sample_n"], e["n"]) == ("t", "blendin g0.4", 20, 24)
    assert e["early_rate"] == pytest.approx(20 / 200) and e["reliable"] and e["early_score"] == pytest.approx(5 / 20)
    assert e["rate"] == pytest.approx((20 + 4 * 5) / 240) and e["score"] == pytest.approx(5 / 24)
    assert (e["base"], e["guide"]) == (pytest.approx(10 / 25), 0.0)
    assert (other["task"], other["early_rate"], other["base"]) == ("other", 0.0, None)
    assert not early_warnings({"P": rows}, sample=24, threshold=0.15)[0]["reliable"]  # 40 of 240 with the late items: past 15%
    ids = [_row("blendin", i, 10, i == 10, True) for i in ("10", 2, "x")]
    assert early_warnings({"P": ids}, sample=1)[0]["early_rate"] == 0.0  # 2 comes before 10, not "10" before "2"


def test_kendall_tau_and_the_ranking_of_pairs():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0 and kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert kendall_tau([1, 2, 3], [10, 30, 20]) == pytest.approx(1 / 3) and kendall_tau([1], [1]) is None
    runs = {name: [_row("blendin", i, 10, k, i < right) for i in range(20)]
            for name, k, right in (("low rate, good", 1, 15), ("mid", 2, 10), ("high rate, bad", 5, 2))}
    entries = early_warnings(runs)
    assert [a["tau"] for a in rank_agreement(entries)] == [1.0]
    text = warning_markdown(entries)
    assert "| high rate, bad | t | blendin g0.4 | 50.0% (20) | unreliable | 0.100 | 20 | 50.0% | 0.100 | - | - |" in text
    assert "| t | blendin g0.4 | 3 | +1.00 |" in text


def test_a_sample_smaller_than_diagnose_s_says_it_is_too_few_to_decide():
    rows = [_row("blendin", i, 10, 1, True) for i in range(3)]
    text = warning_markdown(early_warnings({"three items": rows}))
    assert "| 10.0% (3) | reliable (only 3 of 20 items: too few to decide) |" in text


def _unsure_on(question: str) -> Pair:
    """A scripted pair whose base is unsure only at the first token of ``question``'s answer (the
    guide then steps in) and sure everywhere else."""
    def base(text):
        done = text.split("Answer:\n", 1)[1] if "Answer:\n" in text else ""
        if done:
            return {"<eos>": 1.0}
        return {"1": 0.38, "2": 0.32, "7": 0.30} if question in text else {"1": 1.0}
    return Pair(base=ScriptedModel(base_tokenizer(), base), guide=ScriptedModel(guide_tokenizer(), lambda t: {"7": 0.6, "<|end|>": 0.4}))


def test_the_rate_read_from_a_run_is_what_diagnose_measures_on_the_same_items(tmp_path):
    """Only the second item makes the base unsure: the run's first two items must be the ones
    diagnose samples (the first two), and their pooled rate the same number."""
    pair = _unsure_on("Q1")
    task = get_task("gsm8k")
    items = load_items(task, str(_task_file(tmp_path, ["1", "7", "18", "18"])))
    config = BlendConfig(max_new_tokens=5)
    run_eval(pair, task, items, grid(config, ["base", "blendin"], [0.4], [None]), tmp_path / "run", batch_size=3, progress=None)
    [e] = early_warnings({"run": read_rows(tmp_path / "run" / "results.jsonl")}, sample=2)
    d, _ = diagnose_pair(pair, task, items[:2], grid(config, ["blendin"], [0.4], [None])[0])
    assert d["intervention_rate"] > 0 and e["early_rate"] == pytest.approx(d["intervention_rate"])
    assert e["early_score"] == pytest.approx(d["score"]) and e["rate"] < e["early_rate"]  # the later items need no guide


def test_the_first_items_are_the_files_first_when_ids_are_names(tmp_path):
    """ARC's ids are names: its first item, "Mercury_7175875", sorts after "ACTAAP_2009_7_8". The
    early rate must be read on the items diagnose decodes, the file's first, not the first by name."""
    pair = _unsure_on("Q0")
    task = get_task("gsm8k")
    f = tmp_path / "named.jsonl"
    f.write_text("".join(json.dumps({"id": name, "question": f"Q{i}", "final": "7"}) + "\n"
                         for i, name in enumerate(["Mercury_7175875", "ACTAAP_2009_7_8", "AKDE&ED_2008_4_19"])))
    items = load_items(task, str(f))
    config = BlendConfig(max_new_tokens=5)
    run_eval(pair, task, items, grid(config, ["blendin"], [0.4], [None]), tmp_path / "run", batch_size=3, progress=None)
    rows = read_rows(tmp_path / "run" / "results.jsonl")
    assert sorted((r["index"], r["id"]) for r in rows) == [(0, "Mercury_7175875"), (1, "ACTAAP_2009_7_8"), (2, "AKDE&ED_2008_4_19")]
    [e] = early_warnings({"run": rows}, sample=1)
    d, _ = diagnose_pair(pair, task, items[:1], grid(config, ["blendin"], [0.4], [None])[0])
    assert d["intervention_rate"] > 0 and e["early_rate"] == pytest.approx(d["intervention_rate"])
    # rows written before eval recorded the index still fall back to the id order
    assert early_warnings({"run": [{k: v for k, v in r.items() if k != "index"} for r in rows]}, sample=1)[0]["early_rate"] == 0.0
