"""Server-side analyses stay under their byte budget; an evicted one answers a clear message."""

from __future__ import annotations

import pytest

from lmscope.api.store import AnalysisStore, analysis_bytes
from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError


def test_the_store_evicts_least_recently_used_analyses_past_its_budget(tiny_gpt2) -> None:
    analyses = [analyze(tiny_gpt2, f"Prompt number {i} is here") for i in range(4)]
    size = analysis_bytes(analyses[0])
    store = AnalysisStore(budget=int(size * 2.5))  # room for two
    keys = [store.put(a) for a in analyses[:2]]
    assert store.get(keys[0]) is analyses[0]  # touch the first: the second is now the oldest
    keys.append(store.put(analyses[2]))
    assert len(store) == 2
    assert store.get(keys[0]) is analyses[0] and store.get(keys[2]) is analyses[2]
    with pytest.raises(RequestError, match="no longer on the server"):
        store.get(keys[1])


def test_each_analysis_gets_its_own_unguessable_id(tiny_gpt2) -> None:
    store = AnalysisStore(budget=2**30)
    analysis = analyze(tiny_gpt2, "The cat sat on the mat")
    keys = {store.put(analysis) for _ in range(50)}
    assert len(keys) == 50 and all(len(k) >= 16 for k in keys)
