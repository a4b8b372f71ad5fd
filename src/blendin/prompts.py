"""Turning a user's text into each model's prompt.

The base (a pretrained model) gets plain text; the guide (an instruction-tuned model) gets the same
conversation through its own tokenizer's chat template, never a template guessed from its name:

    >>> base_prompt(PromptFormat(), "What is 2+3?")
    'Answer the question by walking through the reasoning step by step.\\nQuestion: What is 2+3?\\nAnswer:\\n'

A guide whose tokenizer has no chat template gets the base's plain text instead.
"""

from __future__ import annotations

from .config import PromptFormat


def base_prompt(fmt: PromptFormat, user: str) -> str:
    head = f"{fmt.system}\n" if fmt.system else ""
    return f"{head}{fmt.question_prefix}{user}\n{fmt.answer_cue}"


def prompt_ids(tokenizer, fmt: PromptFormat, user: str, chat: bool) -> list[int]:
    """Token ids of the prompt: the chat template when ``chat`` and the tokenizer has one, else plain text."""
    if chat:
        messages = ([{"role": "system", "content": fmt.system}] if fmt.system else []) + [{"role": "user", "content": user}]
        rendered = tokenizer.chat(messages)
        if rendered is not None:
            # the template writes its own BOS where the model wants one
            return tokenizer.encode(rendered)
    return tokenizer.encode_prompt(base_prompt(fmt, user))
