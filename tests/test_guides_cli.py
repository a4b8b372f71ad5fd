"""Several guides and the mitigations through the CLI, eval's run folders, diagnose, the trace page
and the report: scripted models, no real ones."""

import json

import pytest

from blendin.backends.fake import ScriptedModel
from blendin.cli import build_parser, config_from_args, main
from blendin.config import BlendConfig
from blendin.errors import ConfigError
from blendin.eval.runner import grid, read_rows, run_eval
from blendin.eval.tasks import get_task, load_items
from blendin.pair import Pair

from scripted import base_tokenizer, guide_tokenizer


def parse(*argv):
    return config_from_args(build_parser().parse_args(["generate", *argv, "hi"]))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_guide_given_twice_makes_two_guides_and_model_at_url_a_remote_one():
    c = parse("--guide", "a", "--guide", "b@http://127.0.0.1:9/v1", "--top-k", "7")
    assert c.guide == "a" and c.guide_remote is None
    (b,) = c.more_guides
    assert (b.model, b.remote.url, b.remote.model, b.remote.top_k) == ("b", "http://127.0.0.1:9/v1", "b", 7)
    assert c.guide_label == "a + b@http://127.0.0.1:9/v1"
    first = parse("--guide", "a@https://h/v1")
    assert first.guide == "a" and first.guide_remote.url == "https://h/v1" and first.more_guides == ()
    assert parse().guide == "smollm2-135m-instruct" and parse().more_guides == ()
    assert parse("--reliability", "--retire-below", "0.3", "--capability-gap", "-0.2").effective_gamma == pytest.approx(0.36)


@pytest.mark.parametrize("argv, message", [
    (["--guide", "a", "--guide", "b", "--method", "nudging"], "method 'nudging' lets one guide write, and 2 guides are given"),
    (["--guide", "a", "--guide", "a"], "the guide 'a' is given twice"),
    (["--guide", "@http://h/v1"], "name the model before the @"),
    (["--guide", "a@http://h/v1", "--guide-url", "http://g/v1", "--guide-model", "m"], "from --guide-url too"),
    (["--max-intervention-rate", "1.5"], "--max-intervention-rate must be a number in [0, 1], got 1.5"),
    (["--agreement-top-k", "0"], "--agreement-top-k must be a whole number >= 1, got 0"),
    (["--retire-below", "x"], "--retire-below must be a number"),
    (["--capability-gap", "4"], "--capability-gap must be a number in [-1, 1]"),
])
def test_bad_guides_and_mitigations_fail_in_one_line_before_loading(capsys, argv, message):
    code, _, err = run(capsys, "generate", *argv, "hi")
    assert code == 2 and message in err and err.count("\n") == 1


# -- eval, report, trace -----------------------------------------------------------------------------

def _three(unsure_on="Q0"):
    """A base unsure of its first token on one question, and two guides: one that agrees, one that
    proposes a control token the base has no twin for."""
    def base(text):
        done = text.split("Answer:\n", 1)[1] if "Answer:\n" in text else ""
        if done == "" and unsure_on in text:
            return {"1": 0.35, "8": 0.35, "2": 0.3}
        return {"": {"1": 1.0}, "1": {"8": 1.0}}.get(done, {"<eos>": 1.0})

    return Pair(base=ScriptedModel(base_tokenizer(), base), guide=ScriptedModel(guide_tokenizer(), lambda t: {"1": 0.9, "<|end|>": 0.1}),
                more_guides=[ScriptedModel(guide_tokenizer(), lambda t: {"<|sys|>": 0.8, "1": 0.2})])


def _task_file(tmp_path, n=3):
    f = tmp_path / "gsm.jsonl"
    f.write_text("".join(json.dumps({"idx": i, "question": f"Q{i}", "final": "18"}) + "\n" for i in range(n)))
    return f


