"""Fixtures: the real embedded pair, loaded once per test session."""

import pytest

from blendin import BlendConfig


@pytest.fixture(scope="session")
def embedded_pair():
    """The real Gemma-3-270m + SmolLM2-135M-Instruct pair (converted once, then loaded from the cache)."""
    from blendin import load_pair

    return load_pair(BlendConfig(method="blendin"))


@pytest.fixture
def no_models(monkeypatch):
    """Loading a model raises ``cli_fixtures.ModelLoaded``: a test sees which checks came before loading."""
    import blendin.models
    from cli_fixtures import ModelLoaded

    def refuse(*args, **kwargs):
        raise ModelLoaded(str(args[0]) if args else "")

    for name in ("_load_folder", "_converted", "_remote_model"):
        monkeypatch.setattr(blendin.models, name, refuse)


@pytest.fixture
def models(tmp_path):
    """--base/--guide naming two model folders that exist (nothing in them loads: see no_models)."""
    for name in ("base", "guide"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    return ["--base", str(tmp_path / "base"), "--guide", str(tmp_path / "guide")]
