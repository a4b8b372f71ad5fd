"""The set-up installs what the README's examples import: `make` installs the `serve` extra, and the
README calls `blendin serve` with the openai client."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_serve_extra_installs_the_openai_client_the_readme_uses():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "from openai import OpenAI" in (ROOT / "README.md").read_text()
    assert {"fastapi", "uvicorn", "openai"} <= _names(extras["serve"])
    assert re.search(r"pip install .*-e '\.\[[a-z,]*serve[a-z,]*\]'", (ROOT / "Makefile").read_text())  # make installs it
    assert re.search(r"^openai==\S+$", (ROOT / "constraints.txt").read_text(), re.M)  # at the pinned version
