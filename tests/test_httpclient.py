"""The one HTTP client (``httpclient.JSONClient``) that remote models and the judge share: retries
with backoff on 429, 5xx and refused connections, never on another 4xx, over kept-alive connections."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blendin.httpclient import JSONClient, Unreachable
from blendin.testing import free_port


class Scripted(ThreadingHTTPServer):
    """Answers POSTs with the statuses in ``script`` in turn (the last one for ever), recording bodies."""

    def __init__(self, script):
        self.script, self.bodies, self.connections = list(script), [], set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server

            def do_POST(self):
                server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                server.connections.add(self.client_address[1])
                status = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                body = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def test_retries_transient_answers_then_returns_the_answer():
    server = Scripted([503, 429, 200])
    status, body, tries = JSONClient(server.url, retries=3, backoff=0.01).post("/completions", {"n": 1})
    assert (status, tries) == (200, 3) and json.loads(body) == {"status": 200}
    assert server.bodies == [{"n": 1}] * 3 and len(server.connections) == 1  # one kept-alive connection
    server.shutdown()


def test_a_client_error_is_returned_at_once_and_the_last_retry_returns_what_it_got():
    server = Scripted([400])
    assert JSONClient(server.url, retries=3, backoff=0.01).post("/x", {})[::2] == (400, 1)
    server = Scripted([500])
    assert JSONClient(server.url, retries=2, backoff=0.01).post("/x", {})[::2] == (500, 3)
    assert JSONClient(server.url, retries=2, backoff=0.01).post("/x", {}, final=lambda s, b: True)[::2] == (500, 1)
    server.shutdown()


def test_no_server_raises_unreachable_after_every_try():
    with pytest.raises(Unreachable) as info:
        JSONClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01).post("/x", {})
    assert info.value.tries == 3 and "ConnectError" in str(info.value)
