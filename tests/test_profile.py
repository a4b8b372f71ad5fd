"""Reliability profiles (``blendin.profile``, ``eval.profiling``, ``--profile``): the rule from evidence
to weights, the file and its key, and what a profile does to decoding (r = 1 changes nothing, r = 0
consults nothing, r in between scales the guide's weight)."""

import json
from types import SimpleNamespace

import pytest

import blendin.eval.diagnose
import blendin.pair
from blendin.cli import main
from blendin.config import BlendConfig
from blendin.decoding import generate
from blendin.errors import ConfigError
from blendin.eval.profiling import fit_profile, profile_text
from blendin.eval.runinfo import check_run, record_run
from blendin.eval.tasks import get_task
from blendin.pair import Pair
from blendin.profile import Profile, help_probability

from scripted import config, scripted_pair

BASE = {"": {"▁yes": 0.3, "▁no": 0.25, "▁maybe": 0.45}, " maybe": {"▁yes": 0.35, "▁no": 0.30, "▁cat": 0.35},
        " maybe no": {"<eos>": 0.9, "▁yes": 0.1}, " maybe cat": {"<eos>": 1.0}, " maybe yes": {"<eos>": 1.0}}
GUIDE = {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}}


def profile_for(r: float, **kw) -> Profile:
    return Profile(base="fake-base", guides=("fake-guide",), reliabilities=(r,), **kw)


def cfg(**kw) -> BlendConfig:
    return config(base="fake-base", guide="fake-guide", **kw)


def test_the_rule_is_the_posterior_probability_that_guidance_helps():
    assert help_probability(0, 0) == 0.5  # no disagreement: no evidence either way
    assert help_probability(3, 0) == 1 - 1 / 16 and help_probability(0, 3) == 1 / 16
    assert help_probability(5, 5) == pytest.approx(0.5)
    assert help_probability(46, 15) > 0.999 and help_probability(2, 11) < 0.01


def test_a_profile_of_1_decodes_bit_for_bit_as_none():
    plain = generate(scripted_pair(BASE, GUIDE), "Q", cfg(method="blendin"))
    weighed = generate(scripted_pair(BASE, GUIDE), "Q", cfg(method="blendin", profile=profile_for(1.0)))
    assert weighed.text == plain.text and [s.alpha for s in weighed.steps] == [s.alpha for s in plain.steps]
    assert [s.chosen_prob for s in weighed.steps] == [s.chosen_prob for s in plain.steps]


def test_a_profile_scales_the_guides_weight_and_the_base_keeps_the_rest():
    plain = generate(scripted_pair(BASE, GUIDE), "Q", cfg(method="blendin"))
    half = generate(scripted_pair(BASE, GUIDE), "Q", cfg(method="blendin", profile=profile_for(0.5)))
    (guided,) = [s for s in plain.steps if s.alpha is not None]
    (halved,) = [s for s in half.steps if s.alpha is not None]
    assert halved.alpha == pytest.approx(0.5 * guided.alpha)
    assert half.guides[0]["consulted"] == 1


def test_a_guide_weighed_0_is_not_consulted_and_the_answer_is_the_base_alones():
    pair = scripted_pair(BASE, GUIDE)
    off = generate(pair, "Q", cfg(method="blendin", profile=profile_for(0.0)))
    alone = generate(scripted_pair(BASE, GUIDE), "Q", cfg(method="base"))
    assert off.text == alone.text == " maybe yes"  # the base's own tie-break at " maybe", not the guide's "no"
    assert off.interventions == 0 and off.guides[0]["consulted"] == 0 and off.guides[0]["passes_saved"] == 1
    assert off.held == {"profile": 1} and pair.guide.sessions[0].forward_calls == 0


