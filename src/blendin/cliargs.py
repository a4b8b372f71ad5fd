"""argparse in blendin's words: one line per mistake naming the flag, every option with its default,
and the value types the CLI's options share (numbers, fractions, whole numbers in a range, alpha).

    parser = Parser(prog="blendin", formatter_class=Help)
    parser.add_argument("--gamma", type=fraction, default=0.4, help="...")   # '--gamma must be a number in [0, 1], got 2'
"""

from __future__ import annotations

import argparse
import math
import re

from .config import did_you_mean

COMMANDS = ("generate", "demo", "eval", "diagnose", "report", "serve", "prepare")


class UsageError(Exception):
    """A mistake in the command line, in one line; ``main`` prints it as blendin's other errors (exit 2)."""


class Parser(argparse.ArgumentParser):
    """Reports a mistake as one line naming the flag, not as the usage text."""

    def error(self, message: str):
        raise UsageError(usage_error(message, self.prog))


class Help(argparse.HelpFormatter):
    """Every option's help ends with its default ('none' for an option unset by default), unless it
    says it already (or the option is a switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if not action.option_strings or action.nargs == 0 or default is argparse.SUPPRESS or "default" in text:
            return text
        if default is None or default == []:
            default = "none"
        elif isinstance(default, str) and (not default or default != default.strip() or "\n" in default):
            default = repr(default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


def usage_error(message: str, prog: str) -> str:
    """argparse's message as one line naming the flag ('--gamma must be a number, got 'abc'')."""
    m = re.match(r"argument (\S+): (.*)", message, re.S)
    if m:
        name, rest = m.group(1).split("/")[0], m.group(2)
        choice = re.match(r"invalid choice: '([^']*)'", rest)
        if name == "COMMAND" and choice:
            return f"unknown command '{choice.group(1)}'{did_you_mean(choice.group(1), COMMANDS)}; choose one of: {', '.join(COMMANDS)}"
        if rest.startswith("must "):
            return f"{name} {rest}"
        if rest.startswith("expected "):
            return f"{name} needs a value ({prog} --help)"
        return f"{name}: {rest} ({prog} --help)"
    required = "the following arguments are required: "
    if message.startswith(required):
        names = message[len(required):]
        if names == "COMMAND":
            return f"give a command: {', '.join(COMMANDS)} (blendin --help; blendin COMMAND --help)"
        return f"{prog} needs {names} ({prog} --help)"
    return f"{message} ({prog} --help)"


def unknown_options(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """The message for arguments no option takes, with the nearest option for a misspelt one."""
    flags = [o for o, action in parser._option_string_actions.items() if action.help is not argparse.SUPPRESS]
    hint = next((did_you_mean(x.split("=")[0], flags) for x in extra if x.startswith("--")), "")
    return f"unrecognized arguments: {' '.join(extra)}{hint} ({parser.prog} --help lists the options)"


def number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got '{text}'") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
    return x


def fraction(text: str) -> float:
    x = number(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return x


def whole(lo: int, hi: int | None = None):
    """A type for whole-number options, lo..hi: 'must be a whole number >= 1, got 0' otherwise."""
    bounds = f">= {lo}" if hi is None else f"in {lo}..{hi}"

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got '{text}'") from None
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got {n}")
        return n

    return parse


def alpha_value(text: str) -> float | None:
    """'auto' -> None (BlendIn's adaptive alpha), else a number in [0, 1]; ValueError with the message."""
    if text.strip().lower() == "auto":
        return None
    try:
        x = float(text)
    except ValueError:
        x = None
    if x is None or not 0 <= x <= 1:
        shown = text if x is not None else f"'{text}'"
        raise ValueError(f"must be a number in [0, 1] or 'auto' (BlendIn's adaptive alpha), got {shown}")
    return x


def alpha(text: str) -> float | None:
    try:
        return alpha_value(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# config fields named by library messages, as a CLI user knows them
FIELD_FLAGS = {"gamma": "--gamma", "alpha": "--alpha", "max_new_tokens": "--max-new-tokens", "temperature": "--temperature",
                "top_p": "--top-p", "seed": "--seed", "stop strings": "--stop", "top_k": "--top-k", "chunk": "--chunk",
                "concurrency": "--concurrency", "batch_size": "--batch-size",
               "device": "--device", "dtype": "--dtype", "guide_device": "--guide-device", "guide_dtype": "--guide-dtype",
               "max_intervention_rate": "--max-intervention-rate", "agreement_top_k": "--agreement-top-k", "retire_below": "--retire-below",
               "retire_after": "--retire-after", "capability_gap": "--capability-gap"}


def flagged(message: str) -> str:
    """A library message in the CLI's words: 'max_new_tokens must ...' -> '--max-new-tokens must ...'."""
    for field, flag in FIELD_FLAGS.items():
        if message.startswith(field + " "):
            return flag + message[len(field):]
    return message
