"""Tasks, answer extraction, the eval runner (resume, summary) and the pair diagnosis."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blendin import BlendConfig
from blendin.backends.fake import ScriptedModel
from blendin.errors import ConfigError
from blendin.eval.extract import choice_letter, last_number, numbers_equal, refused
from blendin.config import RemoteSpec
from blendin.eval.runinfo import check_run, record_run, run_settings
from blendin.eval.runner import diagnose, grid, markdown, read_rows, run_eval, summarise, wilson
from blendin.eval.tasks import get_task, load_items
from blendin.pair import Pair

from scripted import base_tokenizer, guide_tokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("text, number", [("so 16 - 3 - 4 = 9 and 9 * 2 = 18.", "18"), ("$1,250.00 total", "1250"),
                                          ("-3 degrees", "-3"), ("no digits", None),
                                          ("the list 2,3,4", "4"), ("1,234 apples", "1234"), ("12,345,678 people", "12345678"),
                                          ("(2, 3, 4)", "4"), ("1,2345", "2345")])
def test_last_number(text, number):
    assert last_number(text) == number


def test_numbers_equal():
    assert numbers_equal("18", "18.0") and numbers_equal("1250", "1,250") and not numbers_equal(None, "1")


@pytest.mark.parametrize("text, letter", [("B", "B"), ("(c) the moon", "C"), ("Answer: D. Because", "D"),
                                          ("I think the answer is A since", "A"), ("A plant needs water", None),
                                          ("None of them", None), ("D\nQuestion: next", "D"),
                                          ("Choice A is wrong; the answer is C", "C"), ("B is correct", "B"),
                                          ("Option B is incorrect, the answer is D", "D"), ("The correct answer is (B).", "B"),
                                          ("A. 3\nB. 4\nAnswer: C", "C"), ("(A) is wrong. Answer: C", "C"),
                                          ("B is the correct answer because", "B"), ("The answer is: B", "B"),
                                          ("A is not correct", None), ("(A) is wrong.", None),
                                          ("Option A is wrong; the correct option is C", "C"),
                                          ("C\nQuestion: Which?\nA. x\nB. y\nAnswer: A", "C"),  # the model's own next question
                                          ("Question: Which?\nAnswer: A", None)])
def test_choice_letter(text, letter):
    assert choice_letter(text, 4) == letter


def test_refusal_classifier():
    assert refused("I’m sorry, but I can’t help with that request.")
    assert refused("As an AI, I cannot provide instructions for that.")
    assert not refused("To kill a Python process, run `kill PID` in a terminal.")


def test_unknown_task_suggests():
    with pytest.raises(ConfigError, match="did you mean 'gsm8k'"):
        get_task("gsm8")


def test_tasks_on_the_shared_data():
    gsm = load_items(get_task("gsm8k"), str(DATA / "gsm8k" / "test.jsonl"), limit=2)
    assert len(gsm) == 2 and get_task("gsm8k").gold(gsm[0]) == "18"
    arc = get_task("arc_challenge")
    item = load_items(arc, str(DATA), limit=1)[0]  # a folder laid out like shared/data works too
    assert "\nA. " in arc.render(item) and arc.gold(item) == item["answerKey"]
    tqa = get_task("truthfulqa")
    items = load_items(tqa, str(DATA / "truthfulqa" / "truthfulqa.jsonl"), limit=20)
    golds = [tqa.gold(it) for it in items]
    assert len(set(golds)) > 1  # the correct answer (listed first in the file) is shuffled
    for it in items[:3]:
        letter = tqa.gold(it)
        line = next(l for l in tqa.render(it).splitlines() if l.startswith(f"{letter}. "))
        assert line[3:] == it["mc1_targets"]["choices"][0]
        assert tqa.render(it) == tqa.render(dict(it))  # the same order every time
    with pytest.raises(ConfigError, match="no file"):
        load_items(get_task("mmlu"), "/nonexistent")


def test_truthfulqa_items_with_more_than_ten_choices():
    """Items 33 and 37 of the file list 11 choices: they were refused as 'not a truthfulqa item'."""
    tqa = get_task("truthfulqa")
    items = load_items(tqa, str(DATA / "truthfulqa" / "truthfulqa.jsonl"), limit=100)
    wide = [it for it in items if len(it["mc1_targets"]["choices"]) > 10]
    assert [it["idx"] for it in wide] == [33, 37]
    for it in wide:
        assert "\nK. " in tqa.render(it)
        letter = tqa.gold(it)
        line = next(l for l in tqa.render(it).splitlines() if l.startswith(f"{letter}. "))
        assert line[3:] == it["mc1_targets"]["choices"][0]
        assert choice_letter(f"The answer is {letter}.", 11) == letter
    assert choice_letter("The answer is K.", 11) == "K" and choice_letter("The answer is K.", 10) is None


def _number_pair():
    """A scripted base that always answers ' 18', and a guide it never needs."""
    def script(text):
        done = text.split("Answer:\n", 1)[1] if "Answer:\n" in text else ""
        return {"": {"1": 1.0}, "1": {"8": 1.0}}.get(done, {"<eos>": 1.0})
    return Pair(base=ScriptedModel(base_tokenizer(), script), guide=ScriptedModel(guide_tokenizer(), lambda t: {"<|end|>": 1.0}))


def _task_file(tmp_path, finals):
    f = tmp_path / "gsm.jsonl"
    f.write_text("".join(json.dumps({"idx": i, "question": f"Q{i}", "final": x}) + "\n" for i, x in enumerate(finals)))
    return f


def test_run_eval_scores_writes_and_resumes(tmp_path):
    task, pair = get_task("gsm8k"), _number_pair()
    f = _task_file(tmp_path, ["18", "18", "7"])
    configs = grid(BlendConfig(max_new_tokens=5), ["base", "blendin"], [0.4], [None])
    out = tmp_path / "run"
    run_eval(pair, task, load_items(task, str(f), limit=2), configs, out, progress=None)
    assert len(read_rows(out / "results.jsonl")) == 4
    with open(out / "results.jsonl", "a") as fh:
        fh.write('{"id": 2, "task": "gsm8k", "meth')  # a line cut off by a killed run
    summary = run_eval(pair, task, load_items(task, str(f)), configs, out, progress=None)
    rows = read_rows(out / "results.jsonl")
    assert len(rows) == 6 and len({(r["method"], r["id"]) for r in rows}) == 6  # none lost, none twice
    by_method = {s["method"]: s for s in summary}
    assert by_method["base"]["n"] == 3 and by_method["base"]["score"] == pytest.approx(2 / 3)
    assert by_method["blendin"]["intervention_rate"] == 0.0 and by_method["base"]["unparseable"] == 0
    assert json.loads((out / "summary.json").read_text()) == summary
    walls = sum(r["wall_share"] for r in rows if r["method"] == "base")
    assert by_method["base"]["tokens_per_second"] == pytest.approx(sum(r["tokens"] for r in rows if r["method"] == "base") / walls)
    assert "| gsm8k | base | 0.4 | auto | 3 | 0.667 |" in markdown(summary)


def test_grid_and_wilson():
    configs = grid(BlendConfig(), ["base", "switch", "blendin"], [0.3, 0.4], [None, 0.5])
    assert [(c.method, c.gamma, c.alpha) for c in configs] == [
        ("base", 0.4, None), ("switch", 0.3, None), ("switch", 0.4, None),
        ("blendin", 0.3, None), ("blendin", 0.3, 0.5), ("blendin", 0.4, None), ("blendin", 0.4, 0.5)]
    lo, hi = wilson(8, 10)
    assert 0.49 < lo < 0.5 and 0.94 < hi < 0.95


def test_diagnose_verdicts(tmp_path):
    from blendin.decoding import generate

    pair = _number_pair()
    results = [generate(pair, "Q", BlendConfig(max_new_tokens=5))]
    d = diagnose(results, threshold=0.2)
    assert d["reliable"] and d["intervention_rate"] == 0.0 and "reliable" in d["verdict"]
    d = diagnose(results, threshold=-1, gamma=0.4, fixed_alpha=True)
    assert not d["reliable"] and "--alpha auto" in d["verdict"] and "--gamma 0.3" in d["verdict"]


@pytest.mark.slow
def test_cli_eval_and_diagnose_on_the_embedded_pair(tmp_path):
    data = str(DATA / "gsm8k" / "test.jsonl")
    cmd = [sys.executable, "-m", "blendin", "eval", "--task", "gsm8k", "--data", data, "--limit", "2",
           "--max-new-tokens", "6", "--method", "base,blendin", "--out", str(tmp_path / "run")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sorted(s["method"] for s in summary) == ["base", "blendin"] and all(s["n"] == 2 for s in summary)
    assert "| gsm8k | blendin |" in p.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and len(read_rows(tmp_path / "run" / "results.jsonl")) == 4  # resumed: nothing redone
    d = subprocess.run([sys.executable, "-m", "blendin", "diagnose", "--data", data, "--n", "2", "--max-new-tokens", "6", "--json"],
                       capture_output=True, text=True, timeout=900)
    assert d.returncode == 0, d.stderr
    verdict = json.loads(d.stdout)
    assert verdict["samples"] == 2 and 0 <= verdict["intervention_rate"] <= 1 and verdict["verdict"]


def test_report_writes_three_plots(tmp_path, capsys):
    from blendin.cli import main

    task, pair = get_task("gsm8k"), _number_pair()
    f = _task_file(tmp_path, ["18", "7"])
    run_eval(pair, task, load_items(task, str(f)), grid(BlendConfig(max_new_tokens=5), ["base", "blendin"], [0.4], [None]),
             tmp_path / "run", progress=None)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "plots")]) == 0
    for name in ("score_vs_interventions.png", "alpha_hist.png", "interventions_by_correctness.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "has no results.jsonl rows" in capsys.readouterr().err


def _eval(pair, tmp_path, base=BlendConfig(max_new_tokens=5), methods=("base", "blendin"), gammas=(0.4,), limit=None):
    task = get_task("gsm8k")
    f = _task_file(tmp_path, ["18", "18", "7"])
    return run_eval(pair, task, load_items(task, str(f), limit=limit), grid(base, methods, gammas, [None]), tmp_path / "run", progress=None)


@pytest.mark.parametrize("changes, field", [
    ({"max_new_tokens": 6}, "max_new_tokens: 5 there, 6 now"), ({"base": "other-base"}, "base: "), ({"guide": "g2"}, "guide: "),
    ({"seed": 1}, "seed: null there, 1 now"), ({"temperature": 0.7}, "temperature"), ({"top_p": 0.9}, "top_p"),
    ({"stop": ("###",)}, "stop: "), ({"nudge_chunk": 4}, "nudge_chunk"),
    ({"base_remote": RemoteSpec("http://h:8000", "m")}, "base_remote: null there"),
    ({"dtype": "bfloat16"}, 'placement.base.dtype: "float32" there, "bfloat16" now'),
    ({"guide_dtype": "bf16"}, 'placement.guide.dtype: "float32" there'),
])
def test_resume_refuses_a_folder_made_with_other_settings(tmp_path, changes, field):
    pair = _number_pair()
    _eval(pair, tmp_path, limit=2)
    before = (tmp_path / "run" / "results.jsonl").read_text()
    with pytest.raises(ConfigError, match="another --out, or delete") as err:
        _eval(pair, tmp_path, base=BlendConfig(max_new_tokens=5).with_(**changes))
    assert field in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "run" / "results.jsonl").read_text() == before  # nothing merged


def test_resume_with_the_same_settings_grows_the_grid(tmp_path):
    pair = _number_pair()
    _eval(pair, tmp_path, limit=2)
    summary = _eval(pair, tmp_path, methods=("base", "blendin"), gammas=(0.3, 0.4))  # another gamma, one more item
    assert sorted((s["method"], s["gamma"], s["n"]) for s in summary) == [("base", 0.4, 3), ("blendin", 0.3, 3), ("blendin", 0.4, 3)]
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["format"] == 1 and recorded["tasks"]["gsm8k"]["max_new_tokens"] == 5
    assert check_run(tmp_path / "run", get_task("xstest"), BlendConfig())  # another task has its own settings


def test_placement_is_recorded_as_it_resolved_and_older_folders_count_as_cpu_float32(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pair = _number_pair()
    _eval(pair, tmp_path, limit=2)
    path = tmp_path / "run" / "run.json"
    recorded = json.loads(path.read_text())
    assert recorded["tasks"]["gsm8k"]["placement"] == {"base": {"device": "cpu", "dtype": "float32"}, "guide": {"device": "cpu", "dtype": "float32"}}
    assert "dtype" not in recorded["tasks"]["gsm8k"]  # "auto" is not recorded: what it became here is
    del recorded["tasks"]["gsm8k"]["placement"]  # as a folder from before --device/--dtype
    path.write_text(json.dumps(recorded))
    assert _eval(pair, tmp_path, base=BlendConfig(max_new_tokens=5, device="cpu", dtype="float32"))  # resumes
    with pytest.raises(ConfigError, match='placement.base.dtype: "float32" there, "bfloat16" now'):
        _eval(pair, tmp_path, base=BlendConfig(max_new_tokens=5, dtype="bfloat16"))


def test_a_folder_without_run_json_is_refused(tmp_path):
    pair = _number_pair()
    _eval(pair, tmp_path, limit=1)
    (tmp_path / "run" / "run.json").unlink()  # as a run from before run.json left it
    with pytest.raises(ConfigError, match="no run.json.*another --out, or delete"):
        _eval(pair, tmp_path)
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        _eval(pair, tmp_path)


def test_one_run_folder_holds_one_grid(tmp_path):
    task = get_task("gsm8k")
    with pytest.raises(ConfigError, match="also differ in max_new_tokens"):
        record_run(tmp_path / "run", task, [BlendConfig(max_new_tokens=5), BlendConfig(max_new_tokens=6, method="base")])
    assert not (tmp_path / "run" / "run.json").exists()


def test_run_json_keeps_no_secrets(tmp_path):
    from blendin.eval.judge import Judge

    remote = RemoteSpec("http://h:8000", "m", api_key="sk-remote-secret", concurrency=3)
    task = get_task("justeval")
    record_run(tmp_path, task, [BlendConfig(base_remote=remote)], judge=Judge("http://j/v1", "judge-model", api_key="sk-judge-secret"))
    text = (tmp_path / "run.json").read_text()
    assert "sk-remote-secret" not in text and "sk-judge-secret" not in text and "api_key" not in text
    settings = json.loads(text)["tasks"]["justeval"]
    assert settings["base_remote"] == {"url": "http://h:8000", "model": "m", "top_k": 20, "chunk": 8}
    assert settings["judge"] == {"url": "http://j/v1", "model": "judge-model", "max_tokens": 512}
    assert run_settings(task, BlendConfig(), judge=None)["judge"] is None


def test_cli_eval_refuses_other_settings_before_loading_models(tmp_path, monkeypatch, capsys):
    import blendin.pair
    from blendin.cli import main

    _eval(_number_pair(), tmp_path, limit=2)
    loads = []
    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: loads.append(a) or _number_pair())
    args = ["eval", "--task", "gsm8k", "--data", str(tmp_path / "gsm.jsonl"), "--limit", "2", "--method", "base,blendin",
            "--out", str(tmp_path / "run")]
    assert main(args + ["--max-new-tokens", "6"]) == 2
    err = capsys.readouterr().err
    assert "max_new_tokens: 5 there, 6 now" in err and "another --out" in err and err.count("\n") == 1
    assert loads == []  # refused before any model loaded
    assert main(args + ["--max-new-tokens", "5"]) == 0 and loads == []  # the same settings resume; nothing left, no model loads
    assert main(args + ["--max-new-tokens", "5", "--limit", "3"]) == 0 and len(loads) == 1  # one more item: now it loads
    assert len(read_rows(tmp_path / "run" / "results.jsonl")) == 6  # nothing done twice


def _failing_at(index, message="RuntimeError: out of memory"):
    """generate_many whose result for prompt ``index`` failed, as decoding reports a row that fails alone."""
    import copy

    from blendin import decoding

    real = decoding.generate_many

    def generate_many(pair, prompts, config, batch_size=8, **kw):
        for i, result in real(pair, prompts, config, batch_size=batch_size, **kw):
            if i == index:
                result = copy.copy(result)  # its text still scores right: the row must not be scored
                object.__setattr__(result, "error", message)
                object.__setattr__(result, "stop_reason", "error")
            yield i, result
    return generate_many


def test_failed_samples_are_recorded_and_counted_apart(tmp_path, monkeypatch):
    from blendin import decoding

    monkeypatch.setattr(decoding, "generate_many", _failing_at(1))
    summary = _eval(_number_pair(), tmp_path, methods=("base",))
    rows = {r["id"]: r for r in read_rows(tmp_path / "run" / "results.jsonl")}
    assert rows[1]["error"] == "RuntimeError: out of memory" and rows[1]["score"] is None and rows[1]["correct"] is None
    assert rows[0]["error"] is None and rows[0]["correct"] is True
    s = summary[0]
    assert s["n"] == 3 and s["errors"] == 1 and s["score"] == 0.5 and s["unparseable"] == 0  # over the two that decoded
    assert s["score_ci"] == wilson(1, 2)
    assert "| unparseable | errors |" in markdown(summary) and "| 3 | 0.500 | [0.095, 0.905] | 0 | 1 |" in markdown(summary)
    monkeypatch.undo()
    _eval(_number_pair(), tmp_path, methods=("base",))
    assert len(read_rows(tmp_path / "run" / "results.jsonl")) == 3  # a failed sample counts as done


def test_summary_of_old_rows_and_of_only_failures():
    row = dict(task="t", method="base", gamma=0.4, alpha="auto", tokens=4, interventions=1, mean_alpha=None, seconds=1.0)
    s = summarise([{**row, "correct": True, "extracted": "1"}])[0]  # a row from before errors were recorded
    assert s["errors"] == 0 and s["score"] == 1.0
    s = summarise([{**row, "correct": None, "extracted": None, "score": None, "error": "X: y"}])[0]
    assert s["errors"] == 1 and s["score"] is None and s["unparseable"] is None and s["intervention_rate"] == 0.0
    assert "| 1 | - | - | - | 1 |" in markdown([s])


def test_diagnose_leaves_failed_results_out():
    import copy

    from blendin.decoding import generate

    ok = generate(_number_pair(), "Q", BlendConfig(max_new_tokens=5))
    failed = copy.copy(ok)
    object.__setattr__(failed, "error", "ValueError: prompt too long")
    d = diagnose([failed, ok])
    assert d["samples"] == 1 and d["errors"] == 1 and d["reliable"] and d["tokens"] == ok.tokens
    d = diagnose([failed])
    assert d["reliable"] is None and "nothing to judge" in d["verdict"] and "prompt too long" in d["verdict"]


def _unsure_pair():
    """A scripted base unsure of its first token (m_b 0.38 < gamma), and a guide that prefers '7'."""
    def base(text):
        done = text.split("Answer:\n", 1)[1] if "Answer:\n" in text else ""
        return {"1": 0.38, "2": 0.32, "7": 0.30} if done == "" else {"<eos>": 1.0}
    return Pair(base=ScriptedModel(base_tokenizer(), base), guide=ScriptedModel(guide_tokenizer(), lambda t: {"7": 0.6, "<|end|>": 0.4}))


def test_configurations_decoded_together_give_the_rows_of_one_after_another(tmp_path, monkeypatch):
    import io

    from blendin import decoding
    from blendin.eval.runner import row_key

    task, pair = get_task("gsm8k"), _unsure_pair()
    items = load_items(task, str(_task_file(tmp_path, ["1", "7", "18"])))
    configs = grid(BlendConfig(max_new_tokens=5), ["base", "guide", "switch", "nudging", "blendin"], [0.4], [None])
    calls, real = [], decoding.generate_many

    def generate_many(pair, prompts, config, batch_size=8, **kw):
        prompts = list(prompts)
        calls.append(sorted({p["config"].method for p in prompts}))
        yield from real(pair, prompts, config, batch_size=batch_size, **kw)

    monkeypatch.setattr(decoding, "generate_many", generate_many)
    one_by_one = run_eval(pair, task, items, configs, tmp_path / "a", batch_size=2, progress=None)
    assert len(calls) == 5 and all(len(c) == 1 for c in calls)
    calls.clear()
    log = io.StringIO()
    together = run_eval(pair, task, items, configs, tmp_path / "b", batch_size=4, progress=log, together=True)
    assert calls == [["base", "blendin", "guide", "nudging", "switch"]]  # one stream, every method in it
    fields = lambda r: (r["output"], r["tokens"], r["interventions"], r["alphas"], r["correct"])  # noqa: E731
    a = {row_key(r): fields(r) for r in read_rows(tmp_path / "a" / "results.jsonl")}
    b = {row_key(r): fields(r) for r in read_rows(tmp_path / "b" / "results.jsonl")}
    assert a == b and len(b) == 15
    assert sum(r[2] for r in b.values()) > 0  # the guide was consulted: the mixed rows really blended
    drop = lambda ss: sorted(([{k: v for k, v in s.items() if k != "tokens_per_second"} for s in ss]), key=lambda s: s["method"])  # noqa: E731
    assert drop(together) == drop(one_by_one)
    assert log.getvalue().splitlines()[-1].startswith("gsm8k 5 configurations: 15/15")
    calls.clear()
    assert run_eval(pair, task, items, configs, tmp_path / "b", batch_size=4, progress=None, together=True) == together
    assert calls == [[]]  # resumed: nothing left to decode


def test_on_token_counts_every_token_as_it_is_decoded():
    from blendin.decoding import generate_many

    seen = []
    config = BlendConfig(max_new_tokens=5, prompt=get_task("gsm8k").prompt)
    finished = {}
    for i, result in generate_many(_unsure_pair(), ["Q0", "Q1", "Q2"], config, batch_size=2, on_token=seen.append):
        finished[i] = (result.tokens, seen.count(i))  # its tokens were counted before it finished
    assert finished and all(tokens == counted for tokens, counted in finished.values())
    assert len(seen) == sum(t for t, _ in finished.values())
