"""``blendin demo``: three answers, labelled, the guided tokens marked, a line read from the answers;
rendering checked on scripted results (fast), the command on the embedded pair (slow)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scripted import config, scripted_pair
from test_server_scripted import SWITCH_BASE, SWITCH_GUIDE

from blendin.decoding import generate
from blendin.demo import look_at, render

BLENDIN = str(Path(sys.executable).with_name("blendin"))


def _blended():
    """' maybe' from the base, then ' cat' blended (the base unsure at 0.35), then the end."""
    return generate(scripted_pair(SWITCH_BASE, SWITCH_GUIDE), "Q", config(method="blendin"))


def test_guided_tokens_are_bracketed_without_colour_with_alpha_on_request():
    r = _blended()
    alpha = next(s.alpha for s in r.steps if s.source == "blend")
    assert render(r, colour=False) == " maybe[ cat]"
    assert render(r, colour=False, show_alpha=True) == f" maybe[ cat {alpha:.2f}]"
    assert render(r, colour=False, marked=False) == " maybe cat"  # the guide alone: every token its own, none marked


def test_colour_shades_a_guided_token_by_alpha():
    shown = render(_blended(), colour=True)
    assert re.fullmatch(r" maybe\x1b\[48;5;\d+m\x1b\[30m cat\x1b\[0m", shown)


def test_what_a_stop_cut_is_shown_dimmed_after_the_answer():
    r = generate(scripted_pair(SWITCH_BASE, SWITCH_GUIDE), "Q", config(method="blendin", stop=(" cat",)))
    assert r.text == " maybe" and render(r, colour=False) == " maybe (then it wrote ' cat', a stop string, cut there)"


def test_the_closing_line_is_read_from_the_answers():
    r = _blended()
    line = look_at(["base alone", "guide alone", "BlendIn"], [r, r, r], colour=False)
    assert line.startswith("What to look at: the tokens in [brackets] are where the guide stepped in (1 of 3 tokens)")
    assert "BlendIn: no letter" in line


@pytest.mark.slow
def test_the_demo_answers_three_ways_on_the_embedded_pair(tmp_path):
    env = {"BROWSER": "true", "PATH": "/usr/bin:/bin"}  # --html "opens" the page with true(1): no browser here
    run = lambda *args: subprocess.run([BLENDIN, "demo", *args], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                                       env={**env, "HOME": str(Path.home())})
    shown = run("--show-alpha", "--html")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    sections = re.split(r"^-- ", out, flags=re.M)[1:]
    assert [s.split(" (")[0] for s in sections] == ["base alone", "guide alone", "BlendIn"]
    data = json.loads(run("--json").stdout)
    assert [a["method"] for a in data["answers"]] == ["base", "guide", "blendin"]
    blendin = data["answers"][2]
    assert f"the guide stepped in on {blendin['interventions']} of them:" in sections[2]
    marks = re.findall(r"\[([^\]\[]*) (\d\.\d\d)\]", sections[2])
    assert len(marks) == sum(1 for s in blendin["steps"] if s["source"] != "base" and s["token"])  # every guided token, with alpha
    assert "[" not in sections[1].split("\n", 1)[1].split("stopped")[0]  # the guide alone: nothing marked
    assert re.search(r"^What to look at: .* base alone: .*; guide alone: .*; BlendIn: .*\.$", out, flags=re.M)
    assert all(a["tokens"] <= 64 for a in data["answers"])  # short enough to read
    page = tmp_path / "blendin-demo.html"
    assert page.exists() and '<div id="question">What part of a plant' in page.read_text() and f"trace page: {page}" in out
