"""Fuzz (hypothesis) of the JSON API routes and the dashboard's callback endpoint with arbitrary JSON:
never a 5xx, never a traceback in the body, and a normal request right after succeeds. Bounded: the
tiny demo model, short prompts, ~150 examples per door."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import api_app, dashboard_app

GOOD = {"model": "demo", "prompt": "The cat sat on the mat"}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
small_ints = st.integers(min_value=-3, max_value=60)


def mostly(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Plausible values three times in four, so that requests get past validation and run."""
    return st.one_of(plausible, plausible, plausible, json_values)


FIELDS = {  # what the experiment routes read
    "method": mostly(st.sampled_from(["greedy", "sample", "beam"])),
    "max_new_tokens": mostly(small_ints),
    "beams": mostly(st.integers(min_value=0, max_value=6)),
    "temperature": mostly(st.floats(min_value=-2, max_value=200) | st.just(1e-308)),
    "top_k": mostly(small_ints),
    "top_p": mostly(st.floats(min_value=-1, max_value=2)),
    "seed": mostly(st.integers(min_value=-1, max_value=2**64)),
    "heads": mostly(st.lists(st.lists(small_ints, min_size=2, max_size=2), max_size=3)),
    "mode": mostly(st.sampled_from(["zero", "mean"])),
    "target": mostly(st.integers(min_value=-2, max_value=60_000) | st.text(max_size=6)),
    "new_tokens": mostly(small_ints),
    "wrong": mostly(st.integers(min_value=-2, max_value=60_000) | st.text(max_size=6)),
    "layer": mostly(st.integers(min_value=-2, max_value=4)),
    "coefficient": mostly(st.floats(min_value=-2e4, max_value=2e4)),
    "from_prompts": mostly(st.lists(st.text(max_size=12), max_size=3)),
    "token": mostly(st.text(max_size=6)),
    "position": mostly(small_ints),
    "steps": mostly(st.integers(min_value=-2, max_value=24)),
    "models": mostly(st.lists(st.sampled_from(["demo", "gpt2", "x" * 300]), max_size=3)),
}
prompts = st.text(min_size=1, max_size=30).filter(str.strip)
on_demo = st.fixed_dictionaries({"model": st.just("demo"), "prompt": prompts}, optional=FIELDS)
odd_ids = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["", "a" * 300, "../etc", "/tmp", "o/" + "n" * 97]) | json_values,
        "prompt": mostly(prompts),
    },
    optional=FIELDS,
)
bodies = st.one_of(on_demo, on_demo, odd_ids, json_values)
POST_ROUTES = [
    "/api/analyze",
    "/api/generate",
    "/api/ablate",
    "/api/ablation-scan",
    "/api/logit-attribution",
    "/api/token-attribution",
    "/api/steer",
    "/api/compare",
    "/api/runs",
]


def assert_clean(answer) -> None:
    """A 2xx/3xx/4xx (or 507, a documented refusal that is not a crash), and no traceback."""
    assert answer.status_code < 500 or answer.status_code == 507, answer.data[:300]
    assert b"Traceback" not in answer.data and b'File "' not in answer.data


@pytest.fixture(scope="module")
def service() -> Service:
    return Service(ModelCache(budget=2**30))


@pytest.fixture(scope="module")
def api(service: Service):
    return api_app(service).test_client()


@pytest.fixture(scope="module")
def analysis_id(api) -> str:
    return api.post("/api/analyze", json=GOOD).json["analysis_id"]


