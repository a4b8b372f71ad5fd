"""Errors a user can fix. The message names the problem and the fix; the CLI prints it without a traceback."""

import difflib


class BlendinError(Exception):
    """Base class: anything blendin reports to a user as a plain message."""


class ConfigError(BlendinError, ValueError):
    """A bad option or argument (caught before any model loads)."""


class ModelLoadError(BlendinError):
    """A model could not be found or loaded; the message lists what was tried."""


class ModelUnavailable(BlendinError):
    """A loaded model did not answer while decoding (a server down or timing out, a 5xx, an answer
    that is not one). A guide's is survived where ``BlendConfig.on_guide_failure`` is "degrade": the
    base decides alone at the steps it would have guided; a base's fails the row."""


def message_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name where it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def first_line(exc: BaseException) -> str:
    """'TypeName: first line of the message', for one-line reports of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'blendin'?)' for a near miss, else ''.

    >>> did_you_mean("blendn", ["base", "blendin"])
    " (did you mean 'blendin'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
