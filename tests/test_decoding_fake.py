"""The decoding loop on scripted models, with hand-computed numbers."""

import pytest
import torch

from blendin.backends.base import PrefixSession
from blendin.backends.fake import ScriptedModel
from blendin.blend import auto_alpha
from blendin.decoding import generate
from blendin.errors import ConfigError
from blendin.pair import Pair

from scripted import after_prompt, config, guide_tokenizer, scripted_pair

BASE = {
    "": {"▁yes": 0.3, "▁no": 0.25, "▁maybe": 0.45},  # m_b 0.45 >= 0.4: the base decides
    " maybe": {"▁yes": 0.35, "▁no": 0.30, "▁cat": 0.35},  # m_b 0.35: intervene (a tie, top is ▁yes)
    " maybe no": {"<eos>": 0.9, "▁yes": 0.1},
    " maybe cat": {"<eos>": 1.0},
    " maybe yes": {"<eos>": 1.0},
}


def run(method, guide_at_maybe, **kw):
    pair = scripted_pair(BASE, {" maybe": guide_at_maybe})
    return pair, generate(pair, "Q", config(method=method, **kw))


def test_blendin_hand_computed():
    pair, r = run("blendin", {"Ġno": 0.6, "Ġyes": 0.4})
    alpha = 0.6 / (0.35 + 0.6) + 0.1 * 0.30
    mixed_no = alpha * 0.6 + (1 - alpha) * 0.30
    assert r.text == " maybe no"
    assert [s.source for s in r.steps] == ["base", "blend", "base"]
    first, second, eos = r.steps
    assert (first.token, first.base_top_prob, first.chosen_prob) == (" maybe", pytest.approx(0.45), pytest.approx(0.45))
    assert first.guide_top_prob is first.alpha is first.agreement is None
    assert second.token == " no"
    assert second.base_top_prob == pytest.approx(0.35) and second.guide_top_prob == pytest.approx(0.6)
    assert second.agreement == pytest.approx(0.30)
    assert second.alpha == pytest.approx(alpha)
    assert second.chosen_prob == pytest.approx(mixed_no)
    assert second.guide_mass_exact == pytest.approx(1.0)
    assert eos.token == "" and r.stop_reason == "eos"
    assert (r.tokens, r.interventions) == (3, 1)
    assert r.intervention_rate == pytest.approx(1 / 3) and r.mean_alpha == pytest.approx(alpha)


def test_blendin_alpha_equals_formula_from_the_steps_own_fields():
    _, r = run("blendin", {"Ġno": 0.6, "Ġyes": 0.4})
    for s in r.steps:
        if s.source == "base":
            assert s.base_top_prob >= 0.4 or s.token == ""
        else:
            assert s.alpha == auto_alpha(s.base_top_prob, s.guide_top_prob, s.agreement)


def test_fixed_alpha():
    _, r = run("blendin", {"Ġno": 0.6, "Ġyes": 0.4}, alpha=0.1)
    # 0.1 * guide + 0.9 * base: yes = .04 + .315 = .355 beats no = .06 + .27 = .33
    assert r.steps[1].alpha == 0.1 and r.steps[1].token == " yes"


def test_switch_takes_the_guides_token():
    _, r = run("switch", {"Ġno": 0.6, "Ġyes": 0.4})
    assert [s.source for s in r.steps[:2]] == ["base", "guide"]
    assert r.steps[1].alpha == 1.0 and r.steps[1].chosen_prob == pytest.approx(0.6)


def test_guide_token_without_base_twin_projects_onto_its_first_base_token():
    # 'Ġcats' has no base twin: it lands on '▁cat', the first base token of ' cats'
    _, r = run("switch", {"Ġcats": 0.7, "Ġno": 0.3})
    assert r.text == " maybe cat"
    assert r.steps[1].guide_mass_exact == pytest.approx(0.3)
    assert r.vocab_coverage["mean_guide_mass_exact"] == pytest.approx(0.3)


def test_guide_top_token_missing_from_base_support():
    # the guide's top token is a control token with no base counterpart: agreement 0, no bonus
    _, r = run("blendin", {"<|sys|>": 0.5, "Ġno": 0.5})
    s = r.steps[1]
    assert s.agreement == 0.0 and s.alpha == pytest.approx(0.5 / 0.85)
    assert s.token == " no"  # the dropped mass is renormalised onto the guide's mapped tokens


