"""Errors a user can fix. The message names the problem and the fix; the CLI prints it without a traceback."""


class BlendinError(Exception):
    """Base class: anything blendin reports to a user as a plain message."""


class ConfigError(BlendinError, ValueError):
    """A bad option or argument (caught before any model loads)."""


class ModelLoadError(BlendinError):
    """A model could not be found or loaded; the message lists what was tried."""