@FUZZ
@given(route=st.sampled_from(POST_ROUTES), body=bodies)
def test_api_routes_never_crash_on_arbitrary_json(api, route: str, body) -> None:
    assert_clean(api.post(route, data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(
    path=st.sampled_from(["attention", "embeddings", "flow", "nothing"]),
    key=st.text(max_size=80),
    query=st.dictionaries(st.sampled_from(["layer", "head", "position", "x"]), st.text(max_size=8)),
    real=st.booleans(),
)
def test_api_get_routes_never_crash(api, analysis_id, path, key, query, real) -> None:
    key = (
        analysis_id if real else quote(key, safe="") or "k"
    )  # a path segment, as a browser sends it
    assert_clean(api.get(f"/api/analysis/{key}/{path}", query_string=query))


@FUZZ
@given(
    key=st.text(max_size=40),
    tail=st.sampled_from(["", "/results", "/cancel"]),
    query=st.dictionaries(st.sampled_from(["quantity", "layer", "column", "k"]),
                          st.text(max_size=8)),
)  # fmt: skip
def test_api_run_routes_never_crash(api, key, tail, query) -> None:
    path = f"/api/runs/{quote(key, safe='') or 'k'}{tail}"
    send = api.post if tail == "/cancel" else api.get
    assert_clean(send(path, query_string=query))


def test_api_answers_normally_after_the_fuzz(api) -> None:
    answer = api.post("/api/generate", json=GOOD | {"method": "sample", "seed": 3})
    assert answer.status_code == 200 and answer.json["seed"] == 3


# --- the dashboard's callback endpoint ------------------------------------------------------------


@pytest.fixture(scope="module")
def dash_app(service: Service):
    return dashboard_app(service, "demo")


def _parts(key: str) -> list[tuple[object, str]]:
    """A callback_map key's outputs as (id, property); JSON ids parsed, `@hash` suffixes dropped."""
    names = key.strip(".").split("...") if key.startswith("..") else [key]
    parts = []
    for name in names:
        ident, prop = name.rsplit(".", 1)
        parts.append((json.loads(ident) if ident.startswith("{") else ident, prop.split("@")[0]))
    return parts


def _wildcard(ident: object) -> bool:
    return isinstance(ident, dict) and any(isinstance(v, list) for v in ident.values())


def _callback_body(key: str, spec: dict, values: list, client: object) -> dict:
    """A body shaped like the page's own for callback `key`, with the given input/state values."""
    outputs = [[] if _wildcard(i) else {"id": i, "property": p} for i, p in _parts(key)]
    items, given_values = [], iter(values)
    for dep in (*spec["inputs"], *spec["state"]):
        ident = json.loads(dep["id"]) if dep["id"].startswith("{") else dep["id"]
        if _wildcard(ident):
            items.append([])
        elif ident == "client":
            items.append({"id": ident, "property": dep["property"], "value": client})
        else:
            items.append({"id": ident, "property": dep["property"], "value": next(given_values)})
    n_inputs = len(spec["inputs"])
    first = items[0] if items and isinstance(items[0], dict) else None
    return {
        "output": key,
        "outputs": outputs if key.startswith("..") else outputs[0],
        "inputs": items[:n_inputs],
        "state": items[n_inputs:],
        "changedPropIds": [f"{first['id']}.{first['property']}"] if first else [],
    }


@FUZZ
@given(data=st.data())
def test_dashboard_callbacks_never_crash_on_arbitrary_state(dash_app, analysis_id, data) -> None:
    client = dash_app.server.test_client()
    key = data.draw(st.sampled_from(sorted(dash_app.callback_map)))
    spec = dash_app.callback_map[key]
    stored = {"id": analysis_id, "model": "demo", "prompt": GOOD["prompt"]}
    value = json_values | st.just(stored) | st.sampled_from([1, "demo", "0.1,1.2", None])
    count = len(spec["inputs"]) + len(spec["state"])
    values = data.draw(st.lists(value, min_size=count, max_size=count))
    client_id = data.draw(st.sampled_from(["fuzz-client"]) | json_values)
    body = data.draw(st.just(_callback_body(key, spec, values, client_id)) | json_values)
    assert_clean(client.post("/_dash-update-component", json=body))


def test_dashboard_answers_normally_after_the_fuzz(dash_app) -> None:
    client = dash_app.server.test_client()
    status = {
        "output": "status.children",
        "outputs": {"id": "status", "property": "children"},
        "inputs": [
            {"id": "progress-poll", "property": "n_intervals", "value": 1},
            {"id": "message", "property": "children", "value": None},
        ],
        "state": [{"id": "client", "property": "data", "value": "after-fuzz"}],
        "changedPropIds": ["progress-poll.n_intervals"],
    }
    answer = client.post("/_dash-update-component", json=status)
    assert answer.status_code == 200 and answer.json["response"]["status"]["children"] == ""
    assert client.get("/").status_code == 200
    assert client.post("/api/analyze", json=GOOD).status_code == 200