def test_a_profile_for_other_models_or_settings_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"base: the profile's is 'other-base', this run's 'fake-base'"):
        cfg(profile=Profile(base="other-base", guides=("fake-guide",), reliabilities=(1.0,)))
    with pytest.raises(ConfigError, match="guides: the profile's is other-guide, this run's fake-guide"):
        cfg(profile=Profile(base="fake-base", guides=("other-guide",), reliabilities=(1.0,)))
    with pytest.raises(ConfigError, match="gamma: the profile's is 0.3, this run's 0.4"):
        cfg(profile=profile_for(1.0, gamma=0.3))
    with pytest.raises(ConfigError, match="nudging lets the guide write whole words"):
        cfg(method="nudging", profile=profile_for(1.0))
    assert profile_for(1.0, task="gsm8k").mismatch(cfg(), task="arc_challenge") == "task: the profile's is gsm8k, this run's arc_challenge"


def test_the_file_round_trips_and_bad_files_are_refused_in_one_line(tmp_path):
    path = profile_for(0.75, task="gsm8k", evidence=({"n": 50, "p_help": 0.75},)).save(tmp_path / "p.json")
    loaded = Profile.load(path)
    assert loaded == profile_for(0.75, task="gsm8k") and loaded.evidence[0]["n"] == 50 and loaded.source == str(path)
    assert cfg(profile=str(path)).profile == loaded  # a path is read where the config is made
    bad = {"missing": None, "broken": "{not json", "foreign": json.dumps({"base": "x"}),
           "newer": json.dumps({**json.loads(path.read_text()), "version": 99}),
           "malformed": json.dumps({"format": "blendin-profile", "version": 1, "base": "x", "guides": [{"guide": "g"}]})}
    for name, text in bad.items():
        f = tmp_path / f"{name}.json"
        if text is not None:
            f.write_text(text)
        with pytest.raises(ConfigError) as refused:
            Profile.load(f)
        assert "\n" not in str(refused.value) and "--save-profile" in str(refused.value), name


def test_the_cli_refuses_a_foreign_profile_before_any_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: pytest.fail("a model was loaded"))
    path = Profile(base="qwen2.5-coder-1.5b-instruct", guides=("smollm2-135m-instruct",), reliabilities=(1.0,)).save(tmp_path / "p.json")
    assert main(["generate", "--profile", str(path), "hello"]) == 2
    err = capsys.readouterr().err
    assert "was fitted for another run (base: the profile's is 'qwen2.5-coder-1.5b-instruct', this run's 'gemma-3-270m')" in err


def test_eval_records_the_profile_used_and_resumes_only_with_the_same(tmp_path):
    task = get_task("gsm8k")
    base, guide = "gemma-3-270m", "smollm2-135m-instruct"
    used = Profile(base=base, guides=(guide,), reliabilities=(0.9,), task="gsm8k")
    record_run(tmp_path / "run", task, [BlendConfig(profile=used)])
    check_run(tmp_path / "run", task, BlendConfig(profile=Profile(base=base, guides=(guide,), reliabilities=(0.9,), task="gsm8k",
                                                                  source="elsewhere/p.json")))  # the path is no part of the key
    for other in (None, Profile(base=base, guides=(guide,), reliabilities=(0.5,), task="gsm8k")):
        with pytest.raises(ConfigError, match="profile"):
            check_run(tmp_path / "run", task, BlendConfig(profile=other))


def _fake_decode(right: dict):
    """diagnose.decode that answers each run from ``right`` ({run name: items it gets right}), by name."""
    def decode(pair, task, items, prompts, cfg, batch_size, progress, name):
        key = next(k for k in right if name.endswith(k))
        return [SimpleNamespace(error=None, text="18" if i in right[key] else "7", tokens=10, interventions=1) for i in range(len(items))]
    return decode


