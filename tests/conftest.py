"""Fixtures: the real embedded pair, loaded once per test session."""

import pytest

from blendin import BlendConfig


@pytest.fixture(scope="session")
def embedded_pair():
    """The real Gemma-3-270m + SmolLM2-135M-Instruct pair (converted once, then loaded from the cache)."""
    from blendin import load_pair

    return load_pair(BlendConfig(method="blendin"))
