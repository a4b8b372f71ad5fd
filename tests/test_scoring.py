"""Scoring a text under a method (``scoring``), on scripted models with hand-computed numbers: each
token's probability is the one the decoding loop gives it, position by position."""

import math

import pytest

from blendin.blend import auto_alpha
from blendin.decoding import generate
from blendin.errors import ConfigError
from blendin.scoring import score_ids, score_texts, split_pair

from scripted import config, scripted_pair

BASE = {
    "": {"▁yes": 0.3, "▁no": 0.25, "▁maybe": 0.45},  # m_b 0.45 >= 0.4: the base decides
    " maybe": {"▁yes": 0.35, "▁no": 0.30, "▁cat": 0.35},  # m_b 0.35: the guide is consulted
    " maybe no": {"<eos>": 0.9, "▁yes": 0.1},
}
GUIDE = {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}, "": {"Ġyes": 0.7, "Ġno": 0.3}, " maybe no": {"<|end|>": 1.0}, " maybe yes": {"<|end|>": 1.0}}


def pair():
    return scripted_pair(BASE, GUIDE)


def score(p, continuations, method, **kw):
    """Each continuation scored after the prompt "Q\\n" (what the scripts read from)."""
    head = p.base.tokenizer.encode("Q\n")
    return score_ids(p, [(head + p.base.tokenizer.encode(c), len(head)) for c in continuations], config(method=method), **kw)


def test_blendin_scores_each_token_as_the_loop_decodes_it():
    [s] = score(pair(), [" maybe no"], "blendin", top=2)
    alpha = auto_alpha(0.35, 0.6, 0.30)
    mixed_no = alpha * 0.6 + (1 - alpha) * 0.30
    assert [t.text for t in s.tokens] == [" maybe", " no"] and [t.source for t in s.tokens] == ["base", "blend"]
    assert s.tokens[0].logprob == pytest.approx(math.log(0.45)) and s.tokens[1].logprob == pytest.approx(math.log(mixed_no))
    assert s.logprob == pytest.approx(math.log(0.45) + math.log(mixed_no)) and s.greedy and s.interventions == 1
    assert s.base_passes == 1  # the base read the whole text in one pass
    assert s.tokens[1].top[0][1] == pytest.approx(math.log(mixed_no)) and len(s.tokens[1].top) == 2


def test_each_method_gives_its_own_distribution():
    p = pair()
    base, = score(p, [" maybe yes"], "base")
    assert base.logprob == pytest.approx(math.log(0.45) + math.log(0.35)) and base.interventions == 0
    switch, = score(p, [" maybe yes"], "switch")
    assert switch.logprob == pytest.approx(math.log(0.45) + math.log(0.4)) and not switch.greedy  # the guide's top is ' no'
    guide, = score(p, [" maybe yes"], "guide")  # the guide everywhere, even where the base is sure
    assert [t.source for t in guide.tokens] == ["guide", "guide"] and guide.tokens[0].logprob == float("-inf")
    assert guide.tokens[1].logprob == pytest.approx(math.log(0.4))
    assert guide.guide_passes == 1  # its pass read the rest of the text ahead: no pass per position


def test_a_greedy_generation_scores_greedy_with_its_own_probabilities():
    p = pair()
    r = generate(p, "Q", config(method="blendin"))
    [s] = score(p, [r.text], "blendin")
    assert s.greedy and [t.logprob for t in s.tokens] == pytest.approx([math.log(x.chosen_prob) for x in r.steps[:2]])


def test_an_end_token_inside_the_text_is_scored_and_scoring_goes_on():
    p = pair()
    head = p.base.tokenizer.encode("Q\n")
    [s] = score_ids(p, [(head + p.base.tokenizer.encode(" maybe no") + [min(p.base.tokenizer.eos_ids)], len(head))], config(method="base"))
    assert len(s.tokens) == 3 and s.tokens[2].logprob == pytest.approx(math.log(0.9)) and s.tokens[2].greedy


def test_batched_texts_score_as_alone_and_a_bad_one_fails_alone():
    p = pair()
    texts = [" maybe no", " yes", " maybe yes"]
    alone = [score(p, [t], "blendin")[0] for t in texts]
    together = score(p, texts, "blendin", batch_size=3)
    assert [a.tokens for a in alone] == [t.tokens for t in together]
    head = p.base.tokenizer.encode("Q\n")
    ids = head + p.base.tokenizer.encode(" maybe no")
    out = score_ids(p, [(ids, len(ids)), (ids, len(head))], config(method="blendin"))
    assert out[0].error and "at least one token" in out[0].error and out[1].tokens == alone[0].tokens


def test_nudging_is_refused_before_any_model_runs():
    with pytest.raises(ConfigError, match="whole words"):
        score_texts(pair(), [("Q", " maybe")], config(method="nudging"))


def test_the_split_is_lm_eval_s():
    tok = pair().base.tokenizer
    ids, start = split_pair(tok, "Q\n maybe ", "no")  # the context's trailing space moves to the continuation
    assert tok.decode(ids[start:]) == " no" and tok.decode(ids[:start]) == "Q\n maybe"
    ids, start = split_pair(tok, "", " maybe")  # no context: after the end token
    assert start == 1 and ids[0] in tok.eos_ids


@pytest.mark.parametrize("line, message", [
    ('{"context": "a"}', 'a non-empty "continuation"'),
    ("not json", "not valid JSON"),
])
def test_blendin_score_refuses_a_bad_line_before_any_model_loads(tmp_path, capsys, no_models, line, message):
    from blendin.cli import main

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"context": "x", "continuation": " y"}\n' + line + "\n")
    assert main(["score", "--input", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:2:" in err and message in err


def test_blendin_score_refuses_nudging_and_a_missing_folder_before_any_model_loads(tmp_path, capsys, no_models):
    from blendin.cli import main

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"context": "x", "continuation": " y"}\n')
    assert main(["score", "--input", str(f), "--method", "base,nudging"]) == 2
    assert "whole words" in capsys.readouterr().err
    assert main(["score", "--input", str(f), "--output", str(tmp_path / "no" / "s.jsonl")]) == 2
    assert "folder does not exist" in capsys.readouterr().err
