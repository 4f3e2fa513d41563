"""Issue 13, server side: one regression test per finding, through the Flask test client and against
a real waitress server (what `lmscope serve` runs) on a loopback port started here."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import GPT2Config

from lmscope.core.catalog import is_valid_hub_id
from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web import security, wsgi
from lmscope.web.server import api_app, dashboard_app

GOOD = {"model": "demo", "prompt": "The cat sat on the mat"}
PLOTLY = "/_dash-component-suites/plotly/package_data/plotly.min.js"


def status_callback(client_id: object) -> dict:
    """The body the page posts to refresh its progress line (Output status, State client)."""
    return {
        "output": "status.children",
        "outputs": {"id": "status", "property": "children"},
        "inputs": [
            {"id": "progress-poll", "property": "n_intervals", "value": 1},
            {"id": "message", "property": "children", "value": None},
        ],
        "state": [{"id": "client", "property": "data", "value": client_id}],
        "changedPropIds": ["progress-poll.n_intervals"],
    }


@pytest.fixture(scope="module")
def service() -> Service:
    return Service(ModelCache(budget=2**30))


@pytest.fixture(scope="module")
def api(service: Service):
    return api_app(service).test_client()


@pytest.fixture(scope="module")
def dashboard(service: Service):
    return dashboard_app(service, "demo").server.test_client()


def assert_ok_after(client) -> None:
    """A normal request right after still succeeds."""
    answer = client.post("/api/analyze", json=GOOD)
    assert answer.status_code == 200 and answer.json["tokens"][0]["text"] == "The"


# --- 500s that became 4xx -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [97, 256, 300, 5000])
def test_model_ids_too_long_for_the_hub_are_refused_with_404(api, length: int) -> None:
    answer = api.post("/api/analyze", json={"model": "a" * length, "prompt": "hi"})
    assert answer.status_code == 404 and "not a valid model id" in answer.json["error"]
    assert_ok_after(api)


def test_hub_ids_allow_96_characters_per_part_like_the_hub() -> None:
    assert is_valid_hub_id("o" * 96 + "/" + "n" * 96)
    assert not is_valid_hub_id("o" * 97 + "/n") and not is_valid_hub_id("o/" + "n" * 97)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"temperature": 1e-308}, "'temperature' must be above 0"),
        ({"temperature": 1e308}, "'temperature' must be above 0"),
        ({"temperature": 10**400}, "'temperature' must be a number"),
        ({"top_p": 10**400}, "'top_p' must be a number"),
        ({"seed": 2**64}, "'seed' must be between 0"),
        ({"seed": -1}, "'seed' must be between 0"),
    ],
)
def test_generation_settings_that_crashed_sampling_answer_400(api, settings, words) -> None:
    body = GOOD | {"method": "sample", "max_new_tokens": 2} | settings
    answer = api.post("/api/generate", json=body)
    assert answer.status_code == 400 and words in answer.json["error"]
    edge = {"method": "sample", "max_new_tokens": 2, "seed": 2**63 - 1, "temperature": 0.01}
    largest = api.post("/api/generate", json=GOOD | edge)
    assert largest.status_code == 200 and largest.json["seed"] == 2**63 - 1


NESTED = ("[" * 50_000 + "]" * 50_000).encode()


@pytest.mark.parametrize("path", ["/api/analyze", "/api/generate", "/_dash-update-component"])
def test_json_nested_50000_deep_answers_400(dashboard, path: str) -> None:
    answer = dashboard.post(path, data=NESTED, content_type="application/json")
    assert answer.status_code == 400 and "nested too deeply" in answer.json["error"]
    assert_ok_after(dashboard)


MALFORMED_UPDATES = {
    "not an object": [1, 2],
    "no output": {"inputs": []},
    "inputs not a list": {"output": "status.children", "outputs": {}, "inputs": "x"},
    "unknown output": {"output": "nothing.here", "outputs": {}, "inputs": [], "state": []},
    "wrong number of inputs": status_callback("abc") | {"inputs": []},
    "store of the wrong type": {
        "output": "..model.data...analysis.data...message.children...url.search...model-picker"
        ".value...model-picker.options...prompt.value...model-card.children..",
        "outputs": [],
        "inputs": [{"id": "url", "property": "search", "value": 5}],
        "state": [{"id": "model", "property": "data", "value": "x"}],
        "changedPropIds": ["url.search"],
    },
    "client id of 900 KB": status_callback("a" * 900_000),
    "client id of 65 characters": status_callback("a" * 65),
    "client id that is not text": status_callback({"a": 1}),
}


@pytest.mark.parametrize("case", MALFORMED_UPDATES)
def test_malformed_dashboard_callbacks_answer_400_json(dashboard, case: str) -> None:
    answer = dashboard.post("/_dash-update-component", json=MALFORMED_UPDATES[case])
    assert answer.status_code == 400, answer.data[:200]
    assert "malformed" in answer.json["error"] and "Traceback" not in answer.text
    good = dashboard.post("/_dash-update-component", json=status_callback("a" * 64))
    assert good.status_code == 200 and good.json["response"]["status"]["children"] == ""


def test_unknown_api_routes_answer_json_404_not_the_page(dashboard) -> None:
    answer = dashboard.get("/api/no-such-route")
    assert answer.status_code == 404 and answer.is_json and "No API route" in answer.json["error"]
    wrong_method = dashboard.get("/api/analyze")
    assert wrong_method.status_code == 405 and "answers POST" in wrong_method.json["error"]
    assert dashboard.get("/").status_code == 200  # the page itself is still the page


def _config_only(hub: Path, repo_id: str, config: dict) -> None:
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("2" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("2" * 40)


def test_a_model_too_large_for_memory_answers_507_as_documented(api, hub_cache: Path) -> None:
    _config_only(hub_cache, "test/huge-507", GPT2Config(n_layer=96, n_embd=12288).to_dict())
    answer = api.post("/api/analyze", json={"model": "test/huge-507", "prompt": "hi"})
    assert answer.status_code == 507 and "memory" in answer.json["error"]
    docs = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    assert "| 507 |" in docs
    assert_ok_after(api)


# --- Host and Origin (DNS rebinding, CSRF) --------------------------------------------------------


def test_allowed_hosts_for_a_loopback_bind_are_its_port_on_every_loopback_name() -> None:
    hosts = security.allowed_hosts("127.0.0.1", 8050, ["lab.example"])
    for ok in ("127.0.0.1:8050", "localhost:8050", "[::1]:8050", "LOCALHOST:8050", "lab.example"):
        assert security.host_allowed(ok, hosts), ok
    assert security.host_allowed("lab.example:9000", hosts)  # a bare name: any port
    for bad in ("localhost:8051", "localhost", "evil.example:8050", "", "127.0.0.1.evil:8050"):
        assert not security.host_allowed(bad, hosts), bad
    lan = security.allowed_hosts("192.168.1.5", 8050)
    assert security.host_allowed("192.168.1.5:8050", lan)
    assert not security.host_allowed("localhost:8050", lan)  # not bound to loopback


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8050", "localhost:9999", ""])
def test_requests_for_another_host_are_refused_with_421(service: Service, host: str) -> None:
    hosts = security.allowed_hosts("127.0.0.1", 8050, ["lab.example"])
    client = api_app(service, allowed_hosts=hosts).test_client()
    for path in ("/api/models", "/api/no-such-route"):
        answer = client.get(path, headers={"Host": host})
        assert answer.status_code == 421 and "--allowed-host" in answer.json["error"]
    for good in ("127.0.0.1:8050", "localhost:8050", "lab.example"):
        assert client.get("/api/models", headers={"Host": good}).status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost.evil:80"])
@pytest.mark.parametrize("path", ["/api/analyze", "/_dash-update-component"])
def test_state_changing_requests_from_a_foreign_origin_are_refused_with_403(
    dashboard, origin: str, path: str
) -> None:
    body = GOOD if path.startswith("/api/") else status_callback("abc")
    answer = dashboard.post(path, json=body, headers={"Origin": origin})
    assert answer.status_code == 403 and "another site" in answer.json["error"]
    same = dashboard.post(path, json=body, headers={"Origin": "http://localhost"})
    assert same.status_code == 200
    assert dashboard.post(path, json=body).status_code == 200  # no Origin: curl, the CLI


def test_every_response_carries_the_security_headers(dashboard) -> None:
    answers = [
        dashboard.get("/"),
        dashboard.get("/api/models"),
        dashboard.get("/api/nothing"),
        dashboard.get("/", headers={"Host": "evil.example"}),
        dashboard.post("/api/analyze", json={"model": "demo", "prompt": ""}),
    ]
    for answer in answers:
        csp = dict(
            d.strip().split(" ", 1) for d in answer.headers["Content-Security-Policy"].split(";")
        )
        assert csp["frame-ancestors"] == "'self'" and csp["default-src"] == "'self'"
        assert "unsafe" not in csp["script-src"]  # no inline script, no eval: only hashed ones
        assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"


# --- the real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(service: Service) -> Iterator[tuple[int, object]]:
    """The dashboard on waitress, on a free loopback port, with the Host set `serve` computes; idle
    sockets are closed after 2 s so that the test can see it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMSCOPE_CHANNEL_TIMEOUT", "2")
        patch.setenv("LMSCOPE_THREADS", "3")
        holder = {}
        httpd = wsgi.make_server(lambda env, start: holder["app"](env, start), "127.0.0.1", 0)
    port = httpd.effective_port
    holder["app"] = dashboard_app(service, "demo", security.allowed_hosts("127.0.0.1", port)).server
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield port, httpd
    httpd.close()
    thread.join(timeout=10)


