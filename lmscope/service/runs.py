"""Runs on the server: datasets a client uploads, runs started on a loaded model, their progress,
cancel, the index, and results, for the API and the dashboard alike.

A client never names a path. A dataset arrives as a file's bytes (at most `UPLOAD_BYTES`), is read
here (`runs.read_dataset`) and kept in the server's own folder (`default_root()`: beside the runs
index, `$XDG_DATA_HOME/lmscope/runs/`), named by its content; the server picks each run's folder
(one per model, dataset, experiment and settings, so starting a run again resumes it). What a
client gets back names files by their name alone, and a model given by path as `local:NAME`.

A run computes in a thread of this process on the model already loaded; its passes take turns
with every analysis and experiment (`core.slots`), so a run never starves another user's request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.devices import size_setting
from ..core.errors import LmscopeError, RequestError
from ..core.loading import gib
from ..core.model import LoadedModel
from ..runs import COLUMNS, DataError, Run, RunError, RunIndex, RunSpec, RunStore, aggregates, start
from ..runs.data import Bounds, format_of_name, read_dataset
from ..runs.measures import POSITIONS
from ..runs.runner import Progress, check_columns

UPLOAD_BYTES = 700_000  # a dataset a client sends (under the 1 MB request limit once encoded)
# what a client's dataset may hold once read (a small Parquet file can decode to gigabytes)
CLIENT_BOUNDS = Bounds(rows=50_000, text_bytes=8 * UPLOAD_BYTES)
DISK_ENV = "LMSCOPE_RUNS_DISK"  # what the runs folder may hold, uploads included
DEFAULT_DISK = "2G"
MAX_RUNNING = 2  # runs computing at once on this server
NAME_LENGTH = 100  # characters of a client's file name kept
RUN_ID = re.compile(r"^[0-9a-f]{12}$")
DATASET_ID = re.compile(r"^[0-9a-f]{16}\.(jsonl|csv|parquet)$")
SUFFIXES = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
STARTING_SECONDS = 30.0  # at most this long for a started run to write its manifest
SKIPPED_SHOWN = 100  # skipped rows a run's status lists
RESULTS_KEPT = 8  # runs whose aggregates are kept (the page asks again for each click)
NO_PATHS = (
    "The server reads no path a client names: upload the dataset (a multipart 'file', or its "
    "rows as 'rows'); the server picks where the run is stored."
)


class RunsBusy(LmscopeError):
    """As many runs as the server computes at once are running."""

    status = 429


class NoSuchRun(LmscopeError):
    status = 404


class RunsFolderFull(LmscopeError):
    """The server's runs folder holds what `LMSCOPE_RUNS_DISK` allows: no upload or run is added."""

    status = 507


def disk_limit() -> int:
    """Bytes the runs folder may hold (`LMSCOPE_RUNS_DISK`, default 2G)."""
    return size_setting(DISK_ENV, DEFAULT_DISK)


