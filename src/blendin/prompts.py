"""Turning a user's text into each model's prompt.

The base (a pretrained model) gets plain text; the guide (an instruction-tuned model) gets the same
conversation through its own tokenizer's chat template, never a template guessed from its name
(``PromptFormat.base_prompt="chat"`` gives an instruction-tuned base its template too):

    >>> base_prompt(PromptFormat(), "What is 2+3?")
    'Answer the question by walking through the reasoning step by step.\\nQuestion: What is 2+3?\\nAnswer:\\n'

A guide whose tokenizer has no chat template gets the base's plain text instead. The answer ends
where this format would start the next turn, a line beginning 'Question:' (``BlendConfig.turn_stop``
and ``stops``), wherever blendin wrote the prompt; a raw completion prompt is the client's own text.

The server renders ahead of time, into a ``Rendered`` prompt (token ids per model): a chat
conversation (``render_chat``), or a raw completion prompt both models continue (``render_raw``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import PromptFormat


@dataclass(frozen=True)
class Rendered:
    """A prompt as token ids, each model's in its own vocabulary (None for a model not used)."""

    base_ids: tuple[int, ...] | None
    guide_ids: tuple[int, ...] | None
    more_guide_ids: tuple[tuple[int, ...], ...] = ()  # the further guides', in order


def base_prompt(fmt: PromptFormat, user: str) -> str:
    head = f"{fmt.system}\n" if fmt.system else ""
    return f"{head}{fmt.question_prefix}{user}\n{fmt.answer_cue}"


def prompt_ids(tokenizer, fmt: PromptFormat, user: str, chat: bool) -> list[int]:
    """Token ids of the prompt: the chat template when ``chat`` and the tokenizer has one, else plain text."""
    return chat_ids(tokenizer, fmt, with_system(fmt, [{"role": "user", "content": user}]), chat)


def chat_ids(tokenizer, fmt: PromptFormat, messages: list[dict], chat: bool) -> list[int]:
    """One model's token ids for a conversation: its chat template when ``chat`` and it has one,
    else the base's plain text (``base_chat_text``)."""
    if chat:
        rendered = tokenizer.chat(messages)
        if rendered is not None:
            # the template writes its own BOS where the model wants one
            return tokenizer.encode(rendered)
    return tokenizer.encode_prompt(base_chat_text(fmt, messages))


def with_system(fmt: PromptFormat, messages: list[dict]) -> list[dict]:
    """The messages, led by ``fmt.system`` when they have no system message of their own."""
    if any(m["role"] == "system" for m in messages) or not fmt.system:
        return messages
    return [{"role": "system", "content": fmt.system}, *messages]


def base_chat_text(fmt: PromptFormat, messages: list[dict]) -> str:
    """A conversation as the base's plain text: the system line, then each turn in the question /
    answer format, ending with the answer cue. One user message gives exactly ``base_prompt``.

    A user message that is framed already (a task's own "Question: ... Answer:" text, as
    lm-evaluation-harness sends one) is not framed twice: one that begins with the question prefix
    gets no second one, and a last one that ends with the answer cue gets no second cue (the base
    continues right after it)."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or fmt.system
    out = f"{system}\n" if system else ""
    asks, cue = fmt.question_prefix.strip(), fmt.answer_cue.strip()
    cued = False  # the last user message ended with the cue itself: its answer follows right after it
    for m in messages:
        if m["role"] == "user":
            text = m["content"]
            prefix = "" if asks and text.lstrip().startswith(asks) else fmt.question_prefix
            cued = bool(cue) and text.rstrip().endswith(cue)
            out += prefix + (text.rstrip() if cued else f"{text}\n")
        elif m["role"] == "assistant":
            out += f"{'' if cued else fmt.answer_cue}{m['content']}\n"
            cued = False
    return out if cued else out + fmt.answer_cue


def render_chat(base_tok, guide_tok, fmt: PromptFormat, messages: list[dict], more_guide_toks=()) -> Rendered:
    """Chat messages ([{"role", "content"}], roles system/user/assistant) for both models: the guide
    through its chat template, the base as plain text (or its template, ``fmt.base_prompt="chat"``). Without a system message, ``fmt.system`` is used.
    ``more_guide_toks``: further guides' tokenizers, each rendering through its own template."""
    messages = with_system(fmt, messages)
    base = tuple(chat_ids(base_tok, fmt, messages, chat=fmt.base_prompt == "chat")) if base_tok else None
    guide = tuple(chat_ids(guide_tok, fmt, messages, chat=True)) if guide_tok else None
    more = tuple(tuple(chat_ids(tok, fmt, messages, chat=True)) for tok in more_guide_toks) if guide_tok else ()
    return Rendered(base, guide, more)


def render_raw(base_tok, guide_tok, text: str | None = None, base_ids: list[int] | None = None, more_guide_toks=()) -> Rendered:
    """A completion prompt both models continue as it stands (no template). Given as base token ids
    (as vLLM takes them), the base reads exactly those and the guide their text."""
    if base_ids is not None:
        text = base_tok.decode(base_ids)
        base = tuple(base_ids)
    else:
        base = tuple(base_tok.encode_prompt(text)) if base_tok else None
    guide = tuple(guide_tok.encode_prompt(text)) if guide_tok else None
    more = tuple(tuple(tok.encode_prompt(text)) for tok in more_guide_toks) if guide_tok else ()
    return Rendered(base, guide, more)
