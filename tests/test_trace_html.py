"""The HTML trace: structure on a scripted result, and a real render in headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import blendin.pair
from blendin.backends.fake import ScriptedModel
from blendin.cli import main
from blendin.config import BlendConfig
from blendin.decoding import generate
from blendin.diagnostics.html import trace_html
from blendin.eval.runner import grid, run_eval
from blendin.eval.tasks import get_task, load_items
from blendin.pair import Pair

from scripted import base_tokenizer, config, scripted_pair

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


def test_the_page_shows_the_question_and_why_the_answer_ended():
    pair = scripted_pair(BASE, {" maybe": {"Ġno": 0.6, "Ġyes": 0.4}})
    page = trace_html(generate(pair, "Q", config()), prompt="Is 3 < 4?\nSay <b>yes</b>.")
    question = re.search(r'<div id="question">(.*?)</div>', page, re.S).group(1)
    assert question == "Is 3 &lt; 4?\nSay &lt;b&gt;yes&lt;/b&gt;."  # as given, escaped
    assert page.index('id="question"') < page.index('id="answer"')
    assert re.search(r'<div id="stop">stopped: <b>eos</b> \(the model wrote its end-of-sequence token\)</div>', page)
    cut = trace_html(generate(pair, "Q", config(max_new_tokens=1)), prompt="Q")
    assert re.search(r'stopped: <b>length</b> \(the token limit \(max_new_tokens\) was reached: the answer may be cut off\)', cut)
    stopped = trace_html(generate(pair, "Q", config(stop=(" no",))), prompt="Q")
    assert "stopped: <b>stop</b>" in stopped
    assert 'id="question"' not in trace_html(generate(pair, "Q", config()))  # no prompt given: no question shown


def test_generate_and_eval_pages_carry_the_question(tmp_path, monkeypatch, capsys):
    def script(text):  # after the prompt's 'Answer:' cue: ' yes', then the end
        return {"": {"▁yes": 1.0}}.get(text.split("Answer:", 1)[1].lstrip("\n"), {"<eos>": 1.0})

    pair = Pair(base=ScriptedModel(base_tokenizer(), script), guide=None)
    monkeypatch.setattr(blendin.pair, "load_pair", lambda config, methods=("base", "guide"): pair)
    page = tmp_path / "trace.html"
    assert main(["generate", "--method", "base", "--trace-html", str(page), "Is it blue?"]) == 0
    assert '<div id="question">Is it blue?</div>' in page.read_text() and "stopped: <b>eos</b>" in page.read_text()
    data = tmp_path / "gsm8k.jsonl"
    data.write_text(json.dumps({"idx": 0, "question": "How many legs do 3 cats have?", "final": "12"}) + "\n")
    task = get_task("gsm8k")
    run_eval(pair, task, load_items(task, str(data)), grid(BlendConfig(max_new_tokens=5, trace_top=3), ["base"], [0.4], [None]),
             tmp_path / "run", progress=None, traces=str(tmp_path / "traces"))
    pages = list((tmp_path / "traces").rglob("*.html"))
    assert len(pages) == 1 and '<div id="question">How many legs do 3 cats have?</div>' in pages[0].read_text()


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
