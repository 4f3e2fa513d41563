"""Experiments over a dataset of prompts: stored, resumable runs, on this machine or on Ray.

    from lmscope.runs import RunSpec, execute, start, RunStore, RunIndex
    spec = RunSpec(model="gpt2", data="ioi.jsonl", experiment="patch", out="runs/ioi",
                   settings={"component": "heads", "scan": "atp"})
    run = start(spec)            # a thread: run.progress(), run.cancel(), run.wait()
    store = run.wait()           # the run's folder: store.values(), store.cell(...), ...
    aggregates(store)            # per-cell mean, std, 95% interval, top-k frequency, AtP vs exact
    RunIndex().runs()            # every run on this machine

Modules: `data` reads JSONL / CSV / Parquet / saved `datasets` folders, `rows` validates a row,
`measures` holds each experiment's batched measurement, `batch` the per-batch function both
engines call, `engines` the local and Ray engines, `store` a run's folder, `index` the SQLite
index of runs, `aggregate` what a paper prints, `runner` the run itself.
"""

from __future__ import annotations

from .aggregate import Aggregates, aggregates
from .data import COLUMNS, DataError, read_dataset
from .index import RunIndex
from .runner import Progress, Run, execute, start
from .spec import EXPERIMENTS, SETTINGS, RunSpec, check_settings
from .store import RunError, RunStore

__all__ = [
    "COLUMNS",
    "EXPERIMENTS",
    "SETTINGS",
    "Aggregates",
    "DataError",
    "Progress",
    "Run",
    "RunError",
    "RunIndex",
    "RunSpec",
    "RunStore",
    "aggregates",
    "check_settings",
    "execute",
    "read_dataset",
    "start",
]