def test_eval_rows_and_summary_count_each_guide_and_report_shows_them(tmp_path):
    task = get_task("gsm8k")
    config = BlendConfig(guide=["g1", "g2"], max_new_tokens=5, agreement_top_k=3)
    summary = run_eval(_three(), task, load_items(task, str(_task_file(tmp_path)), None), grid(config, ["blendin"], [0.4], [None]),
                       tmp_path / "run", progress=None)
    rows = read_rows(tmp_path / "run" / "results.jsonl")
    q0 = next(r for r in rows if r["id"] == 0)
    assert [g["guide"] for g in q0["guides"]] == ["g1", "g2"]
    assert [g["interventions"] for g in q0["guides"]] == [1, 0] and q0["guides"][1]["filtered"] == 1
    (s,) = summary
    assert [(g["guide"], g["interventions"], g["filtered"], g["consulted"]) for g in s["guides"]] == [("g1", 1, 0, 1), ("g2", 0, 1, 1)]
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["tasks"]["gsm8k"]
    assert recorded["more_guides"] == [{"model": "g2", "remote": None}] and recorded["agreement_top_k"] == 3
    pytest.importorskip("matplotlib")
    from blendin.diagnostics.plots import report

    written = [p.name for p in report([str(tmp_path / "run")], str(tmp_path / "report"))]
    assert "guides.png" in written and "| run | blendin 0.4 | g2 | 0 |" in (tmp_path / "report" / "guides.md").read_text()


def test_report_guides_leaves_out_the_guide_alone(tmp_path):
    """The guide alone blends nothing: guides.md and guides.png list only the guided configurations,
    not a guide 'with 0 interventions and reliability 1.00'."""
    pytest.importorskip("matplotlib")
    from blendin.diagnostics.plots import guide_table, report

    task = get_task("gsm8k")
    run_eval(_three(), task, load_items(task, str(_task_file(tmp_path)), None),
             grid(BlendConfig(max_new_tokens=5), ["guide", "blendin"], [0.4], [None]), tmp_path / "run", progress=None)
    rows = read_rows(tmp_path / "run" / "results.jsonl")
    assert any(r["method"] == "guide" and r.get("guides") for r in rows)  # the rows record the guide's passes
    assert {t["config"] for t in guide_table({"run": rows})} == {"blendin 0.4"}
    report([str(tmp_path / "run")], str(tmp_path / "report"))
    md = (tmp_path / "report" / "guides.md").read_text()
    assert "| run | blendin 0.4 |" in md and "| guide 0.4 |" not in md


def test_a_folder_from_before_several_guides_resumes_and_a_mitigation_is_a_new_setting(tmp_path):
    task = get_task("gsm8k")
    items = load_items(task, str(_task_file(tmp_path)), None)
    plain = BlendConfig(max_new_tokens=5)
    run_eval(_three(), task, items[:2], [plain], tmp_path / "run", progress=None)
    path = tmp_path / "run" / "run.json"
    recorded = json.loads(path.read_text())
    for name in ("more_guides", "max_intervention_rate", "agreement_top_k", "reliability", "retire_below", "retire_after", "capability_gap"):
        del recorded["tasks"]["gsm8k"][name]  # as a folder written before they existed
    path.write_text(json.dumps(recorded))
    run_eval(_three(), task, items, [plain], tmp_path / "run", progress=None)  # resumes: the third item only
    assert len(read_rows(tmp_path / "run" / "results.jsonl")) == 3
    with pytest.raises(ConfigError, match="reliability: false there, true now"):
        run_eval(_three(), task, items, [plain.with_(reliability=True)], tmp_path / "run", progress=None)
    with pytest.raises(ConfigError, match="more_guides"):
        run_eval(_three(), task, items, [plain.with_(more_guides=("g2",))], tmp_path / "run", progress=None)


def test_trace_page_shows_each_guides_part():
    from blendin.decoding import generate
    from blendin.diagnostics.html import trace_html
    from scripted import PLAIN

    r = generate(_three(unsure_on=""), "Q", BlendConfig(guide=["g1", "g2"], prompt=PLAIN, max_new_tokens=1, agreement_top_k=3))
    page = trace_html(r)
    assert "guide g1: 1 interventions" in page and "guide g2: 0 interventions" in page and "1 set aside by the agreement filter" in page
    assert "<b>guide 2</b>" in page and "(set aside)" in page


# -- diagnose ------------------------------------------------------------------------------------------

