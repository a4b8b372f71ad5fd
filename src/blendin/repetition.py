r"""Whether an answer has begun repeating itself: what ``BlendConfig.repeat_stop`` stops.

A small pretrained base, left to itself, often falls into a loop: it writes a sentence, then the same
sentence again, and again until the token limit ("The baker makes 24 muffins... The baker makes 24
muffins..."). The demo and the server's page stop such an answer once it has said the same thing
twice in a row (``stop_reason`` "repeat"); ``generate``
and ``eval`` never do unless asked (``--repeat-stop``), so their answers stay the method's own.

The rule: the text ends in a loop when its last ``window = max(2 * period, MIN_SPAN)`` characters
repeat with some period of at most ``MAX_PERIOD`` characters (each character equals the one a
period earlier), that is, when a unit of ``period`` characters has just been written again right
after itself, and the repeated run is at least ``MIN_SPAN`` characters long (so "ha ha" or "1, 1"
pass, and a phrase repeated once is caught as its second copy ends). A unit without a letter or a
digit is never a loop (a rule of dashes, a table's ``|---|``, blank lines).

The text is not cut: the second copy stays, so the reader sees the loop begin, and a streamed answer
never takes back what it sent (a cut could reach a whole paragraph back).

    >>> loop_period("The baker makes 24 muffins. The baker makes 24 muffins. ")
    28
    >>> loop_period("Step 1: add 3. Step 2: add 4.") is None
    True
    >>> loop_period("ha " * 12)
    3
    >>> loop_period("| a | b |\n|---|---|---|---|---|---|---|---|---|---|") is None
    True
"""

from __future__ import annotations

MIN_SPAN = 32  # characters the repeated run must cover before it counts as a loop
MAX_PERIOD = 400  # the longest unit looked for (a paragraph); longer loops run to the token limit


def loop_period(text: str) -> int | None:
    """The length of the unit ``text`` ends repeating (its shortest period), or None where it does
    not end in a loop. Checks every period up to ``MAX_PERIOD``; cheap enough to ask after each token."""
    for period in range(1, min(MAX_PERIOD, len(text) // 2) + 1):
        window = max(2 * period, MIN_SPAN)
        if window > len(text):
            break
        if text[-1] != text[-1 - period]:
            continue  # most periods fail at the last character
        tail = text[-window:]
        if tail[period:] == tail[:-period] and any(c.isalnum() for c in tail[-period:]):
            return period
    return None
