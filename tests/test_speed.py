"""Cost estimates are calibrated on the machine: a short timed probe per model (core/speed.py) makes
an analysis's estimate match its measured time within a factor of 1.5, from a few dozen to a few
hundred tokens, on the demo and on SmolLM2. (Every other test runs at an assumed speed, set in
conftest.py, so that what it expects to be refused does not depend on how busy the machine is.)"""

from __future__ import annotations

import time

import pytest

from lmscope.core import budget, speed
from lmscope.core.analysis import analyze

WORDS = "the river keeps a slow map of every town it passes and".split()


@pytest.fixture
def measured(monkeypatch):
    """Estimates at the measured speed, each model measured afresh in this test."""
    monkeypatch.delenv(speed.SPEED_ENV, raising=False)
    monkeypatch.setattr(speed, "_MEASURED", speed.weakref.WeakKeyDictionary())
    monkeypatch.setattr(speed, "_cache_file", lambda lm: None)


def prompt_of(lm, tokens: int) -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(tokens + 8))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return lm.tokenizer.decode(ids)


def fastest(run, times: int = 3) -> float:
    run()
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def test_the_probe_measures_a_model_once_and_keeps_it(demo_lm, measured, monkeypatch, tmp_path):
    monkeypatch.setattr(speed, "_cache_file", lambda lm: tmp_path / "speed.json")
    found = speed.speed_of(demo_lm)
    assert found.measured and found.flops > 1e7 and found.call >= 0 and found.score_flop >= 0
    assert speed.speed_of(demo_lm) is found  # kept in memory
    monkeypatch.setattr(speed, "_MEASURED", speed.weakref.WeakKeyDictionary())
    monkeypatch.setattr(speed, "measure", lambda lm: pytest.fail("measured again"))
    assert speed.speed_of(demo_lm) == found  # and on disk
    monkeypatch.setenv(speed.SPEED_ENV, "150")
    assert speed.speed_of(demo_lm) == speed.assumed(150.0)


@pytest.mark.parametrize(("model", "lengths"), [("demo", (32, 256)), ("smollm2", (32, 512))])
def test_an_analysis_takes_its_estimate_within_one_and_a_half_times(
    model, lengths, demo_lm, smollm2, measured
):
    lm = demo_lm if model == "demo" else smollm2
    for tokens in lengths:
        prompt = prompt_of(lm, tokens)
        count = len(lm.tokenizer(prompt)["input_ids"])
        estimate = budget.analysis(lm, count).seconds
        took = fastest(lambda p=prompt: analyze(lm, p))
        assert 1 / 1.5 <= took / estimate <= 1.5, (model, count, took, estimate)
