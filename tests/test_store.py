"""Server-side analyses stay under their byte budget; an evicted one answers a clear message."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest
import torch

from lmscope.api.store import AnalysisStore, analysis_bytes
from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError
from lmscope.core.loading import load_model
from lmscope.core.model import LoadedModel


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


def _resident() -> int:
    """This process's resident memory in bytes (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def demo() -> Iterator[LoadedModel]:
    """The demo model (GPT-2's 50,257-token vocabulary: a 201 KB logits row per analysis), run on
    one thread: thousands of tiny passes on two spinning threads crawl on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model("demo")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resident_per_analysis(demo) -> tuple[float, float]:
    """Resident memory per kept analysis, measured over 500 distinct ones, and what the store counts."""
    for i in range(50):  # warm the allocator and the tokenizer
        analyze(demo, f"warm-up prompt {i}")
    gc.collect()
    start, kept = _resident(), []
    for i in range(500):
        kept.append(analyze(demo, f"Distinct prompt number {i} here"))
    gc.collect()
    measured = (_resident() - start) / len(kept)
    return measured, sum(analysis_bytes(a) for a in kept) / len(kept)


def test_the_store_counts_what_an_analysis_holds_in_resident_memory(resident_per_analysis) -> None:
    measured, counted = resident_per_analysis
    assert measured > 200_000  # the logits row alone is 201 KB: the measurement sees it
    assert 1 / 1.5 < counted / measured < 1.5, (counted, measured)


def test_thousands_of_analyses_under_a_small_budget_keep_memory_flat(
    demo, resident_per_analysis
) -> None:
    budget = 16 * 2**20
    store = AnalysisStore(budget=budget)
    gc.collect()
    start = _resident()
    for i in range(2000):
        store.put(analyze(demo, f"Another distinct prompt, number {i}"))
        if i == 499:
            gc.collect()
            at_500 = _resident()
    gc.collect()
    end = _resident()
    assert store.nbytes <= budget and len(store) > 10
    assert len(store) * resident_per_analysis[0] < 1.25 * budget  # what it keeps, in real memory
    assert end - at_500 < 4 * 2**20, (at_500 - start, end - at_500)  # flat from 500 to 2,000
    assert end - start < 2 * budget, end - start
