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

__version__ = "0.1.0"


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
]
