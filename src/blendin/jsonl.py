"""Prompts in, results out, one JSON object per line (``blendin generate --input/--output``).

Input lines: ``{"prompt": "...", "id": "q1", "system": "..."}`` (``id`` and ``system`` optional; a line
without ``id`` gets its line number). Output lines: the ``--json`` result plus the input's ``id``,
written and flushed as each prompt finishes. Re-running with the same ``--output`` skips the ids
already there, so an interrupted run loses nothing and repeats nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigError


def read_objects(path: str, example: str) -> list[tuple[int, dict]]:
    """(line number, object) for every non-empty line of an --input file; a folder, a missing file or
    a line that is not one JSON object is an error naming it (``example``: a line as it should be)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--input {path} is a folder; pass a JSONL file, one {example} per line")
    if not p.is_file():
        raise ConfigError(f"--input {path}: no such file; pass a JSONL file, one {example} per line")
    out = []
    for n, line in enumerate(_text(p, "--input").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{n}: each line must be one JSON object, e.g. {example}")
        out.append((n, obj))
    if not out:
        raise ConfigError(f"--input {path} has no lines")
    return out


def unique_ids(path: str, rows: list[tuple[int, dict]]) -> None:
    """Each object's "id" (its line number where it has none) set and unique, else an error naming the line."""
    seen = set()
    for n, obj in rows:
        obj.setdefault("id", n)
        if obj["id"] in seen:
            raise ConfigError(f"{path}:{n}: id {obj['id']!r} appears twice; ids must be unique")
        seen.add(obj["id"])


def read_prompts(path: str) -> list[dict]:
    """Every input line as {"id", "prompt", "system"?}; a bad line is an error naming its number."""
    rows = read_objects(path, '{"prompt": ...}')
    for n, obj in rows:
        if not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
            raise ConfigError(f'{path}:{n}: each line needs a non-empty "prompt" string, e.g. {{"id": "q1", "prompt": "..."}}')
    unique_ids(path, rows)
    return [obj for _, obj in rows]


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
    """Ids already in a results file (``--output``); a missing file has none.

    A file that is not one of these results is refused with a ConfigError naming its first foreign
    line, rather than appended to: a line that is not a JSON object with an "id" and a "text". The one
    exception is a line cut off by a killed run (``ResultWriter`` starts each with ``{"id": ``; the
    file's last line, or any line with that start, since the next run ends it with a newline)."""
    p = Path(path)
    if not p.exists():
        return set()
    text = _text(p, "--output")
    lines = text.splitlines()
    done = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if line.startswith('{"id": ') or (n == len(lines) and not text.endswith("\n")):
                continue  # cut off by a killed run
            raise ConfigError(_foreign(path, n, f"not valid JSON: {exc.msg}")) from None
        if not isinstance(row, dict):
            raise ConfigError(_foreign(path, n, f"a JSON {type(row).__name__}, not an object"))
        if "id" not in row or "text" not in row:
            raise ConfigError(_foreign(path, n, 'a JSON object without "id" and "text"'))
        done.add(row["id"])
    return done


def _foreign(path: str, n: int, what: str) -> str:
    return (f"--output {path}:{n} is {what}, so the file is not blendin's results (nothing was written to it); "
            "name a new file, or the results file of an earlier run to resume it")


def _text(p: Path, flag: str) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{flag} {p}:{line} is not UTF-8 text; {flag} takes a JSONL file (UTF-8, one JSON object per line)") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {p} cannot be read ({exc.strerror or exc})") from None


def rows_text(rows) -> str:
    """Rows as a results file holds them: one JSON object a line, as ``ResultWriter`` writes them."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def replace_file(path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: to a temporary file beside it first, then
    renamed over it (``os.replace``), so a killed run leaves the old file or the new one."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


class ResultWriter:
    """Appends one result per line and flushes it at once."""

    def __init__(self, path: str):
        p = Path(path)
        if p.exists() and p.stat().st_size and not p.read_bytes().endswith(b"\n"):
            with p.open("ab") as f:  # a killed run may have left half a line: end it
                f.write(b"\n")
        self._file = p.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(rows_text([record]))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
