"""The HTML trace: structure on a scripted result, and a real render in headless Chromium."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from blendin.decoding import generate
from blendin.diagnostics.html import trace_html

from scripted import config, scripted_pair

BASE = {"": {"▁maybe": 0.45, "▁yes": 0.3, "▁no": 0.25}, " maybe": {"▁yes": 0.35, "▁no": 0.3, "▁cat": 0.35},
        " maybe no": {"<eos>": 0.9, "▁yes": 0.1}}


def test_every_step_is_a_span_with_a_card():
    r = generate(scripted_pair(BASE, {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}}), "Q", config(trace_top=3))
    page = trace_html(r)
    spans = re.findall(r'<span class="tok ([a-z ]+)" data-i="(\d+)"', page)
    assert [int(i) for _, i in spans] == list(range(r.tokens))
    assert [c.split()[0] for c, _ in spans] == [s.source for s in r.steps]
    assert "rgba(40,110,255," in page and "guide top-1" in page and "<script" not in page
    assert r.steps[1].alternatives["guide"][0] == [" no", 0.6]  # the competing tokens reach the card
    assert "&#x27; no&#x27;" in page or "' no'" in page


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_trace_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None and not os.environ.get("CI"):
        pytest.skip("chromium is not installed here (CI installs it: apt-get install chromium)")
    assert browser, "CI must have chromium (the Makefile's test set-up installs it)"
    page = tmp_path / "trace.html"
    cmd = [sys.executable, "-m", "blendin", "generate", "--max-new-tokens", "12", "--json", "--trace-html", str(page),
           "Tom has 3 apples and buys 5 more. How many apples does he have?"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    import json

    steps = json.loads(p.stdout)["steps"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = re.findall(r'<span class="tok [a-z ]+" data-i="(\d+)"', dom.stdout)
    assert [int(i) for i in rendered] == list(range(len(steps)))  # every token reached the DOM
    shot = tmp_path / "trace.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=900,500", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 5000
