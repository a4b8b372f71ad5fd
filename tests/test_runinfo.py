"""run.json's resume key: the BlendConfig fields that change an answer, and only those (issue 33)."""

import json
from dataclasses import fields

import pytest

from blendin import BlendConfig
from blendin.errors import ConfigError
from blendin.eval import runinfo
from blendin.eval.runinfo import check_run, record_run, run_settings
from blendin.eval.tasks import get_task

TASK = get_task("gsm8k")


def _grouped(groups: dict) -> list[str]:
    return [name for names in groups.values() for name in names]


def test_every_config_field_is_either_in_the_key_or_out_of_it_with_a_reason():
    """A field BlendConfig gains (a backend, a profile, failure handling) fails here until it is
    put in ANSWER_FIELDS (changes an answer: part of the resume key) or NOT_ANSWER_FIELDS (does not)."""
    answer, other = _grouped(runinfo.ANSWER_FIELDS), _grouped(runinfo.NOT_ANSWER_FIELDS)
    names = [f.name for f in fields(BlendConfig)]
    assert [n for n in names if n not in answer and n not in other] == [], "BlendConfig fields in neither list"
    assert sorted(set(answer) & set(other)) == [], "BlendConfig fields in both lists"
    assert len(answer) == len(set(answer)) and len(other) == len(set(other)), "a field named twice"
    assert sorted(set(answer + other) - set(names)) == [], "names that are no BlendConfig field"


def test_the_key_holds_no_field_that_changes_no_answer():
    settings = run_settings(TASK, BlendConfig(speculate="auto", trace_top=5))
    for name in _grouped(runinfo.NOT_ANSWER_FIELDS):
        assert name not in settings
    assert "speculate" not in settings and settings["max_new_tokens"] == 256


def _recorded(tmp_path, **changes):
    """A run folder whose run.json records gsm8k as the current code does, changed by ``changes``
    (a value of None: the key dropped, as a folder from before it existed)."""
    settings = run_settings(TASK, BlendConfig(max_new_tokens=5))
    for k, v in changes.items():
        if v is None:
            settings.pop(k, None)
        else:
            settings[k] = v
    runinfo.write_run_json(tmp_path, {"gsm8k": settings})
    (tmp_path / "results.jsonl").write_text(json.dumps({"task": "gsm8k", "method": "base", "gamma": 0.4, "alpha": "auto",
                                                        "id": 0, "output": " 18"}) + "\n")
    return tmp_path


@pytest.mark.parametrize("recorded, now", [("off", "auto"), ("auto", "off"), ("guide", "lookup"), (None, "auto"), (None, "off")])
def test_a_folder_resumes_whatever_speculate_was_and_is(tmp_path, recorded, now):
    """A run.json from the code before this fix recorded "speculate"; one from before the option has none."""
    out = _recorded(tmp_path, speculate=recorded)
    assert "speculate" not in check_run(out, TASK, BlendConfig(max_new_tokens=5, speculate=now))
    record_run(out, TASK, [BlendConfig(max_new_tokens=5, speculate=now)])  # and records it, for the next run
    assert "speculate" not in json.loads((out / "run.json").read_text())["tasks"]["gsm8k"]


def test_a_changed_answer_field_is_still_refused(tmp_path):
    out = _recorded(tmp_path, speculate="off")
    with pytest.raises(ConfigError, match="max_new_tokens: 5 there, 6 now") as err:
        check_run(out, TASK, BlendConfig(max_new_tokens=6, speculate="auto"))
    assert "speculate" not in str(err.value)
    with pytest.raises(ConfigError, match="seed: null there, 3 now"):
        check_run(out, TASK, BlendConfig(max_new_tokens=5, seed=3))


def test_a_grid_reuses_a_model_alone_whatever_speculate_was(tmp_path, capsys, monkeypatch):
    """Another pair's rows of the same base alone are copied when only --speculate differs."""
    import blendin.pair
    from blendin.cli import main
    from blendin.eval.grid import parse_pair
    from blendin.eval.runner import read_rows

    from test_eval import _number_pair, _task_file

    monkeypatch.setattr(blendin.pair, "check_pair", lambda *a, **k: None)
    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: _number_pair())
    data = _task_file(tmp_path, ["18", "7"])

    def run(pair, *more):
        argv = ["eval", "--task", "gsm8k", "--data", data, "--method", "base", "--max-new-tokens", "5",
                "--out", tmp_path / "grid", "--pair", pair, *more]
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err

    run("gemma-3-270m:smollm2-135m-instruct")
    first = parse_pair("gemma-3-270m:smollm2-135m-instruct").label
    path = tmp_path / "grid" / first / "run.json"
    recorded = json.loads(path.read_text())
    recorded["tasks"]["gsm8k"]["speculate"] = "off"  # as the code before the fix wrote it
    path.write_text(json.dumps(recorded))
    run("gemma-3-270m:gemma-3-270m", "--speculate", "lookup")
    rows = read_rows(tmp_path / "grid" / parse_pair("gemma-3-270m:gemma-3-270m").label / "results.jsonl")
    assert len(rows) == 2 and {r.get("reused_from") for r in rows} == {first}
