"""Analyses kept on the server, keyed by id, so the browser gets only what it draws.

Each analysis gets a fresh random id; nothing is shared between requests except loaded models,
which are read-only. The store is bounded by a byte budget (`LMSCOPE_ANALYSIS_CACHE`, default 2G)
that counts everything an analysis holds (`analysis_bytes`): the least recently used analyses go
first.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections import OrderedDict
from types import FunctionType, ModuleType

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..core.analysis import Analysis
from ..core.errors import RequestError
from ..core.loading import parse_bytes
from ..core.model import LoadedModel

# Memory a tensor object takes beside its data (Python object, TensorImpl, StorageImpl, allocator
# rounding): 540-600 bytes of resident memory per tensor, measured with /proc/self/statm.
TENSOR_OVERHEAD = 512
_SHARED = (LoadedModel, nn.Module, PreTrainedTokenizerBase, type, ModuleType, FunctionType)
_ATOMS = (str, bytes, int, float, complex, bool, type(None))


def held_bytes(root: object) -> int:
    """Bytes reachable from `root`: each tensor storage once, plus every Python object's own size.

    Shared objects (loaded models, modules, tokenizers, classes) are not counted: they outlive any
    one analysis.
    """
    seen: set[int] = set()
    storages: set[tuple[int, int]] = set()
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in storages:
                storages.add(key)
                total += storage.nbytes()
            total += TENSOR_OVERHEAD
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, _ATOMS):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            if hasattr(obj, "__dict__"):
                stack.append(obj.__dict__)
            for cls in type(obj).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(obj, name):
                        stack.append(getattr(obj, name))
    return total


def analysis_bytes(analysis: Analysis) -> int:
    """Memory an analysis holds: every tensor and Python object reachable from it (not the shared
    model), the logit lens the views show (read during the analysis) included."""
    return held_bytes(analysis)


class AnalysisStore:
    """A thread-safe LRU of analyses under a byte budget."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget or parse_bytes(os.environ.get("LMSCOPE_ANALYSIS_CACHE", "2G"))
        self._items: OrderedDict[str, tuple[Analysis, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0  # what the kept analyses hold, by `analysis_bytes`

    def put(self, analysis: Analysis) -> str:
        key = secrets.token_urlsafe(12)
        size = analysis_bytes(analysis)
        with self._lock:
            self._items[key] = (analysis, size)
            self.nbytes += size
            while len(self._items) > 1 and self.nbytes > self.budget:
                self.nbytes -= self._items.popitem(last=False)[1][1]
        return key

    def get(self, key: str) -> Analysis:
        with self._lock:
            if key not in self._items:
                raise RequestError(
                    "This analysis is no longer on the server (it expired); press Analyze again."
                )
            self._items.move_to_end(key)
            return self._items[key][0]

    def __len__(self) -> int:
        return len(self._items)
