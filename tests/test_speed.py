"""Cost estimates are calibrated on the machine: a short timed probe per model (core/speed.py) makes
an analysis's estimate match its measured time within a factor of 1.5, from a few dozen to a few
hundred tokens, on the demo and on SmolLM2. (Every other test runs at an assumed speed, set in
conftest.py, so that what it expects to be refused does not depend on how busy the machine is.)"""

from __future__ import annotations

import time

import pytest
import torch

from lmscope.core import budget, speed
from lmscope.core.analysis import analyze
from lmscope.core.model_cache import ModelCache
from lmscope.service import Service
from lmscope.web.server import api_app

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
    model, lengths, demo_lm, smollm2, measured, monkeypatch
):
    """This machine's speed moves by up to 70% between minutes (a shared host): where one try
    falls outside, the model is probed and timed again, up to three tries. An estimate that is
    wrong, not unlucky, is outside every time."""
    lm = demo_lm if model == "demo" else smollm2
    prompts = [prompt_of(lm, tokens) for tokens in lengths]
    tries = []
    for _ in range(3):
        monkeypatch.setattr(speed, "_MEASURED", speed.weakref.WeakKeyDictionary())
        ratios = []
        for prompt in prompts:
            count = len(lm.tokenizer(prompt)["input_ids"])
            estimate = budget.analysis(lm, count).seconds
            took = fastest(lambda p=prompt: analyze(lm, p))
            ratios.append((count, round(took / estimate, 2)))
        tries.append(ratios)
        if all(1 / 1.5 <= ratio <= 1.5 for _, ratio in ratios):
            return
    pytest.fail(f"{model}: (tokens, measured / estimate) in each try: {tries}")


@pytest.mark.slow
def test_a_4096_token_analysis_of_smollm2_runs_through_the_api_with_default_settings(
    smollm2, measured, monkeypatch
):
    """The limit (90 s by default) no longer refuses what finishes in well under it: the API
    analyzes 4,096 tokens, and its prediction is a plain transformers pass's."""
    monkeypatch.delenv(budget.SECONDS_ENV, raising=False)
    assert budget.max_seconds() == budget.DEFAULT_SECONDS == 90
    models = ModelCache(budget=2**34)
    models.add(smollm2)
    client = api_app(Service(models=models)).test_client()
    prompt = prompt_of(smollm2, 4096)
    ids = smollm2.tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert ids.shape[1] >= 4096
    answer = client.post("/api/analyze", json={"model": smollm2.model_id, "prompt": prompt})
    assert answer.status_code == 200, answer.get_json()
    assert len(answer.get_json()["tokens"]) == ids.shape[1]
    with torch.inference_mode():
        plain = smollm2.model(ids, logits_to_keep=1).logits[0, -1]
    assert answer.get_json()["predictions"][0]["id"] == int(plain.argmax())
