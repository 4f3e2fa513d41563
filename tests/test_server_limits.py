"""The server keeps answering everyone, and answers every refusal as JSON with its security headers:
idle and trickling connections from one client, oversized bodies, malformed requests and unknown
paths (issue 22's findings), against a real waitress server on a loopback port started here."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web import security, wsgi
from lmscope.web.server import dashboard_app


@pytest.fixture(scope="module")
def app():
    return dashboard_app(Service(ModelCache(budget=2**30)), "demo")


@pytest.fixture(scope="module")
def live(app) -> Iterator[int]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMSCOPE_THREADS", "3")
        httpd = wsgi.make_server(app.server, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield httpd.effective_port
    httpd.close()


def ask(port: int, method: str = "GET", path: str = "/api/models", body: bytes | None = None,
        headers: dict | None = None, timeout: float = 30) -> tuple[http.client.HTTPResponse, bytes]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer, data


def assert_json_refusal(answer, data: bytes, status: int) -> str:
    """A refusal as the API writes them: the status, a JSON `error`, every security header."""
    assert answer.status == status, (answer.status, data[:200])
    assert answer.getheader("Content-Type").startswith("application/json")
    for name in security.HEADERS:
        assert answer.getheader(name), name
    assert answer.getheader("Content-Security-Policy")
    return json.loads(data)["error"]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def test_idle_connections_from_one_client_do_not_stop_the_server_answering(live) -> None:
    idle = [socket.create_connection(("127.0.0.1", live)) for _ in range(wsgi.CONNECTION_LIMIT)]
    try:
        started = time.monotonic()
        answer, _ = ask(live, timeout=15)
        assert answer.status == 200
        assert time.monotonic() - started < 10
        # the client's oldest idle connections were given up for the new ones
        assert closed_by_server(idle[0], within=5)
    finally:
        for sock in idle:
            sock.close()


def test_a_client_trickling_header_lines_is_cut_off_and_others_are_served(live, monkeypatch):
    monkeypatch.setattr(wsgi, "REQUEST_SECONDS", 2.0)
    tricklers = [socket.create_connection(("127.0.0.1", live)) for _ in range(wsgi.PER_CLIENT + 8)]
    for sock in tricklers:
        sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        answer, _ = ask(live, timeout=15)  # while every trickler is active
        assert answer.status == 200
        deadline = time.monotonic() + 8
        cut = 0
        for sock in tricklers:
            while time.monotonic() < deadline:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")  # one more line, as the attacker did
                except OSError:
                    cut += 1
                    break
                if closed_by_server(sock, within=0.3):
                    cut += 1
                    break
        assert cut == len(tricklers)
    finally:
        for sock in tricklers:
            sock.close()


@pytest.mark.parametrize("size", [1_500_000, 3_000_000, 64_000_000])
def test_a_body_over_the_limit_answers_a_json_413_even_when_sent_whole(live, size) -> None:
    body = b"{" + b" " * (size - 2) + b"}"
    headers = {"Content-Type": "application/json"}
    answer, data = ask(live, "POST", "/api/analyze", body, headers, timeout=60)
    assert assert_json_refusal(answer, data, 413) == wsgi.BODY_TOO_LARGE
    assert ask(live)[0].status == 200


def test_malformed_requests_answer_json_with_the_security_headers(live) -> None:
    with socket.create_connection(("127.0.0.1", live), timeout=10) as sock:
        sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n")
        raw = sock.makefile("rb")
        answer = http.client.HTTPResponse(sock)
        answer.fp = raw
        answer.begin()
        assert_json_refusal(answer, answer.read(), 400)
    huge = {"X-Big": "a" * (wsgi.MAX_HEADER_BYTES + 10)}
    answer, data = ask(live, headers=huge)
    assert_json_refusal(answer, data, 431)


def test_unknown_paths_answer_404_without_a_traceback(app, caplog) -> None:
    client = app.server.test_client()
    with caplog.at_level(logging.INFO):
        for path in (
            "/_dash-component-suites/nothing/here.js",
            "/_dash-component-suites/dash/../../etc/passwd",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
    assert "Traceback" not in caplog.text
    for path in ("/api", "/api/", "/api//models", "/api/models/extra"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "error" in answer.json, path