def test_guide_eos_maps_to_base_eos_and_ends():
    _, r = run("blendin", {"<|end|>": 0.9, "Ġno": 0.1})
    assert r.text == " maybe" and r.stop_reason == "eos" and r.steps[-1].source == "blend"


def test_guide_is_not_run_when_the_base_is_sure():
    pair = scripted_pair({"": {"▁yes": 1.0}, " yes": {"<eos>": 1.0}}, {})
    r = generate(pair, "Q", config(method="blendin"))
    assert r.text == " yes" and r.interventions == 0
    assert pair.guide.sessions[0].forward_calls == 0


def test_guide_catches_up_only_on_the_new_tail():
    base = {
        "": {"▁yes": 0.35, "▁no": 0.3, "▁maybe": 0.35},
        " yes": {"▁no": 0.9, "▁yes": 0.1},
        " yes no": {"▁maybe": 0.35, "▁yes": 0.35, "▁no": 0.3},
        " yes no maybe": {"<eos>": 1.0},
    }
    guide = {"": {"Ġyes": 1.0}, " yes no": {"Ġmaybe": 1.0}}
    pair = scripted_pair(base, guide)
    r = generate(pair, "Q", config(method="blendin"))
    assert r.text == " yes no maybe" and r.interventions == 2
    session = pair.guide.sessions[0]
    assert session.forward_calls == 2
    assert session.forward_tokens == len(session.ids)  # the prompt was read once, then only the tail


def test_base_method_never_consults_the_guide():
    pair = scripted_pair(BASE, {})
    r = generate(pair, "Q", config(method="base"))
    assert r.text == " maybe yes" and all(s.source == "base" for s in r.steps)


def test_guide_method_writes_in_its_own_vocabulary():
    guide = ScriptedModel(guide_tokenizer(), lambda t: {"": {"Ġcats": 1.0}, " cats": {"<|end|>": 1.0}}[after_prompt(t)])
    r = generate(Pair(base=None, guide=guide), "Q", config(method="guide"))
    assert r.text == " cats" and r.intervention_rate == 1.0
    assert r.steps[0].base_top_prob is None and r.steps[0].guide_top_prob == 1.0


NUDGE_GUIDE = {"": {"Ġyes": 0.9, "Ġno": 0.1}, " yes": {"Ġno": 0.8, "Ġyes": 0.2}, " yes no": {"<|end|>": 0.9, "Ġno": 0.1}}


def test_nudging_accepts_words_while_the_base_stays_unsure():
    base = {
        "": {"▁yes": 0.35, "▁no": 0.3, "▁maybe": 0.35},
        " yes": {"▁maybe": 0.36, "▁no": 0.34, "▁yes": 0.30},  # unsure, top 'maybe' does not start 'no'
        " yes no": {"▁The": 0.3, "▁cat": 0.3, "<eos>": 0.4},  # confident again: the guide stops
    }
    r = generate(scripted_pair(base, NUDGE_GUIDE), "Q", config(method="nudging"))
    assert r.text == " yes no"
    assert [(s.token, s.source) for s in r.steps] == [(" yes", "guide"), (" no", "guide"), ("", "base")]
    assert r.steps[0].agreement == pytest.approx(0.35) and r.steps[1].base_top_prob == pytest.approx(0.36)
    assert r.stop_reason == "eos"


def test_nudging_stops_where_the_base_top_token_starts_the_next_word():
    base = {
        "": {"▁yes": 0.35, "▁no": 0.3, "▁maybe": 0.35},
        " yes": {"▁no": 0.36, "▁maybe": 0.34, "▁yes": 0.30},  # unsure, but its top token starts ' no'
        " yes no": {"<eos>": 1.0},
    }
    r = generate(scripted_pair(base, NUDGE_GUIDE), "Q", config(method="nudging"))
    assert [(s.token, s.source) for s in r.steps] == [(" yes", "guide"), (" no", "base"), ("", "base")]


