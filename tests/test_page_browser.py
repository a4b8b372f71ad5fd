"""The page at / in a real headless Chromium, driven through chromedriver's W3C WebDriver API (plain
HTTP, no extra package), against a real ``blendin serve`` on the embedded pair (slow): it loads,
streams an answer beside the base alone, colours the guided tokens by alpha with both models' top
tokens on hover, counts the intervention rate, and shows the server's error for a bad request."""

import os
import shutil
import subprocess
import time

import httpx2 as httpx
import pytest
from test_faults_real import start

from blendin.testing import free_port

pytestmark = pytest.mark.slow
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


def _tools():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver) and not os.environ.get("CI"):
        pytest.skip("chromium and chromedriver are not installed here (the Makefile's test set-up installs them as root)")
    assert browser and driver, "CI must have chromium and chromedriver (the Makefile's test set-up installs them)"
    return browser, driver


class Browser:
    """A headless Chromium session over WebDriver: open a page, run a script, move the pointer."""

    def __init__(self, browser, driver, profile):
        self.port = free_port()
        self.proc = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                if httpx.get(self.url + "/status", timeout=2).json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--window-size=1200,900", f"--user-data-dir={profile}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": browser, "args": args}}}}
        self.session = self.call("post", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        r = httpx.request(method, self.url + path, json=body, timeout=60)
        value = r.json()["value"]
        assert r.status_code == 200, value
        return value

    def open(self, url):
        self.call("post", f"/session/{self.session}/url", {"url": url})

    def js(self, script, *args):
        return self.call("post", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script, timeout=300):
        end = time.time() + timeout
        while time.time() < end:
            if self.js(script):
                return
            time.sleep(0.2)
        raise AssertionError(f"waited {timeout} s for: {script}")

    def hover(self, css):
        element = self.call("post", f"/session/{self.session}/element", {"using": "css selector", "value": css})
        move = {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": [{"type": "pointerMove", "duration": 0, "origin": {ELEMENT: element[ELEMENT]}, "x": 0, "y": 0}]}
        self.call("post", f"/session/{self.session}/actions", {"actions": [move]})

    def close(self):
        try:
            self.call("delete", f"/session/{self.session}")
        finally:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    browser, driver = _tools()
    server, url = start()
    b = Browser(browser, driver, tmp_path_factory.mktemp("profile"))
    try:
        yield b, url
    finally:
        b.close()
        server.terminate()
        server.wait(60)


def test_the_page_streams_a_guided_answer_beside_the_base_alone(page):
    b, url = page
    b.open(url + "/?max_tokens=24&run=1")
    b.wait("return Number(document.getElementById('main').dataset.chunks || 0) > 3")  # chunks arrive while it decodes
    assert b.js("return document.body.dataset.state") == "running"  # seen mid-stream: it streams, it is not answered whole
    b.wait("return document.body.dataset.state === 'done'")
    seen = b.js("""
        const box = (id) => { const el = document.getElementById(id);
          return {title: el.querySelector('h2').textContent, stats: el.querySelector('.stats').textContent,
                  finish: el.dataset.finish || null,
                  tokens: [...el.querySelectorAll('.tok')].map(s => ({source: s.dataset.source, alpha: s.dataset.alpha || null,
                                                                      background: s.style.background}))}; };
        return {main: box('main'), side: box('side'), error: document.getElementById('error').hidden};""")
    main, side = seen["main"], seen["side"]
    assert seen["error"] is True, "no error shown"
    assert main["title"] == "BlendIn" and side["title"] == "base alone" and main["finish"] and side["finish"]
    guided = [t for t in main["tokens"] if t["source"] == "blend"]
    assert guided, f"the default question is one the base is unsure of: some token is blended ({main})"
    assert all(t["alpha"] is not None and t["background"].startswith("rgba(40, 110, 255") for t in guided)
    assert {t["source"] for t in side["tokens"]} == {"base"}
    assert f"guide stepped in at {len(guided)} (" in main["stats"] and "guide stepped in at 0 (0.0%)" in side["stats"]


def test_hovering_a_guided_token_shows_both_models_top_tokens(page):
    b, url = page
    b.hover("#main .tok.blend")
    card = b.js("""const card = document.querySelector('#main .tok.blend .card');
                   return {display: getComputedStyle(card).display, text: card.textContent};""")
    assert card["display"] == "block"
    assert "base top-1" in card["text"] and "guide top-1" in card["text"] and "base: " in card["text"] and "guide: " in card["text"]


def test_a_bad_request_shows_the_server_s_error(page):
    b, url = page
    b.open(url + "/?gamma=7&run=1")
    b.wait("return document.body.dataset.state === 'done'", timeout=60)
    error = b.js("const e = document.getElementById('error'); return {hidden: e.hidden, text: e.textContent};")
    assert error["hidden"] is False and "gamma" in error["text"] and "less than or equal to 1" in error["text"]
