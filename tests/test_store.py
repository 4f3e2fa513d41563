"""Server-side analyses stay under their byte budget; an evicted one answers a clear message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError
from lmscope.service.store import AnalysisStore, analysis_bytes


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


def test_a_stored_analysis_holds_no_more_after_every_view_read_it(tiny_gpt2) -> None:
    """What the store counted at `put` stays what the analysis holds: reading the logit lens at
    every position, every head's pattern and the document grows nothing."""
    analysis = analyze(tiny_gpt2, "When Mary and John went to the store, John gave a drink to")
    counted = analysis_bytes(analysis)
    for position in range(len(analysis.tokens)):
        lens = analysis.logit_lens(position)
        assert len(lens) == tiny_gpt2.layers + 1
        analysis.top_predictions(position=position)
    for layer in range(tiny_gpt2.layers):
        analysis.layer_patterns(layer)
    analysis.to_dict()
    assert analysis_bytes(analysis) == counted


MEASURE = """
import gc, json, os, torch
torch.set_num_threads(1)
from lmscope.service.store import analysis_bytes
from lmscope.core.analysis import analyze
from lmscope.core.loading import load_model
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
demo = load_model("demo")
for i in range(50):  # warm the allocator and the tokenizer
    analyze(demo, f"warm-up prompt {i}")
gc.collect()
start, kept = resident(), []
for i in range(500):
    kept.append(analyze(demo, f"Distinct prompt number {i} here"))
gc.collect()
print(json.dumps([(resident() - start) / len(kept), sum(map(analysis_bytes, kept)) / len(kept)]))
"""


@pytest.fixture(scope="module")
def resident_per_analysis() -> tuple[float, float]:
    """Resident memory per kept analysis over 500 distinct ones, and what the store counts, in a
    fresh process: one that ran other tests reuses their freed memory and would measure less."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True, timeout=300
    )
    measured, counted = json.loads(done.stdout.strip().splitlines()[-1])
    return measured, counted


def test_the_store_counts_what_an_analysis_holds_in_resident_memory(resident_per_analysis) -> None:
    measured, counted = resident_per_analysis
    assert measured > 200_000  # the logits row alone is 201 KB: the measurement sees it
    assert 1 / 1.5 < counted / measured < 1.5, (counted, measured)


FLAT = (
    MEASURE.split("start, kept")[0]
    + """
from lmscope.service.store import AnalysisStore
store = AnalysisStore(budget=16 * 2**20)
start = resident()
for i in range(2000):
    store.put(analyze(demo, f"Another distinct prompt, number {i}"))
    if i == 499:
        gc.collect()
        at_500 = resident()
gc.collect()
print(json.dumps([start, at_500, resident(), store.nbytes, len(store)]))
"""
)


def test_thousands_of_analyses_under_a_small_budget_keep_memory_flat(resident_per_analysis) -> None:
    budget = 16 * 2**20
    done = subprocess.run(
        [sys.executable, "-c", FLAT], capture_output=True, text=True, check=True, timeout=300
    )
    start, at_500, end, held, kept = json.loads(done.stdout.strip().splitlines()[-1])
    assert held <= budget and kept > 10
    assert kept * resident_per_analysis[0] < 1.25 * budget  # what it keeps, in real memory
    # flat from 500 to 2,000: under one budget's growth where unbounded would be ~390 MB
    assert end - at_500 < budget, (at_500 - start, end - at_500)
    assert end - start < 2 * budget, end - start