def test_diagnose_compares_the_mitigations_ranks_the_guides_and_recommends(capsys, tmp_path, monkeypatch):
    import blendin.pair

    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: _three())
    data = _task_file(tmp_path, 4)
    guides = ["--guide", "smollm2-135m-instruct", "--guide", "qwen2.5-coder-0.5b-instruct"]  # names checked; scripted models answer
    code, out, err = run(capsys, "diagnose", "--data", data, "--limit", "4", *guides, "--json")
    assert code == 0, err
    d = json.loads(out)
    names = [v["variant"] for v in d["variants"]]
    g1, g2 = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"
    assert names == ["blendin", "budget", "agreement", "reliability", "retire", "adaptive gamma (0.2)", "base alone",
                     f"guide alone: {g1}", f"guide alone: {g2}"]
    by = {v["variant"]: v for v in d["variants"]}
    assert by["agreement"]["flags"] == "--agreement-top-k 5" and by["budget"]["flags"] == "--max-intervention-rate 0.15"
    assert by["base alone"]["score"] == 1.0 and by["base alone"]["guide_passes"] == 0
    # the guide that agrees is ranked first; g2 proposes a token the base has no twin for
    assert [g["guide"] for g in d["guides"]] == [g1, g2] and d["guides"][0]["reliability"] > d["guides"][1]["reliability"]
    assert d["gap"] == pytest.approx(max(by[f"guide alone: {g1}"]["score"], by[f"guide alone: {g2}"]["score"]) - 1.0)
    # base alone ties the adaptive gamma variant (gap -1: gamma 0.2, no interventions): a guided variant wins ties
    assert d["recommendation"] == {"variant": "adaptive gamma (0.2)", "flags": "--capability-gap -1.0",
                                   "why": "the best score on this sample (1.00 of 4), with the fewest guide passes among the ties"}
    code, out, _ = run(capsys, "diagnose", "--data", data, "--limit", "4", *guides)
    assert "recommendation: adaptive gamma (0.2): add --capability-gap -1.0;" in out and "guides, best first:" in out and "capability gap" in out
    code, out, _ = run(capsys, "diagnose", "--data", data, "--limit", "4", "--plain-only", *guides)
    assert "verdict:" in out and "recommendation:" not in out


# -- serve ----------------------------------------------------------------------------------------------

def test_serve_renders_for_each_guide_and_answers_one_guide_methods_with_the_first():
    import httpx2 as httpx

    from blendin.server import ServerThread, build, startup_line
    from blendin.server.settings import ServeSettings
    from scripted import PLAIN

    cfg = BlendConfig(guide=["g1", "g2"], prompt=PLAIN, max_new_tokens=1)
    app = build(_three(unsure_on=""), cfg, ServeSettings())
    assert "guides g1 + g2" in startup_line(cfg, ServeSettings(), _three())
    with ServerThread(app) as url:
        for path, body in (("/completions", {"prompt": "Q\n"}), ("/chat/completions", {"messages": [{"role": "user", "content": "Q"}]})):
            r = httpx.post(url + path, json={"model": "blendin", **body, "max_tokens": 1}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["blendin"]["interventions"] == 1
        one = httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n", "max_tokens": 1, "blendin": {"method": "nudging"}}, timeout=30)
        assert one.status_code == 200, one.text
        models = httpx.get(url + "/models", timeout=30).json()
        assert models["data"][0]["blendin"]["guides"] == ["g1", "g2"]


def test_recommendation_rules():
    from blendin.eval.diagnose import recommend

    def r(variant, score, passes=1.0, rate=0.1, flags="--x"):
        return {"variant": variant, "score": score, "guide_passes": passes, "intervention_rate": rate, "flags": flags, "n": 20}

    rows = [r("blendin", 0.3, flags=""), r("agreement", 0.3, passes=0.5), r("base alone", 0.3, 0, flags="--method base"),
            r("guide alone: g", 0.2, flags="--method guide --guide g")]
    assert recommend(rows, scored=True)["variant"] == "agreement"  # the tie goes to fewer guide passes, and to guidance
    rows[3]["score"] = 0.5
    rec = recommend(rows, scored=True)
    assert rec["flags"] == "--method guide --guide g" and "no guided variant reached it" in rec["why"]
    unscored = [r("blendin", None, rate=0.3, flags=""), r("budget", None, rate=0.14), r("agreement", None, rate=0.2)]
    assert recommend(unscored, scored=False)["variant"] == "budget"
    unscored[0]["intervention_rate"] = 0.1
    assert recommend(unscored, scored=False) == {"variant": "blendin", "flags": "", "why": "no gold answers to score; the plain rate is within the paper's 20%"}
