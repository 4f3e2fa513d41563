"""Loaded models, reused across requests: least-recently-used out first, under a memory budget.

Several requests for the same model at the same moment load it once: the later ones wait for the
first. Each device has its own budget: for the models held in RAM, `LMSCOPE_MODEL_CACHE` (e.g.
'6G') or half the memory available at start; for those on a GPU, half that GPU's memory (a model
on a GPU takes nothing from RAM, and a GPU's models are evicted for a GPU's new one). A model
spread by a device map counts where its analyses run (its input device).
Every model is loaded with the cache's `placement` (the operator's --device and --dtype) unless a
caller names another (`lmscope.load(model, device=...)`); the same model in two placements is two
entries.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import torch

from .catalog import DEMO_ID, canonical_id
from .devices import Placement
from .loading import (
    Progress,
    available_memory,
    load_model,
    no_progress,
    parse_bytes,
    refuse_path,
)
from .model import LoadedModel


class ModelCache:
    """A thread-safe, memory-bounded LRU of loaded models."""

    def __init__(
        self,
        budget: int | None = None,
        *,
        allow_local_path: bool = False,
        placement: Placement | None = None,
    ) -> None:
        env = os.environ.get("LMSCOPE_MODEL_CACHE")
        self.budget = budget or (parse_bytes(env) if env else available_memory() // 2)
        self.allow_local_path = allow_local_path
        self.placement = placement or Placement()
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many times a model was really loaded (for tests and the status line)

    @staticmethod
    def key(model_id: str) -> str:
        return DEMO_ID if model_id == DEMO_ID else canonical_id(model_id)

    def get(
        self,
        model_id: str,
        progress: Progress = no_progress,
        placement: Placement | None = None,
        *,
        allow_local_path: bool | None = None,
    ) -> LoadedModel:
        """The model, loaded at most once however many threads ask at the same time; in the
        cache's placement, or `placement`. `allow_local_path` (default: the cache's) lets the
        caller name a folder or a file: an operator's right, never a visitor's, whatever another
        caller of the same cache loaded."""
        allow_local_path = self.allow_local_path if allow_local_path is None else allow_local_path
        if not allow_local_path:
            refuse_path(model_id)
        placement = placement or self.placement
        key = self.key(model_id)
        if placement != self.placement:
            key = f"{key} ({placement.key})"
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            try:
                lm = load_model(
                    model_id,
                    allow_local_path=allow_local_path,
                    progress=progress,
                    placement=placement,
                )
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self._loading.pop(key, None)
                self.loads += 1
                self._models[key] = lm
                self._evict(keep=key)
            return lm

    def add(self, lm: LoadedModel) -> str:
        """Keep a model loaded elsewhere (the operator's folder, `from_model`); returns its key."""
        key = self.key(lm.model_id)
        with self._lock:
            self._models[key] = lm
            self._models.move_to_end(key)
            self._evict(keep=key)
        return key

    def cached(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def budget_of(self, device: torch.device) -> int:
        """What the models kept on `device` may hold together (see the module docstring)."""
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory // 2
        return self.budget

    def _evict(self, keep: str) -> None:
        """Least recently used out, per device, until each device's models fit its budget (the
        newest one is kept even alone over it: it loaded)."""
        for device in {_where(m) for m in self._models.values()}:
            held = [k for k, m in self._models.items() if _where(m) == device]
            budget = self.budget_of(device)
            while len(held) > 1 and sum(self._models[k].nbytes for k in held) > budget:
                oldest = next(k for k in held if k != keep)
                held.remove(oldest)
                del self._models[oldest]


def _where(lm: LoadedModel) -> torch.device:
    """The device whose budget a model counts against: RAM for the CPU (and weights offloaded
    to it), else its GPU."""
    device = lm.device
    return device if device.type == "cuda" else torch.device("cpu")


_DEFAULT: ModelCache | None = None
_DEFAULT_LOCK = threading.Lock()


def default_cache() -> ModelCache:
    """The process-wide cache the CLI, API and dashboard share."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ModelCache()
        return _DEFAULT
