"""The generated text, as runs of tokens from two vocabularies, and words of a tokenizer's pieces.

    t = Transcript(); t.push(base_tok, 17); t.push(guide_tok, 4); t.text
    split_words(tok, ids)      # [[The], [ cat, s, .]]: a word begins at a piece starting with a space
"""

from __future__ import annotations


class Transcript:
    """The generated text, built from runs of tokens, each run written by one model.

    A token that ends inside a multi-byte character adds no text until the character is complete.
    """

    def __init__(self):
        self._done = ""  # text of finished runs
        self._tok = None  # tokenizer of the current run
        self._ids: list[int] = []
        self._stable = ""  # decoded text of the current run, up to the last complete character

    @property
    def text(self) -> str:
        return self._done + self._stable

    def push(self, tok, token_id: int) -> str:
        """Add one token; return the new text it completes."""
        if tok is not self._tok:
            self.flush()
            self._tok = tok
        self._ids.append(token_id)
        full = tok.decode(self._ids)
        if full.endswith("\ufffd"):
            return ""
        delta, self._stable = full[len(self._stable) :], full
        return delta

    def flush(self) -> None:
        """End the current run (an unfinished character is kept as U+FFFD)."""
        if self._tok is not None:
            self._done += self._tok.decode(self._ids)
        self._tok, self._ids, self._stable = None, [], ""

    def cut(self, length: int) -> None:
        self.flush()
        self._done = self._done[:length]


def split_words(tok, ids: list[int]) -> list[list[int]]:
    """Group token ids into words: a token whose text starts with whitespace begins a new word
    (unless the word so far is only whitespace). End-of-sequence tokens stand alone.

    For GPT-2 style pieces: ['ĠThe', 'Ġcat', 's', '.', 'Ċ'] -> [[The], [ cat, s, .], [\\n]]
    """
    words: list[list[int]] = []
    for token in ids:
        text = tok.decode([token])
        starts = token in tok.eos_ids or (text[:1].isspace() and words and tok.decode(words[-1]).strip())
        if not words or starts or (words[-1] and words[-1][-1] in tok.eos_ids):
            words.append([token])
        else:
            words[-1].append(token)
    return words
