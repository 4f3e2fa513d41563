"""Analyses kept on the server, keyed by id, so the browser gets only what it draws.

Each analysis gets a fresh random id; nothing is shared between requests except loaded models,
which are read-only. The store is bounded by a byte budget (`LMSCOPE_ANALYSIS_CACHE`, default 2G):
the least recently used analyses go first.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict

from ..core.analysis import Analysis
from ..core.errors import RequestError
from ..core.loading import parse_bytes


def analysis_bytes(analysis: Analysis) -> int:
    """Memory held by an analysis's tensors."""
    tensors = (
        analysis.attention,
        analysis.residual,
        analysis.attn_out,
        analysis.mlp_out,
        analysis.z,
        analysis.token_embeddings,
    )
    return sum(t.numel() * t.element_size() for t in tensors)


class AnalysisStore:
    """A thread-safe LRU of analyses under a byte budget."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget or parse_bytes(os.environ.get("LMSCOPE_ANALYSIS_CACHE", "2G"))
        self._items: OrderedDict[str, tuple[Analysis, int]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, analysis: Analysis) -> str:
        key = secrets.token_urlsafe(12)
        size = analysis_bytes(analysis)
        with self._lock:
            self._items[key] = (analysis, size)
            while len(self._items) > 1 and sum(s for _, s in self._items.values()) > self.budget:
                self._items.popitem(last=False)
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
