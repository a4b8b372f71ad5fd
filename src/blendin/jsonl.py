"""Prompts in, results out, one JSON object per line (``blendin generate --input/--output``).

Input lines: ``{"prompt": "...", "id": "q1", "system": "..."}`` (``id`` and ``system`` optional; a line
without ``id`` gets its line number). Output lines: the ``--json`` result plus the input's ``id``,
written and flushed as each prompt finishes. Re-running with the same ``--output`` skips the ids
already there, so an interrupted run loses nothing and repeats nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError


def read_prompts(path: str) -> list[dict]:
    """Every input line as {"id", "prompt", "system"?}; a bad line is an error naming its number."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--input {path}: no such file")
    items, seen = [], set()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
            raise ConfigError(f'{path}:{n}: each line needs a non-empty "prompt" string, e.g. {{"id": "q1", "prompt": "..."}}')
        obj.setdefault("id", n)
        if obj["id"] in seen:
            raise ConfigError(f"{path}:{n}: id {obj['id']!r} appears twice; ids must be unique")
        seen.add(obj["id"])
        items.append(obj)
    if not items:
        raise ConfigError(f"--input {path} has no prompts")
    return items


def read_rows(path) -> list[dict]:
    """Every complete JSON object of a results file (a line cut off by a killed run is skipped)."""
    p = Path(path)
    rows = []
    if p.exists():
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def finished_ids(path: str) -> set:
    """Ids already in a results file."""
    return {row["id"] for row in read_rows(path) if "id" in row}


class ResultWriter:
    """Appends one result per line and flushes it at once."""

    def __init__(self, path: str):
        p = Path(path)
        if p.exists() and p.stat().st_size and not p.read_bytes().endswith(b"\n"):
            with p.open("ab") as f:  # a killed run may have left half a line: end it
                f.write(b"\n")
        self._file = p.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
