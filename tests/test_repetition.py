"""An answer that repeats itself stops where it does only when asked (``repeat_stop``: the demo and
the server's page ask; generate and eval by default do not)."""

import pytest
from scripted import base_tokenizer, config, guide_tokenizer

from blendin.backends.fake import ScriptedModel
from blendin.decoding import generate, generate_many
from blendin.pair import Pair
from blendin.repetition import MIN_SPAN, loop_period


@pytest.mark.parametrize("text, period", [
    ("The baker makes 24 muffins. " * 2, 28),
    ("ha " * 11, 3),
    ("x" + "Question: what is 2+2?\nAnswer: 4\n" * 2, 33),
    ("1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ", 3),
])
def test_a_loop_is_found_as_its_second_copy_ends(text, period):
    assert loop_period(text) == period


def test_a_sentence_is_a_loop_only_once_its_second_copy_is_whole():
    text = "The baker makes 24 muffins. " * 2
    assert [loop_period(text[:n]) for n in range(len(text) - 3, len(text) + 1)] == [None, None, None, 28]


@pytest.mark.parametrize("text", [
    "Step 1: 24 + 18 = 42 muffins. Step 2: 42 - 30 = 12 muffins. So 12 are left.",
    "| a | b |\n|---|---|---|---|---|---|---|---|---|---|",  # a rule of dashes: no letter in the unit
    "\n\n\n\n" * 10,
    "Yes. Yes.",  # a short phrase said twice: under MIN_SPAN
    "The answer is B. The answer is B",  # not yet a whole second copy ending the text
])
def test_text_that_does_not_loop_is_left_alone(text):
    assert loop_period(text) is None


def _looping_pair() -> Pair:
    """A base that says ' yes' for ever (its script ignores the text); the guide is never asked (m_b 1)."""
    base = ScriptedModel(base_tokenizer(), lambda text: {"▁yes": 1.0}, name="fake-base")
    guide = ScriptedModel(guide_tokenizer(), lambda text: {"Ġno": 1.0}, name="fake-guide")
    return Pair(base=base, guide=guide)


def test_repeat_stop_ends_a_loop_and_is_off_by_default():
    pair = _looping_pair()
    plain = generate(pair, "Q", config(max_new_tokens=40))
    assert plain.stop_reason == "length" and plain.tokens == 40  # the method's answer as it comes
    stopped = generate(pair, "Q", config(max_new_tokens=40, repeat_stop=True))
    assert stopped.stop_reason == "repeat"
    assert stopped.text == " yes" * (MIN_SPAN // 4) and stopped.tokens == MIN_SPAN // 4  # nothing cut: the second copy stays


def test_batched_rows_stop_as_they_would_alone():
    pair = _looping_pair()
    jobs = [{"prompt": "Q", "config": config(max_new_tokens=40, repeat_stop=flag)} for flag in (True, False, True)]
    results = dict(generate_many(pair, jobs, config(), batch_size=3))
    assert [results[i].stop_reason for i in range(3)] == ["repeat", "length", "repeat"]


def test_repeat_stop_is_a_yes_or_no():
    with pytest.raises(Exception, match="repeat_stop must be True or False"):
        config(repeat_stop="yes")
