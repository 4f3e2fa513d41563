"""Runs through the HTTP API: a dataset uploaded by a client runs on the server's loaded model,
its progress reaches done, its results equal `lmscope.runs` aggregates of the same data computed
by the library directly, it can be cancelled, a short analysis is served while a run computes,
and bad input (a missing column, an unreadable file, a path named by the client) is a 4xx with
one sentence that names no server path."""

from __future__ import annotations

import io
import json
import random
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_runs import induction_rows

import lmscope
from lmscope.runs import aggregates
from lmscope.service import Service
from lmscope.service.runs import DISK_ENV, UPLOAD_BYTES, Runs, folder_bytes
from lmscope.web.server import api_app

WORDS = "cat dog red blue tree house car sun moon river stone bird fish king queen book".split()
SETTINGS = {"component": "heads", "scan": "both"}
WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def service() -> Service:
    return Service()


@pytest.fixture(scope="module")
def client(service):
    return api_app(service).test_client()


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(client, content: bytes, name: str, run: dict):
    """POST /api/runs with a multipart file, as `curl -F file=@NAME -F run=...` sends it."""
    return client.post(
        "/api/runs",
        data={"file": (io.BytesIO(content), name), "run": json.dumps(run)},
        content_type="multipart/form-data",
    )


def wait_until_ended(client, run_id: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        status = client.get(f"/api/runs/{run_id}").get_json()
        if status["status"] not in ("starting", "loading", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still going after {WAIT_SECONDS} s")


def long_rows(n: int) -> list[dict]:
    rng = random.Random(1)
    return [{"prompt": " ".join(rng.choice(WORDS) for _ in range(24))} for _ in range(n)]


def test_a_run_of_an_uploaded_file_reaches_done_with_the_library_s_aggregates(
    client, service, tmp_path
):
    rows = induction_rows()
    answer = upload(client, jsonl(rows), "ioi.jsonl", {"model": "demo", "experiment": "patch",
                                                        "settings": SETTINGS})  # fmt: skip
    assert answer.status_code == 202, answer.get_json()
    started = answer.get_json()
    assert answer.headers["Location"] == f"/api/runs/{started['id']}"
    assert started["data"] == "ioi.jsonl" and started["model"] == "demo"
    status = wait_until_ended(client, started["id"])
    progress = status["progress"]
    assert status["status"] == "complete"
    assert progress["done"] == progress["total"] == len(rows) and progress["rate"] > 0
    assert progress["eta_s"] == 0
    assert status["manifest"]["cells"]["atp"] == ["layer", "head"]
    assert status["manifest"]["data"]["rows"] == len(rows)

    # The same data through the library, in a folder of this test's own.
    data = tmp_path / "ioi.jsonl"
    data.write_bytes(jsonl(rows))
    store = lmscope.run(service.model("demo"), str(data), "patch", str(tmp_path / "run"),
                        **SETTINGS)  # fmt: skip
    expected = aggregates(store).to_dict()
    results = client.get(f"/api/runs/{started['id']}/results").get_json()
    assert results["cells_by"] == store.manifest()["cells"]
    assert len(results["cells"]) == len(expected["cells"]) == 20
    for got, want in zip(results["cells"], expected["cells"], strict=True):
        assert {k: got[k] for k in ("quantity", "layer", "column", "n")} == {
            k: want[k] for k in ("quantity", "layer", "column", "n")
        }
        for key in ("mean", "std", "ci_low", "ci_high"):
            assert got[key] == pytest.approx(want[key], abs=1e-9, nan_ok=True)
    assert results["top_k"] == expected["top_k"]
    assert results["agreement"] == pytest.approx(expected["agreement"])

    # One cell's per-prompt values: the library's.
    cell = client.get(f"/api/runs/{started['id']}/results?quantity=atp&layer=1&column=2").get_json()
    want = store.cell("atp", 1, 2)
    assert cell["prompt_ids"] == want["prompt_id"].to_pylist() == list(range(1, len(rows) + 1))
    assert cell["values"] == pytest.approx(want["value"].to_pylist(), abs=1e-9)

    # The index lists it, with no path of the server's in any answer.
    listed = client.get("/api/runs?experiment=patch").get_json()["runs"]
    assert started["id"] in [r["id"] for r in listed]
    root = str(service.runs.root)
    for path in (f"/api/runs/{started['id']}", "/api/runs", f"/api/runs/{started['id']}/results"):
        assert root not in client.get(path).get_data(as_text=True)


def test_a_run_is_cancelled_and_an_analysis_is_served_while_one_computes(client, service):
    answer = client.post(
        "/api/runs",
        json={"model": "demo", "experiment": "ablation-scan", "settings": {"method": "exact"},
              "rows": long_rows(400)},
    )  # fmt: skip
    assert answer.status_code == 202, answer.get_json()
    run_id = answer.get_json()["id"]
    deadline = time.monotonic() + WAIT_SECONDS
    while client.get(f"/api/runs/{run_id}").get_json()["progress"]["done"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)

    # A short analysis while the run computes: served between the run's layers (core.slots).
    started = time.monotonic()
    analyzed = client.post("/api/analyze", json={"model": "demo", "prompt": "The cat sat on"})
    waited = time.monotonic() - started
    assert analyzed.status_code == 200
    status = client.get(f"/api/runs/{run_id}").get_json()
    assert status["status"] == "running" and status["here"], "the run ended first"
    assert waited < 2.0, waited
    progress = status["progress"]
    assert progress["rate"] > 0 and progress["eta_s"] > 0
    assert "prompts/s" in progress["line"]

    cancelled = client.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    status = wait_until_ended(client, run_id)
    assert status["status"] == "cancelled"
    assert 0 < status["progress"]["done"] < 400
    again = client.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 400 and "not computing" in again.get_json()["error"]


PAIR = {"model": "demo", "experiment": "patch"}
BAD_UPLOADS = [
    # (file name, content, run, status, words the error must hold)
    ("prompts.jsonl", jsonl([{"prompt": "a b c"}]), PAIR, 400, "prompts.jsonl: patch needs"),
    ("x.parquet", b"PAR1 not parquet", PAIR, 400, "x.parquet: cannot be read as parquet"),
    ("x.csv", b"\xff\xfe\x00bad", PAIR, 400, "x.csv: cannot be read as csv"),
    ("notes.txt", b"prompt", PAIR, 400, "notes.txt: lmscope reads .jsonl"),
    ("big.jsonl", b" " * (UPLOAD_BYTES + 1), PAIR, 400, "at most 700,000 bytes"),
    ("../../etc/x.jsonl", jsonl([{"prompt": "a"}]), {**PAIR, "out": "/tmp/x"}, 400, "names a path"),
    ("ok.jsonl", jsonl([{"prompt": "a"}]), {**PAIR, "data": "/etc/passwd"}, 400, "names a path"),
    ("ok.jsonl", jsonl([{"prompt": "a"}]), {"model": "/tmp", "experiment": "lens"}, 404, "local"),
    ("ok.jsonl", jsonl([{"prompt": "a"}]), {**PAIR, "engine": "ray"}, 400, "local engine"),
    ("ok.jsonl", jsonl([{"prompt": "a"}]), {"model": "demo", "experiment": "nope"}, 400, "one of"),
    ("ok.jsonl", jsonl([{"prompt": "a"}]), {"model": "demo", "experiment": "lens",
                                            "settings": {"scan": "atp"}}, 400, "takes no settings"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "run", "code", "words"), BAD_UPLOADS, ids=[b[4] for b in BAD_UPLOADS]
)
def test_bad_uploads_are_a_4xx_sentence_naming_no_server_path(
    client, service, name, content, run, code, words
):
    answer = upload(client, content, name, run)
    error = answer.get_json()["error"]
    assert answer.status_code == code, error
    assert words in error
    assert "\n" not in error and str(service.runs.root) not in error


BAD_REQUESTS = [
    # (method, path, JSON body, status, words)
    ("post", "/api/runs", {"model": "demo", "experiment": "lens", "data": "/etc/passwd"}, 400,
     "names a path"),
    ("post", "/api/runs", {"model": "demo", "experiment": "lens", "dataset": "../runs.sqlite"}, 400,
     "'dataset' must be the id"),
    ("post", "/api/runs", {"model": "demo", "experiment": "lens", "dataset": "0" * 16 + ".jsonl"},
     400, "No dataset"),
    ("post", "/api/runs", {"model": "demo", "experiment": "lens"}, 400, "No dataset"),
    ("post", "/api/runs", {"model": "demo", "experiment": "lens", "rows": "prompt"}, 400,
     "'rows' must be a list"),
    ("post", "/api/runs", {"model": "demo", "experiment": "lens", "rows": [{"prompt": "a"}],
                           "limit": -1}, 400, "'limit'"),
    ("post", "/api/runs", {"model": "demo", "experiment": "lens", "rows": [{"prompt": "a"}],
                           "limit": True}, 400, "'limit' must be a whole number"),
    ("get", "/api/runs/..%2F..%2Fetc", None, 404, "No"),
    ("get", "/api/runs/0123456789ab", None, 404, "No run 0123456789ab"),
    ("post", "/api/runs/0123456789ab/cancel", None, 404, "No run"),
    ("get", "/api/runs/0123456789ab/results?quantity=atp", None, 400, "together"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "words"), BAD_REQUESTS, ids=[b[4] for b in BAD_REQUESTS]
)
def test_bad_run_requests_are_a_4xx_sentence(client, method, path, body, code, words):
    answer = getattr(client, method)(path, json=body)
    assert answer.status_code == code, answer.get_data(as_text=True)
    assert words in answer.get_json()["error"]


def test_a_cell_of_an_unknown_quantity_or_bad_numbers_is_refused(client):
    answer = client.post("/api/runs", json={"model": "demo", "experiment": "lens",
                                            "rows": [{"prompt": "The cat sat on the"}]})  # fmt: skip
    run_id = answer.get_json()["id"]
    wait_until_ended(client, run_id)
    base = f"/api/runs/{run_id}/results"
    for query, words in (
        ("?quantity=atp&layer=0&column=-1", "'quantity' must be one of lens"),
        ("?quantity=lens&layer=x&column=-1", "'layer' must be an integer"),
        ("?quantity=lens&layer=1_0&column=-1", "'layer' must be an integer"),
        ("?quantity=lens&layer=%EF%BC%91&column=-1", "'layer' must be an integer"),  # fullwidth 1
        ("?quantity=lens&layer=1&column=%20-1", "'column' must be an integer"),
        ("?k=0", "'k' must be at least 1"),
    ):
        answer = client.get(base + query)
        assert answer.status_code == 400 and words in answer.get_json()["error"], query
    cell = client.get(base + "?quantity=lens&layer=1&column=-1").get_json()
    assert cell["prompt_ids"] == [1] and len(cell["values"]) == 1


def test_a_full_runs_folder_refuses_uploads_and_runs_with_507_and_keeps_what_it_holds(
    tmp_path, monkeypatch
):
    """A visitor cannot fill the server's disk: past LMSCOPE_RUNS_DISK nothing is added (and
    nothing already kept is lost); the answer names no path."""
    service = Service()
    root = tmp_path / "runs"
    service.runs = Runs(service.model, root=root, index=service.runs.index)
    client = api_app(service).test_client()
    monkeypatch.setenv(DISK_ENV, "1K")
    rows = [{"prompt": "the cat sat on the mat"}, {"prompt": "a dog ran"}]
    first = upload(client, jsonl(rows), "two.jsonl", {"model": "demo", "experiment": "profile"})
    assert first.status_code == 202, first.get_json()
    done = wait_until_ended(client, first.get_json()["id"])
    assert done["status"] == "complete"
    held = folder_bytes(root)
    assert held > 1024
    kept = sorted(p.name for p in root.rglob("*"))
    for attempt in (
        lambda: upload(
            client, jsonl(rows[:1]), "one.jsonl", {"model": "demo", "experiment": "lens"}
        ),
        lambda: client.post(
            "/api/runs", json={"rows": rows, "model": "demo", "experiment": "lens"}
        ),
    ):
        answer = attempt()
        error = answer.get_json()["error"]
        assert answer.status_code == 507, error
        assert "LMSCOPE_RUNS_DISK" in error and str(root) not in error
    assert sorted(p.name for p in root.rglob("*")) == kept and folder_bytes(root) == held
    results = client.get(f"/api/runs/{first.get_json()['id']}/results")
    assert results.status_code == 200


def parquet_bytes(table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def repeated(text: str, rows: int) -> pa.DictionaryArray:
    """One string `rows` times, as a dictionary: a few bytes in a file, `rows` x its length read."""
    return pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([text]))


SMALL_FILES_THAT_READ_HUGE = [
    # (what, the file's bytes, words of the error)
    ("two million rows", lambda: parquet_bytes(pa.table({"prompt": repeated("a b", 2_000_000)})),
     "2,000,000 rows; a dataset sent to a server has at most 50,000"),
    ("a 100 KB string 50,000 times", lambda: parquet_bytes(
        pa.table({"prompt": repeated("x" * 100_000, 50_000)})), "more than a server takes"),
    ("one 50 MB string, compressed", lambda: parquet_bytes(
        pa.table({"prompt": ["y" * 50_000_000]}), compression="zstd", use_dictionary=False),
     "more than a server takes"),
    ("a binary prompt column", lambda: parquet_bytes(
        pa.table({"prompt": pa.array([b"\xff\xfe", b"ok"], pa.binary())})), "not text"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "content", "words"),
    SMALL_FILES_THAT_READ_HUGE,
    ids=[c[0] for c in SMALL_FILES_THAT_READ_HUGE],
)
def test_a_small_parquet_file_that_reads_huge_is_refused_before_its_rows_are_made(
    client, service, what, content, words
):
    data = content()
    assert len(data) < UPLOAD_BYTES
    started = time.monotonic()
    answer = upload(client, data, "bomb.parquet", {"model": "demo", "experiment": "lens"})
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and words in error, error
    assert str(service.runs.root) not in error
    assert time.monotonic() - started < 10
    assert not list(service.runs.uploads.glob("*.tmp*"))  # nothing left behind


def test_rows_nested_too_deeply_or_with_endless_numbers_are_skipped_not_a_500(client, service):
    content = (
        b'{"prompt": "fine"}\n'
        + b'{"prompt":' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"
        + b'{"prompt": "ok", "answer": ' + b"9" * 5000 + b"}\n"
    )  # fmt: skip
    answer = upload(client, content, "deep.jsonl", {"model": "demo", "experiment": "lens"})
    assert answer.status_code == 202, answer.get_json()
    done = wait_until_ended(client, answer.get_json()["id"])
    assert done["status"] == "complete"
    skipped = {row["row"]: row["reason"] for row in done["skipped_rows"]}
    assert set(skipped) == {2, 3} and "nested too deeply" in skipped[2]
    assert not list(service.runs.uploads.glob("*.tmp*"))


def test_a_csv_saved_by_excel_with_a_byte_order_mark_is_read(client):
    content = "\ufeffprompt\nthe cat sat\n".encode()
    answer = upload(client, content, "excel.csv", {"model": "demo", "experiment": "lens"})
    assert answer.status_code == 202, answer.get_json()


def test_a_run_of_one_prompt_answers_strict_json_without_nan(client):
    answer = client.post("/api/runs", json={"rows": [{"prompt": "One lonely prompt here"}],
                                            "model": "demo", "experiment": "dla"})  # fmt: skip
    run_id = answer.get_json()["id"]
    assert wait_until_ended(client, run_id)["status"] == "complete"

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    results = json.loads(client.get(f"/api/runs/{run_id}/results").data, parse_constant=refuse)
    assert results["cells"]  # n = 1: its spread is null, not NaN


def test_a_runs_folder_behind_a_symlink_leaks_no_path(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    service = Service()
    service.runs = Runs(service.model, root=tmp_path / "link", index=service.runs.index)
    client = api_app(service).test_client()
    answer = upload(
        client, jsonl([{"prompt": "a"}]), "p.jsonl", {"model": "demo", "experiment": "patch"}
    )
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error.startswith("p.jsonl: patch needs"), error
    assert str(tmp_path) not in error


def test_a_parquet_file_with_a_large_column_it_does_not_read_is_accepted(client):
    table = pa.table({"prompt": ["the cat sat", "a dog ran"], "notes": ["z" * 3_000_000] * 2})
    data = parquet_bytes(table, compression="zstd", use_dictionary=False)
    assert len(data) < UPLOAD_BYTES
    answer = upload(client, data, "notes.parquet", {"model": "demo", "experiment": "lens"})
    assert answer.status_code == 202, answer.get_json()
