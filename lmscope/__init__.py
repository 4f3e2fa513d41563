"""lmscope: look inside a causal language model, stage by stage.

import lmscope
analysis = lmscope.analyze("gpt2", "The cat sat on the mat")
"""

from __future__ import annotations

import os

# Torch's OpenMP threads spin while waiting by default; on a small machine shared with a browser
# that turns 0.13 s passes into 1.5 s ones. Passive waiting costs nothing measurable when the
# machine is quiet (benchmarks/results/threads.md). Read once, when torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .core.analysis import Analysis
from .core.analysis import analyze as _analyze
from .core.card import ModelCard
from .core.devices import Placement, placement
from .core.errors import LmscopeError
from .core.loading import from_model, load_model
from .core.model import LoadedModel
from .core.model_cache import default_cache
from .version import __version__


def load(
    model_id: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    device_map: str | None = None,
    max_memory: str | dict | None = None,
    offload_folder: str | None = None,
) -> LoadedModel:
    """A model by hub id (`gpt2`, `org/name`), `demo`, a catalog id (`smollm2-135m-instruct`), a
    local folder or a .gguf file; cached for reuse (per placement).

    `device`: auto (the first GPU, else the CPU), cpu, cuda, cuda:N or mps; `dtype`: auto
    (bfloat16 on a GPU that supports it, float32 on the CPU), float32, bfloat16 or float16;
    `device_map` auto or balanced spreads the model over devices with accelerate, bounded by
    `max_memory` ('0=20GiB,cpu=64GiB' or accelerate's dict), the rest in `offload_folder`.
    The card says where it runs (`lm.card.placement`).
    """
    cache = default_cache()
    cache.allow_local_path = True  # a notebook user is the operator
    where = placement(device, dtype, device_map, max_memory, offload_folder)
    return cache.get(model_id, placement=where)


def analyze(model: str | LoadedModel, prompt: str) -> Analysis:
    """Analyze a prompt with one traced forward pass."""
    lm = load(model) if isinstance(model, str) else model
    return _analyze(lm, prompt)


def run(
    model: str | LoadedModel,
    data: str,
    experiment: str,
    out: str,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress=None,
    **settings,
):
    """Run `experiment` on every row of `data` and store it in `out` (resumable: the same call
    again computes only what is missing); returns the run's `lmscope.runs.RunStore`.

    `model` is an id or path, or a model already loaded (local engine). Settings as keywords, e.g.
    `run("gpt2", "ioi.jsonl", "patch", "runs/ioi", component="heads", scan="both")`;
    `device` and `dtype` say where each worker runs the model (as for `load`); `progress(p)` hears
    each stored batch (`lmscope.runs.Progress`)."""
    from .runs import RunSpec, execute
    from .runs.store import RunError

    lm = model if isinstance(model, LoadedModel) else None
    if lm is not None and engine != "local":
        raise RunError("The Ray engine loads the model in each actor: name it by id or path.")
    spec = RunSpec(
        model=lm.model_id if lm is not None else model, data=data, experiment=experiment,
        out=out, settings=settings, limit=limit, engine=engine, ray_address=ray_address,
        batch_size=batch_size, workers=workers, device=device, dtype=dtype,
    )  # fmt: skip
    return execute(spec, lm=lm, on_progress=progress)


__all__ = [
    "Analysis",
    "LmscopeError",
    "LoadedModel",
    "ModelCard",
    "Placement",
    "__version__",
    "analyze",
    "from_model",
    "load",
    "load_model",
    "run",
]