def request(port: int, method: str, path: str, headers=None, body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer, data


def test_live_server_sends_no_banner_and_every_security_header(live) -> None:
    port, _ = live
    for path in ("/", "/api/models", PLOTLY):
        answer, _ = request(port, "GET", path)
        assert answer.status == 200
        assert answer.getheader("Server") is None and answer.getheader("Via") is None
        assert "frame-ancestors 'self'" in answer.getheader("Content-Security-Policy")
        assert answer.getheader("X-Frame-Options") == "SAMEORIGIN"
        assert answer.getheader("X-Content-Type-Options") == "nosniff"


def test_live_server_refuses_a_rebinding_host_and_a_foreign_origin(live) -> None:
    port, _ = live
    answer, body = request(port, "GET", "/", {"Host": f"attacker.example:{port}"})
    assert answer.status == 421 and b"DNS rebinding" in body
    answer, _ = request(port, "GET", "/", {"Host": f"localhost:{port}"})
    assert answer.status == 200
    post = json.dumps(GOOD).encode()
    headers = {"Content-Type": "application/json", "Origin": "http://attacker.example"}
    answer, _ = request(port, "POST", "/api/analyze", headers, post)
    assert answer.status == 403
    headers["Origin"] = f"http://127.0.0.1:{port}"
    answer, body = request(port, "POST", "/api/analyze", headers, post)
    assert answer.status == 200 and json.loads(body)["tokens"][0]["text"] == "The"


def test_live_server_gzips_plotly_and_the_api(live) -> None:
    port, _ = live
    plain, plain_body = request(port, "GET", PLOTLY, {"Accept-Encoding": "identity"})
    assert plain.getheader("Content-Encoding") is None
    for _ in range(2):  # the second answer comes from the compressed-asset cache: the same bytes
        packed, packed_body = request(port, "GET", PLOTLY, {"Accept-Encoding": "gzip"})
        assert packed.getheader("Content-Encoding") == "gzip"
        assert gzip.decompress(packed_body) == plain_body
        assert len(packed_body) < len(plain_body) / 2
    answer, body = request(port, "GET", "/api/models", {"Accept-Encoding": "gzip"})
    assert answer.status == 200 and "models" in json.loads(gzip.decompress(body))


def test_live_server_closes_idle_connections_and_bounds_its_threads(live) -> None:
    port, httpd = live
    assert httpd.adj.threads == 3 and len(httpd.task_dispatcher.threads) == 3
    with socket.create_connection(("127.0.0.1", port), timeout=20) as idle:
        assert idle.recv(1) == b""  # closed by the server (channel_timeout), not by our timeout
    answer, _ = request(port, "GET", "/api/models")
    assert answer.status == 200


def test_a_visitor_names_models_never_files_and_gets_one_answer_for_every_refused_name(
    api, tmp_path, monkeypatch, tiny_gpt2_model, gpt2_tokenizer
) -> None:
    """Issue 22: a file or folder in the server's working directory, named like a hub id, is not
    loaded, and its answer is the same as for a name that exists nowhere (no file oracle)."""
    monkeypatch.chdir(tmp_path)
    tiny_gpt2_model.save_pretrained(tmp_path / "localmodel")
    gpt2_tokenizer.save_pretrained(tmp_path / "localmodel")
    (tmp_path / "opfiles").mkdir()
    (tmp_path / "opfiles" / "smol.q4").write_bytes(b"GGUF" + b"\0" * 64)
    answers = {}
    for name in ("localmodel", "opfiles/smol.q4", "nothere", "nobody/nothing"):
        answer = api.post("/api/analyze", json={"model": name, "prompt": "Hi"})
        answers[name] = (answer.status_code, answer.json["error"].replace(name, "NAME"))
    assert len(set(answers.values())) == 1, answers
    assert next(iter(answers.values()))[0] == 404