def test_nudging_goes_on_when_the_whole_draft_is_taken_and_the_base_is_still_unsure():
    base = {
        "": {"▁yes": 0.35, "▁no": 0.3, "▁maybe": 0.35},
        " yes": {"▁maybe": 0.36, "▁no": 0.34, "▁yes": 0.30},
        " yes no": {"▁The": 0.3, "▁cat": 0.3, "<eos>": 0.4 - 1e-9, "▁no": 1e-9},  # still unsure
    }
    r = generate(scripted_pair(base, NUDGE_GUIDE), "Q", config(method="nudging", nudge_chunk=2))
    assert [(s.token, s.source) for s in r.steps] == [(" yes", "guide"), (" no", "guide"), ("", "guide")]
    assert r.steps[2].base_top_prob == pytest.approx(0.4 - 1e-9)


def test_stop_strings_and_length():
    pair = scripted_pair({"": {"▁maybe": 1.0}, " maybe": {"▁yes": 1.0}}, {})
    r = generate(pair, "Q", config(method="base", stop=("ay",)))
    assert (r.text, r.stop_reason) == (" m", "stop")
    loop = ScriptedModel(pair.base.tokenizer, lambda t: {"▁yes": 1.0})
    r = generate(Pair(base=loop, guide=None), "Q", config(method="base", max_new_tokens=3))
    assert (r.text, r.stop_reason, r.tokens) == (" yes yes yes", "length", 3)


def test_empty_prompt_and_missing_model_are_clear_errors():
    pair = scripted_pair(BASE, {})
    with pytest.raises(ConfigError, match="prompt is empty"):
        generate(pair, "  ", config())
    with pytest.raises(ConfigError, match="needs a guide"):
        generate(Pair(base=pair.base, guide=None), "Q", config(method="blendin"))


class Counting(PrefixSession):
    def __init__(self):
        super().__init__()
        self.truncated = []

    def _forward(self, new_ids):
        return torch.zeros(3)

    def _truncate(self, keep):
        self.truncated.append(keep)


def test_prefix_session_keeps_the_common_prefix():
    s = Counting()
    s.sync([1, 2, 3]); s.logprobs()
    s.sync([1, 2, 4, 5]); s.logprobs()
    assert s.truncated == [2] and s.forward_tokens == 5
    s.sync([1, 2])  # a prefix of the cache: one token must be re-read to get logits
    s.logprobs()
    assert s.truncated == [2, 1] and s.forward_tokens == 6
    s.sync([1, 2]); s.logprobs()
    assert s.forward_calls == 3  # unchanged context: cached logprobs


def test_many_prompts_in_a_batch_match_each_prompt_alone():
    from blendin.decoding import generate_many

    nudge_base = {
        "": {"▁yes": 0.35, "▁no": 0.3, "▁maybe": 0.35},
        " yes": {"▁maybe": 0.36, "▁no": 0.34, "▁yes": 0.30},
        " yes no": {"▁The": 0.3, "▁cat": 0.3, "<eos>": 0.4},
    }
    cases = [
        ("base", BASE, {}), ("switch", BASE, {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}}),
        ("blendin", BASE, {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}}), ("nudging", nudge_base, NUDGE_GUIDE),
    ]
    prompts = ["Q", "Q", "Q"]
    for method, base, guide in cases:
        pair = scripted_pair(base, guide)
        cfg = config(method=method)
        alone = [generate(pair, p, cfg) for p in prompts]
        together = dict(generate_many(pair, prompts, cfg, batch_size=2))
        assert sorted(together) == [0, 1, 2]
        for i, r in enumerate(alone):
            assert together[i].text == r.text and together[i].steps == r.steps


def test_generate_many_checks_every_prompt_first():
    from blendin.decoding import generate_many

    pair = scripted_pair(BASE, {})
    with pytest.raises(ConfigError, match="prompt 1 is empty"):
        list(generate_many(pair, ["Q", " "], config()))
    with pytest.raises(ConfigError, match="batch_size"):
        list(generate_many(pair, ["Q"], config(), batch_size=0))


def test_blender_facade_on_a_scripted_pair():
    from blendin import Blender

    pair = scripted_pair(BASE, {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}})
    blender = Blender(config(method="blendin"), pair=pair)
    one = blender("Q")
    many = blender(["Q", "Q"], batch_size=2)
    assert one.text == " maybe no" and [r.text for r in many] == [" maybe no", " maybe no"]
    switched = blender.with_(method="base")
    assert switched.pair is pair and switched("Q").text == " maybe yes"
    assert "".join(s.token for s in blender.stream("Q")) == " maybe no"
