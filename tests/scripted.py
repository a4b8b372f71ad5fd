"""Scripted pairs with exact distributions, shared by the tests."""

import string

from blendin import BlendConfig, PromptFormat
from blendin.backends.fake import FakeTokenizer, ScriptedModel
from blendin.pair import Pair

# Prompts in tests are plain text followed by a newline; scripts read what comes after it.
PLAIN = PromptFormat(system="", question_prefix="", answer_cue="")

_CHARS = [c for c in string.ascii_letters + string.digits + ".,:;?!'\n"]


def base_tokenizer() -> FakeTokenizer:
    """SentencePiece-style pieces ('▁'), as Gemma spells them."""
    words = ["▁yes", "▁no", "▁maybe", "▁The", "▁cat", "▁"]
    return FakeTokenizer(["<eos>", "<bos>", *words, *_CHARS], eos="<eos>", specials=["<bos>"])


def guide_tokenizer() -> FakeTokenizer:
    """Byte-level pieces ('Ġ'), as SmolLM2 spells them; 'Ġcats' has no base twin, '<|sys|>' is a control token."""
    words = ["Ġyes", "Ġno", "Ġmaybe", "ĠThe", "Ġcats", "Ġ"]
    return FakeTokenizer(["<|end|>", "<|sys|>", *words, *_CHARS], eos="<|end|>", specials=["<|sys|>"], byte_level=True)


def after_prompt(text: str) -> str:
    """The generated part of a scripted model's context."""
    return text.split("\n", 1)[1] if "\n" in text else ""


def scripted_pair(base_script: dict, guide_script: dict) -> Pair:
    """A pair whose models answer from {generated text so far: {piece: prob}} tables."""
    base = ScriptedModel(base_tokenizer(), lambda t: base_script[after_prompt(t)], name="fake-base")
    guide = ScriptedModel(guide_tokenizer(), lambda t: guide_script[after_prompt(t)], name="fake-guide")
    return Pair(base=base, guide=guide)


def config(**kw) -> BlendConfig:
    kw.setdefault("prompt", PLAIN)
    kw.setdefault("max_new_tokens", 20)
    return BlendConfig(**kw)