def folder_bytes(root: Path) -> int:
    """The bytes of the files under `root` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def default_root() -> Path:
    """`$LMSCOPE_RUNS_DIR`, else `$XDG_DATA_HOME/lmscope/runs`, else `~/.local/share/...`."""
    explicit = os.environ.get("LMSCOPE_RUNS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lmscope" / "runs"


def public_model(model: str) -> str:
    """A model id as a client sees it: a path becomes `local:NAME` (as served folders are named)."""
    return f"local:{Path(model).name}" if model.startswith(("/", "~", ".")) else model


class Runs:
    """The server's runs: `upload` a dataset, `start` a run of it on a loaded model, watch it
    (`status`), `cancel` it, `list` the index, read `results` and one `cell`'s values."""

    def __init__(
        self,
        model: Callable[[object], LoadedModel],
        root: Path | None = None,
        index: RunIndex | None = None,
    ) -> None:
        self.model = model  # the service's: a model id (None: the served one) -> loaded model
        # resolved once: what a reader reports (a resolved path) is then what answers hide
        self.root = (root or default_root()).expanduser().resolve()
        self.index = index or RunIndex()
        self.uploads = self.root / "uploads"
        self._running: dict[str, Run] = {}  # run id -> the run computing in this process
        self._results: dict[tuple, dict] = {}  # a few runs' aggregates, as they last were
        self._lock = threading.Lock()

    # -- datasets

    def upload(self, name: object, content: bytes) -> dict:
        """Keep a client's dataset file (its bytes, its file name for the suffix): read it here,
        then store it under its content's hash. Its description, with the `dataset` id that
        `start` takes; a `DataError` (naming the file by its name) when it cannot be read."""
        if not isinstance(name, str) or not name.strip():
            raise RequestError("The dataset needs a file name (ending .jsonl, .csv or .parquet).")
        shown = Path(name.replace("\\", "/")).name[:NAME_LENGTH] or "dataset"
        self._check_room()
        if len(content) > UPLOAD_BYTES:
            raise RequestError(
                f"{shown} is {len(content):,} bytes; this server takes datasets of at most "
                f"{UPLOAD_BYTES:,} bytes from a client (run larger ones with lmscope run)."
            )
        try:
            kind = format_of_name(Path(shown))  # by its name alone: nothing on disk is looked at
        except DataError:
            raise DataError(
                f"{shown}: lmscope reads .jsonl, .csv or .parquet files from a client."
            ) from None
        if kind not in SUFFIXES:
            raise DataError(f"{shown}: upload a .jsonl, .csv or .parquet file.")
        dataset = hashlib.sha256(content).hexdigest()[:16] + SUFFIXES[kind]
        path = self.uploads / dataset
        self.uploads.mkdir(parents=True, exist_ok=True)
        partial = self.uploads / f"{secrets.token_hex(8)}.tmp{path.suffix}"
        partial.write_bytes(content)
        try:
            read = read_dataset(partial, CLIENT_BOUNDS)
            os.replace(partial, path)
        except DataError as error:
            raise DataError(str(error).replace(str(partial), shown)) from None
        finally:
            partial.unlink(missing_ok=True)  # whatever stopped the read: nothing is left behind
        path.with_suffix(".name").write_text(shown, encoding="utf-8")
        return {
            "dataset": dataset,
            "name": shown,
            "format": read.format,
            "rows": len(read.records),
            "columns": list(read.columns),
            "unreadable": sum(1 for r in read.records if r.problem),
        }

    def rows(self, rows: object) -> dict:
        """A dataset sent as JSON rows (`[{"prompt": ...}, ...]`), kept as a JSONL file."""
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RequestError('\'rows\' must be a list of objects, e.g. [{"prompt": "..."}].')
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return self.upload("rows.jsonl", lines.encode("utf-8"))

    def _check_room(self) -> None:
        """Refuse to add to a runs folder that holds its limit: a client's uploads and runs stay
        within the disk the operator gave them (nothing is deleted to make room)."""
        held, limit = folder_bytes(self.root), disk_limit()
        if held >= limit:
            raise RunsFolderFull(
                f"This server's runs folder holds {gib(held)}, its limit ({DISK_ENV}="
                f"{gib(limit)}): no upload or run is added until the operator removes old runs "
                f"or raises {DISK_ENV}."
            )

    def _dataset_path(self, dataset: object) -> Path:
        if not isinstance(dataset, str) or not DATASET_ID.fullmatch(dataset):
            raise RequestError(
                "'dataset' must be the id an upload answered (16 hex digits and the file's "
                f"suffix); got {str(dataset)[:60]!r}. {NO_PATHS}"
            )
        path = self.uploads / dataset
        if not path.is_file():
            raise RequestError(f"No dataset {dataset} on this server (upload it again).")
        return path

    # -- starting and watching

    def start(
        self,
        model_id: object,
        dataset: object,
        experiment: object,
        settings: object = None,
        limit: object = None,
    ) -> dict:
        """Start (or resume: the same model, dataset, experiment and settings share a folder)
        a run of an uploaded `dataset` on model `model_id` (None: the served model); its status.
        Malformed settings, a missing column or a full server are refused here."""
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise RequestError("'settings' must be an object of the experiment's settings.")
        if not isinstance(experiment, str):
            raise RequestError("'experiment' must be the name of an experiment, e.g. 'patch'.")
        path = self._dataset_path(dataset)
        self._check_room()
        lm = self.model(model_id)
        spec = RunSpec(
            model=lm.model_id, data=str(path), experiment=experiment, out=str(self.root),
            settings=settings, limit=limit,
        ).checked()  # fmt: skip
        try:
            check_columns(read_dataset(path, CLIENT_BOUNDS), spec.experiment)
        except DataError as error:
            raise DataError(str(error).replace(str(path), self._data_name(path))) from None
        folder = self.root / _folder(spec, path)
        spec = RunSpec.from_dict(spec.to_dict() | {"out": str(folder)})
        with self._lock:
            for run_id, run in self._running.items():
                if run.spec.out == spec.out and run.running:
                    return self.status(run_id)
            running = [r for r in self._running.values() if r.running]
            if len(running) >= MAX_RUNNING:
                raise RunsBusy(
                    f"{len(running)} runs are computing on this server (at most {MAX_RUNNING} at "
                    "once); wait for one to end or cancel it."
                )
            run = start(spec, lm=lm, index=self.index)
            run_id = _started(run, RunStore(folder), self.index)
            self._running = {i: r for i, r in self._running.items() if r.running}
            self._running[run_id] = run
        return self.status(run_id)

    def save_prompt(self, model_id: object, fields: dict, experiment: str, settings: dict) -> dict:
        """Save a single-prompt experiment as a run of one prompt (`fields`: its prompt and,
        where used, corrupt, answer and wrong); the run's status."""
        if not isinstance(fields, dict):
            raise RequestError("A run of one prompt needs its fields (prompt, corrupt, ...).")
        kept = {k: v for k, v in fields.items() if k in COLUMNS and v is not None and v != ""}
        line = json.dumps(kept, ensure_ascii=False) + "\n"
        dataset = self.upload(f"{experiment}-prompt.jsonl", line.encode("utf-8"))
        return self.start(model_id, dataset["dataset"], experiment, settings)

    def _row(self, run_id: object) -> dict:
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise NoSuchRun(f"No run {str(run_id)[:40]!r}: a run id is 12 hex digits.")
        row = self.index.get(run_id)
        if row is None or row["id"] != run_id:
            raise NoSuchRun(f"No run {run_id} on this server.")
        return row

    def status(self, run_id: str, *, detail: bool = False) -> dict:
        """Where a run stands: its description, its progress (rate and ETA while it computes
        here), and with `detail` its manifest and skipped rows."""
        row = self._row(run_id)
        run = self._running.get(run_id)
        described = self._public(row)
        if run is not None:
            progress = run.progress()
            if run.error is not None:
                progress = Progress(**(progress.to_dict() | {"state": "failed"}))
                progress.message = self._clean(str(run.error), row)
            described["status"] = progress.state
            described["progress"] = progress.to_dict()
            described["here"] = run.running
        else:
            described["progress"] = Progress(
                state=row["status"], done=row["done"], skipped=row["skipped"], total=row["total"],
                message=described.get("message"),
            ).to_dict()  # fmt: skip
            described["here"] = False
        described["progress"]["line"] = Progress(**described["progress"]).line()
        if detail:
            store = RunStore(row["path"])
            manifest = store.manifest() or {}
            described["manifest"] = self._manifest(manifest)
            described["skipped_rows"] = [
                {"row": row_number, "reason": reason}
                for row_number, reason in store.skipped()[:SKIPPED_SHOWN]
            ]
        return described

    def cancel(self, run_id: str) -> dict:
        """Stop a run computing here at its next cancel point; its status."""
        self._row(run_id)
        run = self._running.get(run_id)
        if run is None or not run.running:
            raise RunError(f"Run {run_id} is not computing on this server: nothing to cancel.")
        run.cancel()
        return self.status(run_id)

    def list(self, model: str | None = None, experiment: str | None = None,
             status: str | None = None) -> list[dict]:  # fmt: skip
        """Every run of the index (this server's and the command line's), newest first."""
        found = self.index.runs(model=model, experiment=experiment, status=status)
        listed = []
        for row in found:
            described = self._public(row)
            run = self._running.get(row["id"])
            if run is not None and run.running and run.progress().total:
                progress = run.progress()
                described |= {"status": progress.state, "done": progress.done,
                              "skipped": progress.skipped, "total": progress.total}  # fmt: skip
            listed.append(described)
        return listed

    # -- results

    def store(self, run_id: str) -> tuple[RunStore, dict]:
        """A run's folder and manifest (read from the index, never from a client's path)."""
        row = self._row(run_id)
        store = RunStore(row["path"])
        manifest = store.manifest()
        if manifest is None:
            raise NoSuchRun(f"Run {run_id}'s folder is gone.")
        return store, manifest

    def results(self, run_id: str, k: int | None = None) -> dict:
        """The run's aggregates over the prompts done so far (`runs.aggregates`), with what each
        quantity's cells are indexed by."""
        store, manifest = self.store(run_id)
        key = (run_id, manifest["updated"], json.dumps(manifest["counts"]), k)
        with self._lock:
            if key in self._results:
                return self._results[key]
        found = aggregates(store) if k is None else aggregates(store, k)
        answer = {"id": run_id, "status": manifest["status"], "cells_by": manifest["cells"]}
        answer |= found.to_dict()
        with self._lock:
            self._results[key] = answer
            while len(self._results) > RESULTS_KEPT:
                self._results.pop(next(iter(self._results)))
        return answer

    def cell(self, run_id: str, quantity: object, layer: int, column: int) -> dict:
        """One cell's value on every prompt measured, by prompt id. A position cell counted from
        the end (column < 0, in a run of prompts of several lengths) is each prompt's own."""
        store, manifest = self.store(run_id)
        cells = manifest["cells"]
        if quantity not in cells:
            raise RequestError(
                f"'quantity' must be one of {', '.join(cells)} for this run; got {quantity!r}."
            )
        if tuple(cells[quantity]) == POSITIONS and column < 0:
            values = store.values(
                (pc.field("quantity") == quantity) & (pc.field("layer") == layer),
                ["prompt_id", "column", "value"],
            )
            prompts = store.prompts()
            tokens = dict(
                zip(prompts["prompt_id"].to_pylist(), prompts["tokens"].to_pylist(), strict=True)
            )
            ids = values["prompt_id"].to_numpy()
            size = np.array([tokens.get(int(p)) or 0 for p in ids])
            kept = values.filter(values["column"].to_numpy() == size + column)
            table = kept.select(["prompt_id", "value"]).sort_by("prompt_id")
        else:
            table = store.cell(quantity, layer, column)
        return {
            "quantity": quantity,
            "layer": layer,
            "column": column,
            "prompt_ids": table["prompt_id"].to_pylist(),
            "values": table["value"].to_pylist(),  # NaN is never stored (measures)
        }

    def prompts(self, run_id: str, ids: list[int] | None = None) -> dict[int, dict]:
        """Prompt id -> the row's fields (prompt, corrupt, answer, wrong) of a run's prompts."""
        store, _ = self.store(run_id)
        table = store.prompts()
        if ids is not None:
            table = table.filter(
                pc.is_in(table["prompt_id"], value_set=pa.array([int(i) for i in ids], pa.int64()))
            )
        return {
            pid: json.loads(fields)
            for pid, fields in zip(
                table["prompt_id"].to_pylist(), table["fields"].to_pylist(), strict=True
            )
        }

    # -- what a client sees

    def _public(self, row: dict) -> dict:
        data = Path(row["data"])
        return {
            "id": row["id"],
            "model": public_model(row["model"]),
            "experiment": row["experiment"],
            "settings": row["settings"],
            "data": self._data_name(data),
            "dataset": data.name if data.parent == self.uploads else None,
            "status": row["status"],
            "done": row["done"],
            "skipped": row["skipped"],
            "total": row["total"],
            "created": row["created"],
            "updated": row["updated"],
            "message": self._clean(row["message"], row) if row["message"] else None,
        }

    def _data_name(self, data: Path) -> str:
        if data.parent == self.uploads:
            try:
                return data.with_suffix(".name").read_text(encoding="utf-8")
            except OSError:
                pass
        return data.name

    def _clean(self, text: str, row: dict) -> str:
        """A message with the run's paths as names."""
        for path, name in ((row["path"], "the run's folder"),
                           (row["data"], self._data_name(Path(row["data"])))):  # fmt: skip
            text = text.replace(path, name)
        return text.replace(str(self.root), "lmscope's runs folder")

    def _manifest(self, manifest: dict) -> dict:
        """The manifest without paths or process details."""
        model, data = manifest.get("model", {}), manifest.get("data", {})
        path = Path(data.get("path", ""))
        return {
            "lmscope": manifest.get("lmscope"),
            "model": {
                "id": public_model(model.get("id", "")),
                "public_id": model.get("public_id"),
                "revision": model.get("revision"),
                "card": model.get("card"),
            },
            "data": {
                "name": self._data_name(path),
                "format": data.get("format"),
                "sha256": data.get("sha256"),
                "rows": data.get("rows"),
                "columns": data.get("columns"),
            },
            "experiment": manifest.get("experiment"),
            "settings": manifest.get("settings"),
            "limit": manifest.get("limit"),
            "cells": manifest.get("cells"),
            "counts": manifest.get("counts"),
            "sessions": [
                {k: s.get(k) for k in ("engine", "started", "seconds", "prompts", "resumed")}
                for s in manifest.get("sessions", [])
            ],
        }


def _folder(spec: RunSpec, data: Path) -> str:
    """A run's folder name: its experiment and the hash of what identifies it."""
    identity = json.dumps(
        [spec.model, data.name, spec.experiment, spec.settings], sort_keys=True, default=str
    )
    return f"{spec.experiment}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _started(run: Run, store: RunStore, index: RunIndex) -> str:
    """The id of a run just started, once its manifest and its index row are written (a resumed
    run's manifest is there at once); what stopped the run, if it stopped before."""
    waited = 0.0
    while True:
        manifest = store.manifest()
        if manifest is not None and index.get(manifest["id"]) is not None:
            return manifest["id"]
        try:
            run.wait(0.02)
        except TimeoutError:
            waited += 0.02
            if waited > STARTING_SECONDS:
                run.cancel()
                raise RunError("The run did not start in time; try again.") from None
            continue
        manifest = store.manifest()
        if manifest is None or index.get(manifest["id"]) is None:
            raise RunError("The run ended before it started.")
        return manifest["id"]
