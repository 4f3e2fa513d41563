"""HTTP routes of runs (an experiment over a dataset): thin wrappers over `service.runs`.

POST /api/runs                      start one (answers 202 and its id): multipart with the
                                    dataset `file` and a `run` field {"model", "experiment",
                                    "settings", "limit"}, or JSON with the dataset's `rows` (or
                                    the `dataset` id an earlier upload answered)
GET  /api/runs                      the index (?model=&experiment=&status=)
GET  /api/runs/<id>                 status, progress with rate and ETA, manifest, skipped rows
POST /api/runs/<id>/cancel          stop it at its next cancel point
GET  /api/runs/<id>/results         aggregates (?k= for top-k frequency); with
                                    ?quantity=&layer=&column= one cell's per-prompt values
A client names no path: see `service.runs` and docs/api.md.
"""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request

from ..core.errors import RequestError
from ..service import Service
from ..service.runs import NO_PATHS
from .requests import json_body, query_int

RUN_KEYS = ("model", "experiment", "settings", "limit")
PATH_KEYS = ("data", "out", "path", "folder", "file")
ENGINE_KEYS = ("engine", "ray_address", "workers", "batch_size")
BOUND = 1_000_000  # |layer|, |column| and k a request may name


def add_run_routes(api: Blueprint, service: Service) -> None:
    """Register the run routes on the API blueprint."""
    runs = service.runs

    @api.post("/runs")
    def start_run():
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                raise RequestError(f"Send the dataset as the multipart field 'file'. {NO_PATHS}")
            body = _run_field(request.form.get("run"))
            _check_keys(body, ())
            dataset = runs.upload(upload.filename, upload.read())["dataset"]
        else:
            body = json_body()
            _check_keys(body, ("rows", "dataset"))
            if "rows" in body:
                dataset = runs.rows(body["rows"])["dataset"]
            elif "dataset" in body:
                dataset = body["dataset"]
            else:
                raise RequestError(
                    f"No dataset: send its 'rows' (or a multipart 'file'). {NO_PATHS}"
                )
        started = runs.start(
            body.get("model"), dataset, body.get("experiment"), body.get("settings"),
            body.get("limit"),
        )  # fmt: skip
        response = jsonify(started)
        response.status_code = 202
        response.headers["Location"] = f"/api/runs/{started['id']}"
        return response

    @api.get("/runs")
    def list_runs():
        filters = {k: request.args.get(k) for k in ("model", "experiment", "status")}
        return jsonify({"runs": runs.list(**filters)})

    @api.get("/runs/<run_id>")
    def run_status(run_id: str):
        return jsonify(runs.status(run_id, detail=True))

    @api.post("/runs/<run_id>/cancel")
    def cancel_run(run_id: str):
        return jsonify(runs.cancel(run_id))

    @api.get("/runs/<run_id>/results")
    def run_results(run_id: str):
        cell = [name for name in ("quantity", "layer", "column") if name in request.args]
        if cell:
            if len(cell) < 3:
                raise RequestError("A cell is named by 'quantity', 'layer' and 'column' together.")
            quantity = request.args["quantity"]
            return jsonify(runs.cell(run_id, quantity, _signed("layer"), _signed("column")))
        k = _signed("k") if "k" in request.args else None
        if k is not None and k < 1:
            raise RequestError(f"'k' must be at least 1, got {k}.")
        return jsonify(runs.results(run_id, k))


def _run_field(text: str | None) -> dict:
    """The multipart `run` field: a JSON object of the run's settings."""
    try:
        body = json.loads(text) if text else {}
    except (ValueError, RecursionError):
        raise RequestError("The 'run' field must be a JSON object.") from None
    if not isinstance(body, dict):
        raise RequestError('The \'run\' field must be a JSON object, e.g. {"experiment": "lens"}.')
    return body


def _check_keys(body: dict, dataset_keys: tuple[str, ...]) -> None:
    """Refuse a path, an engine, or anything else a run from a client does not take."""
    named = [k for k in body if k in PATH_KEYS]
    if named:
        raise RequestError(f"'{named[0]}' names a path. {NO_PATHS}")
    engine = [k for k in body if k in ENGINE_KEYS]
    if engine:
        raise RequestError(
            f"'{engine[0]}': a run started here computes on this server's loaded model (the "
            "local engine); use lmscope run for Ray."
        )
    unknown = sorted(set(body) - set(RUN_KEYS) - set(dataset_keys))
    if unknown:
        raise RequestError(
            f"A run takes {', '.join(RUN_KEYS + dataset_keys)}; not {', '.join(unknown)}."
        )


def _signed(name: str) -> int:
    value = query_int(name)
    if abs(value) > BOUND:
        raise RequestError(f"'{name}' must be between -{BOUND} and {BOUND}, got {value}.")
    return value
