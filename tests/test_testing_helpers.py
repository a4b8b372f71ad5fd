"""``blendin.testing.wait_until_up``: polls a starting server until it answers with success, and says
which process failed to come up (exited, or too slow)."""

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blendin.testing import free_port, wait_until_up


class Proc:
    """A subprocess.Popen stand-in: running until ``code`` is set; ``kill`` is recorded."""

    def __init__(self, code=None):
        self.returncode, self.killed = code, False

    def poll(self):
        return self.returncode

    def kill(self):
        self.killed = True


@contextmanager
def answering(statuses: list[int]):
    """A server whose GETs answer each of ``statuses`` in turn, then 200; yields the list of answers given."""
    given = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            status = statuses[len(given)] if len(given) < len(statuses) else 200
            given.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health", given
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_it_polls_past_answers_that_are_not_yet_success():
    with answering([503, 404]) as (url, given):
        wait_until_up(url, Proc(), 10, "the server")
    assert given == [503, 404, 200]


def test_it_names_a_process_that_exited_before_answering():
    with pytest.raises(RuntimeError, match=r"blendin serve exited \(code 3\) before answering http://127.0.0.1:\d+/health"):
        wait_until_up(f"http://127.0.0.1:{free_port()}/health", Proc(code=3), 10, "blendin serve")


def test_it_kills_a_process_that_never_answers():
    proc = Proc()
    with pytest.raises(RuntimeError, match="the server did not answer .* within 1 s"):
        wait_until_up(f"http://127.0.0.1:{free_port()}/health", proc, 1, "the server")
    assert proc.killed
