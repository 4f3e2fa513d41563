"""Running a run: `execute` computes what is missing and stores it; `start` does so in a thread
and hands back a `Run` to watch (`progress`), stop (`cancel`) and wait for.

A run is resumable by construction: the rows of the dataset (its first `limit`) not yet in a
done part of the run's folder are computed, in batches, each stored as a part as soon as it is
answered. Starting again with the same model, dataset, experiment and settings after any stop
(Ctrl-C, a crash, SIGKILL, `cancel`) ends with the same rows as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from ..core import jobs
from ..core.errors import LmscopeError
from ..core.jobs import Cancelled, time_left
from ..core.loading import inspect_model, load_model, no_progress, revision_of
from ..core.model import LoadedModel
from ..version import __version__
from .aggregate import aggregates
from .batch import CARD, INPUT
from .data import DataError, Dataset, Record, read_dataset
from .engines import import_ray
from .engines import local as local_engine
from .engines import ray as ray_engine
from .index import RunIndex
from .measures import MEASURES
from .spec import RunSpec
from .store import FORMAT, VALUES, RunError, RunStore

INDEX_EVERY = 2.0  # seconds between progress writes to the index (the manifest: every part)
STATES = ("starting", "loading", "running", "complete", "cancelled", "failed", "interrupted")


@dataclass
class Progress:
    """Where a run stands. `done` counts rows finished (measured or skipped) in this session and
    before it (`resumed`); `rate` (rows per second) and `eta_s` are this session's."""

    state: str = "starting"
    done: int = 0
    skipped: int = 0
    total: int = 0
    resumed: int = 0
    rate: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """`patch: 120 of 200 prompts (3 skipped), 14.2 prompts/s, about 5 s left`."""
        text = f"{self.done:,} of {self.total:,} prompts"
        if self.skipped:
            text += f" ({self.skipped:,} skipped)"
        if self.rate:
            text += f", {self.rate:.3g} prompts/s"
        if self.eta_s is not None and self.state == "running":
            text += f", {time_left(self.eta_s)}"
        if self.state not in ("running", "starting"):
            text += f": {self.state}"
        return text