def test_fitting_weighs_the_guide_by_what_its_guidance_did_to_the_base(monkeypatch):
    task, items = get_task("gsm8k"), [{"idx": i, "question": f"Q{i}", "final": "18"} for i in range(20)]
    base_right = set(range(10))
    pair = scripted_pair(BASE, GUIDE)
    monkeypatch.setattr(blendin.eval.diagnose, "decode", _fake_decode(
        {"base alone": base_right, "fake-guide alone": set(range(5)), "blendin with fake-guide": set(range(16))}))
    profile, _ = fit_profile(pair, task, items, cfg(method="blendin"))
    (e,) = profile.evidence
    assert e["blend_minus_base"]["only_first_right"] == 6 and e["blend_minus_base"]["only_base_right"] == 0
    assert profile.reliabilities[0] == pytest.approx(1 - 1 / 128, abs=1e-6) and e["decision"] == "helps"
    assert e["score_guide_alone"] == 0.25  # worse than the base alone (0.5), and its guidance still helps
    monkeypatch.setattr(blendin.eval.diagnose, "decode", _fake_decode(
        {"base alone": base_right, "fake-guide alone": set(range(20)), "blendin with fake-guide": set(range(5))}))
    hurt, _ = fit_profile(pair, task, items, cfg(method="blendin"))
    assert hurt.reliabilities == (0.0,) and hurt.evidence[0]["decision"] == "off"  # better alone, and its guidance hurt
    assert "off (not consulted)" in profile_text(hurt)


def test_of_two_guides_the_one_whose_guidance_proved_better_keeps_its_weight(monkeypatch):
    task, items = get_task("gsm8k"), [{"idx": i, "question": f"Q{i}", "final": "18"} for i in range(20)]
    two = scripted_pair(BASE, GUIDE)
    second = scripted_pair(BASE, GUIDE).guide
    second.name = "other-guide"
    pair = Pair(base=two.base, guide=two.guide, more_guides=[second])
    monkeypatch.setattr(blendin.eval.diagnose, "decode", _fake_decode(
        {"base alone": set(range(10)), "fake-guide alone": set(), "other-guide alone": set(),
         "blendin with fake-guide": set(range(16)), "blendin with other-guide": set(range(12))}))
    profile, _ = fit_profile(pair, task, items, cfg(method="blendin", more_guides=("other-guide",)))
    a, b = profile.evidence
    assert a["p_beats"] == {"1": pytest.approx(31 / 32, abs=1e-6)} and b["p_beats"] == {"0": pytest.approx(1 / 32, abs=1e-6)}
    assert profile.reliabilities[0] == pytest.approx((1 - 1 / 128) * 31 / 32, abs=1e-5)
    assert profile.reliabilities[1] == 0.0  # its guidance helped (P 7/8) but the other guide's helped more


def test_a_server_weighs_by_its_profile_and_shows_it():
    import httpx2 as httpx

    from blendin.server import ServerThread, build
    from blendin.server.settings import ServeSettings

    pair = scripted_pair({**BASE, "": {"▁maybe": 1.0}}, GUIDE)
    app = build(pair, cfg(method="blendin", profile=profile_for(0.0, task="gsm8k")), ServeSettings())
    with ServerThread(app) as url:
        shown = httpx.get(url + "/profile", timeout=30).json()["profile"]
        assert shown["reliabilities"] == {"fake-guide": 0.0} and shown["task"] == "gsm8k"
        assert 'blendin_guide_reliability{guide="fake-guide"} 0.0' in httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
        answer = httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n"}, timeout=30).json()
        assert answer["choices"][0]["text"] == " maybe yes"  # the guide, weighed 0, was never asked
    assert pair.guide.sessions == [] or all(s.forward_calls == 0 for s in pair.guide.sessions)


