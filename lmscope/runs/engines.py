"""Where a run's batches are computed: in this process (`local`) or on Ray actors (`ray`). Both
call the same per-batch function (`batch.BatchWorker`) and yield its answers as they come.

Ray is optional: it is imported only when the Ray engine runs (`pip install 'lmscope[ray]'`).
Each actor loads the model once; with GPUs in the cluster there is one actor per GPU
(`num_gpus=1`; lmscope computes on the CPU until it learns devices, issue 24), else CPU actors
sharing the cores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pyarrow as pa

from ..core.model import LoadedModel
from .batch import BatchWorker
from .spec import RunSpec
from .store import RunError

RAY_MISSING = "The Ray engine needs Ray: pip install 'lmscope[ray]' (or 'ray[data]')."


def local(spec: RunSpec, batches: list[pa.Table], lm: LoadedModel) -> Iterator[pa.Table]:
    """Each batch through the per-batch function in this process, in order."""
    worker = BatchWorker(spec.to_dict(), lm=lm)
    for batch in batches:
        yield worker(batch)


def ray_plan(resources: dict, workers: int | None) -> tuple[int, int, int]:
    """(actors, CPUs per actor, GPUs per actor) for a cluster's resources: one actor per GPU
    where there are GPUs, else `workers` (default: one per CPU) sharing the CPUs."""
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if gpus:
        return (workers or gpus), 1, 1
    actors = min(workers or cpus, cpus)
    return actors, max(1, cpus // actors), 0


def import_ray():
    """The `ray` module, or a `RunError` saying how to install it."""
    try:
        import ray as ray_
    except ImportError:
        raise RunError(RAY_MISSING) from None
    return ray_


def ray(spec: RunSpec, batches: list[pa.Table]) -> Iterator[pa.Table]:
    """The batches through `BatchWorker` actors of a Ray cluster (`spec.ray_address`, else the one
    this process has joined, else a local one started here and shut down at the end); answers
    come back in the order they finish."""
    ray_ = import_ray()
    started = not ray_.is_initialized()
    _quiet(ray_)
    if started:
        if spec.ray_address:
            ray_.init(address=spec.ray_address, logging_level=logging.WARNING)
        else:
            ray_.init(
                num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING
            )
    try:
        actors, cpus, gpus = ray_plan(ray_.cluster_resources(), spec.workers)
        dataset = ray_.data.from_arrow(batches)
        answers = dataset.map_batches(
            BatchWorker,
            fn_constructor_kwargs={"spec": spec.to_dict(), "threads": cpus},
            batch_size=spec.batch_size,
            batch_format="pyarrow",
            compute=ray_.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
        )
        yield from answers.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if started:
            ray_.shutdown()


def _quiet(ray_) -> None:
    """No progress bars or per-operator logs from Ray Data on the user's terminal."""
    context = ray_.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
