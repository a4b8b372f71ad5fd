"""Shared by the CLI tests: checks that must pass before any model loads."""


class ModelLoaded(Exception):
    """A model started to load: every check before it passed."""
