"""The README and docs/ stay true: every relative link resolves, every reference page is linked, and
every `blendin` command the README shows uses a command and options that exist.

Options are checked against `blendin COMMAND --help` (one call per command, cached; no model loads,
well under a second each), so a flag renamed or removed in the CLI fails here until the README
follows. Only command lines whose first word is `blendin` are checked: what is passed to `lm_eval`,
`pip`, `curl` or a shell helper is not blendin's.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target may be <...> and may carry a "title"
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HTML_LINK = re.compile(r"""<(?:a|img|source)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where links are links."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(INLINE_CODE.sub("", line))
    return "\n".join(kept)


def relative_links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    targets = [m.group(1) for m in INLINE_LINK.finditer(text)]
    targets += [m.group(1) for m in REFERENCE_LINK.finditer(text)]
    targets += [m.group(1) for m in HTML_LINK.finditer(text)]
    links = []
    for target in targets:
        target = target.strip("<>").strip()
        if not target or target.startswith("#") or SCHEME.match(target) or target.startswith("//"):
            continue
        links.append(target)
    return links


def missing_targets(path: Path) -> list[str]:
    """The relative links in ``path`` whose file or folder does not exist (an #anchor is not checked)."""
    missing = []
    for link in relative_links(path):
        file_part = unquote(re.split(r"[#?]", link, maxsplit=1)[0])
        if not file_part:
            continue
        base = ROOT if file_part.startswith("/") else path.parent
        if not (base / file_part.lstrip("/")).exists():
            missing.append(link)
    return missing


def test_relative_links_resolve():
    broken = [f"{path.relative_to(ROOT)}: {link}" for path in markdown_files() for link in missing_targets(path)]
    assert not broken, "links to files or folders that do not exist:\n" + "\n".join(broken)


def test_link_checker_sees_links(tmp_path):
    """Guards the checker itself: the README's links are found, and a missing target is caught
    (in a link, an image or a reference; not in code, nor an anchor or a web address)."""
    links = relative_links(README)
    assert "docs/trace.png" in links and "docs/results/README.md" in links
    (tmp_path / "there.md").write_text("")
    page = tmp_path / "page.md"
    page.write_text(
        "[a](there.md#part) [b](gone.md) ![c](gone.png \"title\") [d](#top) [e](https://x.org/y.md)\n"
        "`[f](code.md)` [g](<there.md>)\n```\n[h](fenced.md)\n```\n[ref]: gone-ref.md\n"
    )
    assert missing_targets(page) == ["gone.md", "gone.png", "gone-ref.md"]


def test_reference_pages_are_linked():
    """Every page directly under docs/ is linked from the README, and every study under
    docs/results/ from docs/results/README.md (its index)."""
    readme_links = {Path(unquote(l.split("#")[0])).as_posix() for l in relative_links(README)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in readme_links]
    assert not missing, f"docs pages the README does not link: {missing}"
    index = DOCS / "results" / "README.md"
    index_links = {unquote(l.split("#")[0]) for l in relative_links(index)}
    unlisted = [p.name for p in sorted((DOCS / "results").glob("*.md")) if p != index and p.name not in index_links]
    assert not unlisted, f"studies docs/results/README.md does not list: {unlisted}"


# -- the commands the README shows


def readme_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for each `blendin` command line: in code blocks, `$ blendin ...` and
    `blendin ...` lines; outside them, lines indented as code (four spaces) that start `blendin`.
    A line ending in a backslash continues on the next."""
    lines = text.splitlines()
    commands, fenced, language, i = [], False, "", 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if FENCE.match(line):
            fenced = not fenced
            language = line.strip()[3:].strip().lower() if fenced else ""
            continue
        stripped = line.strip()
        if fenced and language in ("python", "py", "pycon", "json", "jsonl"):
            continue  # code, not a command line (`blendin = ...` would be a variable)
        if fenced:
            if stripped.startswith("$ "):
                stripped = stripped[2:].lstrip()
        elif not line.startswith("    "):
            continue
        if not re.match(r"blendin(\s|$)", stripped):
            continue
        command = stripped
        while command.endswith("\\") and i < len(lines):
            command = command[:-1] + " " + lines[i].strip()
            i += 1
        commands.append((number, command))
    return commands


SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "<<", "2>", "2>&1", "(", ")"}


def command_words(command: str) -> list[str]:
    """The words of blendin's own command: shell-split, comments dropped, up to the first shell
    operator (a pipe, `&`, `;`, a redirection)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = []
    for word in lexer:
        if word in SHELL_OPERATORS or set(word) <= set(";&|<>()"):
            break
        words.append(word)
    return words


def options_used(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("--") and w != "--"]


@functools.lru_cache(maxsize=None)
def blendin_help(subcommand: str | None) -> tuple[int, str]:
    args = [sys.executable, "-m", "blendin", *([subcommand] if subcommand else []), "--help"]
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    return done.returncode, done.stdout + done.stderr


def has_option(help_text: str, option: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", help_text) is not None


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_commands_are_found():
    """Guards the extractor: the README's examples of each command are all seen."""
    subcommands = {command_words(c)[1] for _, c in COMMANDS if len(command_words(c)) > 1}
    assert {"generate", "demo", "serve", "eval", "diagnose", "report", "prepare"} <= subcommands
    words = command_words('blendin generate --gamma=0.3 "$(printf \'a\\nb\')" --json - < q.txt # note --nope')
    assert options_used(words) == ["--gamma", "--json"]
    assert options_used(command_words("blendin serve --port 8000 & lm_eval --model x")) == ["--port"]
    assert readme_commands("```console\n$ blendin eval --task a \\\n    --limit 3\n```\n") == [(2, "blendin eval --task a  --limit 3")]
    assert readme_commands("```python\nblendin = Blender()\n```\n    blendin demo --json\n") == [(4, "blendin demo --json")]


def command_id(number: int, command: str) -> str:
    words = command.split()
    return f"line{number}-{words[1] if len(words) > 1 else 'blendin'}"


@pytest.mark.parametrize("number, command", COMMANDS, ids=[command_id(n, c) for n, c in COMMANDS])
def test_readme_command_parses(number, command):
    words = command_words(command)
    assert words and words[0] == "blendin", command
    if len(words) == 1:
        return  # `blendin` alone prints the commands
    subcommand = None if words[1].startswith("-") else words[1]
    rc, help_text = blendin_help(subcommand)
    assert rc == 0, f"README line {number}: `blendin {subcommand} --help` failed (no such command?):\n{help_text}"
    unknown = [o for o in options_used(words[1:] if subcommand is None else words[2:]) if not has_option(help_text, o)]
    assert not unknown, f"README line {number}: blendin {subcommand or ''} has no option {', '.join(unknown)}: {command}"
