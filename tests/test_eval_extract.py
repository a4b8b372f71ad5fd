"""The ARC letter reader and LaTeX's \\boxed{} (issue 33): a boxed letter is the model's stated answer."""

import pytest

from blendin.eval.extract import choice_letter


@pytest.mark.parametrize("text, letter", [
    (r"... so the answer is \boxed{B}", "B"),
    (r"The answer is \boxed{\text{C}}.", "C"),
    (r"Therefore $\boxed{D}$", "D"),
    (r"\boxed{(A)}", "A"),
    (r"\boxed{ \textbf{B} }", "B"),
    (r"\[\boxed{\mathrm{C}}\]", "C"),
])
def test_a_boxed_letter_is_read(text, letter):
    assert choice_letter(text, 4) == letter


@pytest.mark.parametrize("text, letter", [
    (r"A is correct at first sight, but (B) fails... the answer is \boxed{C}", "C"),  # stray and stated letters before
    (r"Answer: A. Checking again: \boxed{D}", "D"),
    (r"\boxed{B} at first, then I see it is \boxed{C}", "C"),  # the last box: a model that boxes twice corrected itself
    ("Option A is incorrect, the answer is \\boxed{B}\nQuestion: next?\nAnswer: \\boxed{A}", "B"),  # its own next turn is not read
])
def test_a_boxed_letter_wins_over_earlier_letters(text, letter):
    assert choice_letter(text, 4) == letter


@pytest.mark.parametrize("text, letter", [
    (r"the answer is \boxed{E}, I think (B)", "B"),  # no fifth choice: the box names none, the rest is read as before
    (r"\boxed{42} so (C)", "C"),  # a boxed number is no letter
    (r"\boxed{x} is the variable; answer: A", "A"),  # lower case: an algebra variable, not a choice
])
def test_a_box_without_a_choice_letter_is_passed_over(text, letter):
    assert choice_letter(text, 4) == letter