def test_eval_refuses_a_profile_fitted_on_another_task_before_any_model_loads(tmp_path, monkeypatch, capsys):
    from test_cli_options import task_file

    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: pytest.fail("a model was loaded"))
    path = Profile(base="gemma-3-270m", guides=("smollm2-135m-instruct",), reliabilities=(1.0,), task="arc_challenge").save(tmp_path / "p.json")
    code = main(["eval", "--task", "gsm8k", "--data", task_file(tmp_path), "--profile", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "task: the profile's is arc_challenge, this run's gsm8k" in capsys.readouterr().err


def test_a_blender_and_a_server_keep_each_guides_record_across_answers(tmp_path):
    import httpx2 as httpx

    from blendin import Blender
    from blendin.server import ServerThread, build
    from blendin.server.settings import ServeSettings

    blender = Blender(cfg(method="blendin", profile=profile_for(0.5)), pair=scripted_pair(BASE, GUIDE))
    blender("Q")
    blender.with_(temperature=0.0)(["Q", "Q"])  # the same models: the same record
    seen = blender.ledger.snapshot()["fake-guide"]
    assert (seen["answers"], seen["consulted"], seen["interventions"]) == (3, 3, 3) and seen["mean_agreement"] is not None
    path = profile_for(0.5).save(tmp_path / "p.json")
    app = build(scripted_pair(BASE, GUIDE), cfg(method="blendin", profile=str(path)), ServeSettings(profile_update=True))
    with ServerThread(app) as url:
        for _ in range(2):
            httpx.post(url + "/completions", json={"model": "blendin", "prompt": "Q\n"}, timeout=30)
        observed = httpx.get(url + "/profile", timeout=30).json()["observed"]
        assert observed["fake-guide"]["answers"] == 2 and observed["fake-guide"]["consulted"] == 2
        assert 'blendin_guide_consultations_total{guide="fake-guide"} 2.0' in httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    app.state.metrics.ledger.write_into(path)  # what `blendin serve --profile-update` does at shutdown
    assert json.loads(path.read_text())["observed"]["fake-guide"]["answers"] == 2 and Profile.load(path).reliabilities == (0.5,)


def test_profile_update_needs_a_profile_and_says_so_before_loading(monkeypatch, capsys):
    monkeypatch.setattr(blendin.pair, "load_pair", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["serve", "--port", "0", "--profile-update"]) == 2
    assert "--profile-update writes each guide's record into the --profile file: give --profile FILE too" in capsys.readouterr().err


def test_a_profile_is_idle_under_a_method_where_one_model_writes_alone():
    two = Profile(base="fake-base", guides=("fake-guide", "other-guide"), reliabilities=(1.0, 0.0))
    for method in ("base", "guide"):  # a server's request for the guide alone drops the further guides
        assert cfg(method=method, profile=two).profile is two
    writer = scripted_pair(BASE, {"": {"Ġyes": 1.0}, " yes": {"<|end|>": 1.0}})
    assert generate(writer, "Q", cfg(method="guide", profile=two)).text == " yes"


def test_trust_weighs_each_guide_and_its_confidence_against_the_others():
    import random

    from blendin.blend import auto_alpha, guide_weights, split_alpha, trusted_weights

    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(1, 4)
        m_b, ms, agree = rng.random(), [rng.random() for _ in range(n)], [rng.random() for _ in range(n)]
        assert trusted_weights(m_b, ms, agree, [1.0] * n) == guide_weights(m_b, ms, agree)  # bit for bit
        assert trusted_weights(m_b, ms, agree, [1.0] * n, alpha=0.4) == split_alpha(0.4, ms)
        trust = [rng.random() for _ in range(n)]
        w = trusted_weights(m_b, ms, agree, trust)
        assert sum(w) <= 1.0 and all(0.0 <= x <= 1.1 * t for x, t in zip(w, trust))  # the bracket is at most 1 + 0.1
    assert trusted_weights(0.3, [0.6], [0.2], [0.5]) == [0.5 * auto_alpha(0.3, 0.6, 0.2)]
    # a second guide that proved worse no longer halves the first one's weight
    both, first_alone = guide_weights(0.3, [0.9, 0.9], [0.0, 0.0]), guide_weights(0.3, [0.9], [0.0])[0]
    trusted = trusted_weights(0.3, [0.9, 0.9], [0.0, 0.0], [0.9, 0.1])
    assert both[0] < 0.5 * first_alone * 1.2 and trusted[0] > 0.8 * 0.9 * first_alone and trusted[1] < 0.1 * both[1] * 2