def execute(
    spec: RunSpec,
    *,
    lm: LoadedModel | None = None,
    index: RunIndex | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    loading: Callable[[str], None] = no_progress,
) -> RunStore:
    """Compute what `spec`'s run is missing and store it; the run's folder when it ends (complete
    or cancelled). `lm` is the model already loaded (local engine), else it is loaded by id;
    `on_progress` hears each part; setting `cancel` stops the run at the next cancel point."""
    spec = spec.checked()
    if spec.engine == "ray":
        import_ray()  # missing: say so before anything is written
    dataset = read_dataset(spec.data)
    measure_type = MEASURES[spec.experiment]
    check_columns(dataset, spec.experiment)
    store, index = RunStore(spec.out), index or RunIndex()
    progress, state = Progress(), "failed"
    job = jobs.Job(label=spec.experiment, stale=cancel.is_set if cancel else None)
    with store.lock():
        store.tidy()
        records = dataset.records if spec.limit is None else dataset.records[: spec.limit]
        manifest = _manifest(store, spec, dataset)
        manifest["cells"] = measure_type.cells(spec.settings)
        done_ids = store.done_ids()
        pending = [r for r in records if r.row not in done_ids]
        progress.total = len(records)
        progress.done = progress.resumed = len(records) - len(pending)
        progress.skipped = _skipped(store, {r.row for r in records})
        session = {
            "engine": spec.engine,
            "started": _now(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "resumed": progress.resumed,
        }
        manifest["sessions"].append(session)
        _report(store, index, manifest, progress, "starting")
        started = time.monotonic()
        try:
            answers = _answers(spec, pending, lm, manifest, loading, progress, on_progress)
            _report(store, index, manifest, progress, "running")
            started = last_index = time.monotonic()
            try:
                with jobs.running(job):
                    for answer in answers:
                        _learn_card(manifest, answer)
                        _store(store, answer, manifest["model"]["public_id"], progress)
                        _pace(progress, started)
                        manifest["counts"] = _counts(progress)
                        store.save_manifest(manifest)
                        if time.monotonic() - last_index > INDEX_EVERY:
                            index.record(manifest, store.path)
                            last_index = time.monotonic()
                        if on_progress:
                            on_progress(progress)
                        job.check()
            finally:
                answers.close()
            state = "complete" if progress.done >= progress.total else "cancelled"
            if state == "complete":
                aggregates(store).save(store.path / "aggregates")
        except Cancelled:
            state = "cancelled"
        except KeyboardInterrupt:
            state = "interrupted"
            raise
        except BaseException as error:
            manifest["message"] = str(error) or type(error).__name__
            raise
        finally:
            session["seconds"] = round(time.monotonic() - started, 3)
            session["prompts"] = progress.done - progress.resumed
            _report(store, index, manifest, progress, state)
            if on_progress:
                on_progress(progress)
    return store


def check_columns(dataset: Dataset, experiment: str) -> None:
    """A `DataError` when the dataset lacks a column every row of `experiment` needs."""
    needed = ("prompt", "corrupt") if MEASURES[experiment].pair else ("prompt",)
    if any(c not in dataset.columns for c in needed):
        raise DataError(
            f"{dataset.path}: {experiment} needs the column(s) {', '.join(needed)}; it has "
            f"{', '.join(dataset.columns) or 'none of them'}."
        )


def _answers(spec, pending, lm, manifest, loading, progress, on_progress):
    """The engine's answers to the pending rows' batches, as they come (a generator), with the
    manifest told which model answers them (the Ray engine's driver reads its card only)."""
    if not pending:  # a complete run asked again: nothing to load
        return (answer for answer in ())
    batches = _batches(pending, spec.batch_size)
    if spec.engine == "ray":
        config, source, card = inspect_model(spec.model, allow_local_path=True)
        _describe(manifest, card, revision_of(config, source))
        return ray_engine(spec, batches)
    if lm is None:
        progress.state = "loading"
        if on_progress:
            on_progress(progress)
        lm = load_model(
            spec.model, allow_local_path=True, progress=loading, placement=spec.placement()
        )
    _describe(manifest, lm.card, lm.revision)
    return local_engine(spec, batches, lm)


def _learn_card(manifest: dict, answer: pa.Table) -> None:
    """The card of the model a worker loaded (its placement and parity check: a Ray driver reads
    only the config), from an answer's metadata."""
    told = (answer.schema.metadata or {}).get(CARD)
    if told is not None:
        card = json.loads(told)
        manifest["model"] |= {"revision": card.pop("revision"), "card": card}


def _describe(manifest: dict, card, revision: str) -> None:
    manifest["model"] |= {"public_id": card.model_id, "revision": revision, "card": card.to_dict()}


def _batches(records: list[Record], size: int) -> list[pa.Table]:
    """Pending rows, sorted by prompt length (so a batch's rows mostly share a token count), in
    `INPUT` tables of `size` rows."""
    ordered = sorted(records, key=lambda r: (len(str(r.fields.get("prompt", ""))), r.row))
    batches = []
    for start in range(0, len(ordered), size):
        chunk = ordered[start : start + size]
        batches.append(
            pa.table(
                {
                    "prompt_id": [r.row for r in chunk],
                    "fields": [json.dumps(r.fields, ensure_ascii=False) for r in chunk],
                    "problem": [r.problem for r in chunk],
                },
                schema=INPUT,
            )
        )
    return batches


def _store(store: RunStore, answer: pa.Table, model: str, progress: Progress) -> None:
    """One engine answer as a part: its cells flattened to rows, then its prompts."""
    lengths = pc.list_value_length(answer["value"]).fill_null(0)
    values = pa.table(
        {
            "model": pa.array([model] * int(pc.sum(lengths).as_py() or 0), pa.string()),
            "prompt_id": pc.take(answer["prompt_id"], pc.list_parent_indices(answer["value"])),
            **{
                name: pc.list_flatten(answer[name])
                for name in ("quantity", "layer", "column", "value")
            },
        },
        schema=VALUES,
    )
    store.write_part(
        values, answer.select(["prompt_id", "prompt", "fields", "tokens", "skipped", "notices"])
    )
    progress.done += answer.num_rows
    progress.skipped += answer.num_rows - answer["skipped"].null_count


def _pace(progress: Progress, started: float) -> None:
    elapsed = time.monotonic() - started
    progress.elapsed_s = round(elapsed, 3)
    finished = progress.done - progress.resumed
    if finished and elapsed > 0:
        progress.rate = finished / elapsed
        progress.eta_s = (progress.total - progress.done) / progress.rate


def _skipped(store: RunStore, rows: set[int]) -> int:
    prompts = store.prompts()
    skipped = prompts.filter(pc.is_valid(prompts["skipped"]))["prompt_id"].to_pylist()
    return sum(1 for row in skipped if row in rows)


def _counts(progress: Progress) -> dict:
    return {"done": progress.done, "skipped": progress.skipped, "total": progress.total}


def _report(store, index, manifest, progress, state: str) -> None:
    progress.state = state
    manifest["status"], manifest["updated"] = state, _now()
    manifest["counts"] = _counts(progress)
    store.save_manifest(manifest)
    index.record(manifest, store.path)


def _manifest(store: RunStore, spec: RunSpec, dataset: Dataset) -> dict:
    """The run's manifest: the stored one when this is the same run resumed (same model,
    dataset content, experiment and settings), else a new one; a folder holding another run is
    refused."""
    identity = {
        "model": spec.model,
        "data_sha256": dataset.sha256,
        "experiment": spec.experiment,
        "settings": spec.settings,
    }
    where = spec.placement()  # resolved: a run resumed on a GPU is not its CPU run
    identity["placement"] = {"device": where.device.type, "dtype": where.dtype_name}
    stored = store.manifest()
    if stored is not None:
        was = stored.get("identity")
        if was != identity:
            changed = [k for k in identity if (was or {}).get(k) != identity[k]]
            raise RunError(
                f"{store.path} holds another run ({', '.join(changed)} differ); give another "
                "--out to start a new one, or the same arguments to resume it."
            )
        stored["lmscope"] = __version__
        return stored
    now = _now()
    return {
        "format": FORMAT,
        "id": uuid.uuid4().hex[:12],
        "lmscope": __version__,
        "identity": identity,
        "model": {"id": spec.model},
        "data": {
            "path": str(dataset.path),
            "format": dataset.format,
            "sha256": dataset.sha256,
            "rows": len(dataset.records),
            "columns": list(dataset.columns),
        },
        "experiment": spec.experiment,
        "settings": spec.settings,
        "limit": spec.limit,
        "cells": {},
        "created": now,
        "updated": now,
        "status": "starting",
        "counts": {"done": 0, "skipped": 0, "total": 0},
        "sessions": [],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """A run going on in a thread of this process: its spec, `progress()`, `cancel()`, `wait()`."""

    spec: RunSpec
    _progress: Progress = field(default_factory=Progress)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None
    _store: RunStore | None = None

    def progress(self) -> Progress:
        return self._progress

    def cancel(self) -> None:
        """Stop at the next cancel point (between layers of a pass, or between batches)."""
        self._cancel.set()

    @property
    def error(self) -> BaseException | None:
        """What stopped the run, where it failed."""
        return self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunStore:
        """The run's folder once it has ended; re-raises what stopped it, if it failed."""
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the run is still going after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._store is not None
        return self._store


def start(spec: RunSpec, *, lm: LoadedModel | None = None, index: RunIndex | None = None) -> Run:
    """Start `spec`'s run in a thread of this process (on `lm`, a model already loaded, where
    given) and return at once. Malformed specs and unreadable data raise here, not later."""
    spec = spec.checked()
    # a file that cannot be read, or lacks a column, is an error now, not a failed run
    check_columns(read_dataset(spec.data), spec.experiment)
    run = Run(spec)

    def target() -> None:
        try:
            run._store = execute(
                spec,
                lm=lm,
                index=index,
                cancel=run._cancel,
                on_progress=lambda p: setattr(run, "_progress", p),
            )
        except BaseException as error:
            run._error = error
            if not isinstance(error, LmscopeError):
                run._progress.state = "failed"

    run._thread = threading.Thread(
        target=target, name=f"lmscope-run-{spec.experiment}", daemon=True
    )
    run._thread.start()
    return run
