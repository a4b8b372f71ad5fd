"""A guide that stops answering while decoding (``errors.ModelUnavailable``: a server down, a
timeout, a 5xx), on scripted models: under "degrade" the row goes on with the base deciding alone
where that guide would have guided, and says so; under "error" the row fails alone."""

import pytest

from blendin.backends.fake import ScriptedModel
from blendin.decoding import generate, generate_many
from blendin.errors import ModelUnavailable
from blendin.pair import Pair

from scripted import after_prompt, base_tokenizer, config, guide_tokenizer

def base_script(text):
    """Unsure (m_b 0.35 < 0.4: every step consults the guides) until three words, then sure to end."""
    return {"▁yes": 0.35, "▁no": 0.33, "<eos>": 0.32} if len(after_prompt(text).split()) < 3 else {"<eos>": 1.0}


def guide_script(text):
    return {"Ġno": 0.9, "<|end|>": 0.1}


def failing_after(n: int, name="fake-guide"):
    """A guide that answers its first ``n`` passes, then is down (as a server that went away)."""
    calls = {"n": 0}

    def script(text):
        calls["n"] += 1
        if calls["n"] > n:
            raise ModelUnavailable("cannot reach http://127.0.0.1:9/v1 (connection refused) after 4 tries")
        return guide_script(text)
    return ScriptedModel(guide_tokenizer(), script, name=name)


def pair(guide, *more):
    return Pair(base=ScriptedModel(base_tokenizer(), base_script, name="fake-base"), guide=guide, more_guides=list(more))


def test_a_guide_that_goes_down_leaves_the_base_to_decide_and_the_result_says_so():
    r = generate(pair(failing_after(1)), "Q", config(method="blendin"))
    g = r.guides[0]
    assert r.error is None and r.stop_reason == "eos" and r.text == " no yes yes"  # guided ' no', then the base alone
    assert r.interventions == 1 and g["failed_at"] == 1 and "connection refused" in g["error"]
    assert r.held == {"guide down": 2} and g["passes_saved"] == 1 and g["consulted"] == 1


def test_under_error_the_row_fails_alone_and_the_others_go_on():
    p = pair(failing_after(1))
    results = dict(generate_many(p, ["Q", "Q"], config(method="blendin", on_guide_failure="error"), batch_size=2))
    assert all(r.stop_reason == "error" and "connection refused" in r.error for r in results.values())
    fine = dict(generate_many(pair(failing_after(100)), ["Q", "Q"], config(method="blendin", on_guide_failure="error"), batch_size=2))
    assert all(r.error is None for r in fine.values())


def test_with_several_guides_the_others_go_on():
    up = ScriptedModel(guide_tokenizer(), guide_script, name="up")
    r = generate(pair(failing_after(0), up), "Q", config(method="blendin", guide=["down", "up"]))
    down, alive = r.guides
    assert down["failed_at"] == 0 and "failed_at" not in alive and alive["interventions"] == r.interventions > 0


def test_nudging_degrades_before_its_guide_writes():
    r = generate(pair(failing_after(0)), "Q", config(method="nudging"))
    assert r.error is None and r.interventions == 0 and r.guides[0]["failed_at"] == 0


def test_the_guide_method_has_no_base_to_fall_back_on():
    r = dict(generate_many(pair(failing_after(0)), ["Q"], config(method="guide")))[0]
    assert r.stop_reason == "error" and "connection refused" in r.error


def test_an_unknown_choice_is_refused():
    from blendin.errors import ConfigError

    with pytest.raises(ConfigError, match="on_guide_failure"):
        config(on_guide_failure="ignore")


def test_generate_degrades_by_default_and_eval_errors_and_the_patience_reaches_the_guide_s_server(tmp_path):
    from blendin.cli import _models, build_parser, config_from_args, eval_config
    from blendin.eval.tasks import get_task

    parser = build_parser()
    a = parser.parse_args(["generate", "--guide", "g@http://127.0.0.1:9/v1", "--guide-timeout", "5", "--guide-retries", "1", "x"])
    c = config_from_args(a)
    assert c.on_guide_failure == "degrade" and (c.guide_remote.timeout, c.guide_remote.retries) == (5.0, 1)
    e = parser.parse_args(["eval", "--task", "gsm8k", "--out", str(tmp_path / "r")])
    assert eval_config(e, _models(e, None), get_task("gsm8k")).on_guide_failure == "error"
    e = parser.parse_args(["eval", "--task", "gsm8k", "--out", str(tmp_path / "r"), "--on-guide-failure", "degrade"])
    assert eval_config(e, _models(e, None), get_task("gsm8k")).on_guide_failure == "degrade"
