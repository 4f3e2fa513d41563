"""Every request has a bounded, stated cost: over-limit inputs are refused before any pass runs,
with the estimate and the limit in the message, and a normal request right after still works."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch

from lmscope.cli import main
from lmscope.core import budget
from lmscope.core.analysis import analyze
from lmscope.core.budget import CostLimitError
from lmscope.core.errors import LmscopeError, SettingError
from lmscope.core.model import LoadedModel
from lmscope.experiments.ablation import ablate, ablation_scan
from lmscope.experiments.attribution import token_attribution
from lmscope.experiments.comparison import compare
from lmscope.experiments.generation import GenerationSettings, generate
from lmscope.experiments.steering import steer
from lmscope.service import Service
from lmscope.service.store import analysis_bytes
from lmscope.web.server import api_app

LONG = "the cat sat on the mat and " * 200  # well over GPT-2's 1,024-token context
SHORT = "The cat sat on"
LIMIT_WORDS = ("the limit is 90 s of work per request", "LMSCOPE_MAX_REQUEST_SECONDS")


class _Models:
    """A model cache that always answers one already-loaded model (no loading in these tests)."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm

    def get(self, model_id: str, progress=None) -> LoadedModel:
        return self.lm

    def cached(self) -> list[str]:
        return []


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The few passes that do run here are tiny: two spinning threads only slow a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(small_gpt2):
    return api_app(Service(models=_Models(small_gpt2))).test_client()


def _rows_through_blocks(lm: LoadedModel):
    """Count batch rows x tokens entering every transformer block (forward passes only)."""
    seen = [0]

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen[0] += hidden.shape[0] * hidden.shape[1]

    blocks = lm.adapter.block_list(lm.model)
    handles = [b.register_forward_pre_hook(hook, with_kwargs=True) for b in blocks]
    return seen, handles


def test_the_1024_token_ablation_scan_is_refused_with_its_estimate_and_the_limit(small_gpt2):
    with pytest.raises(CostLimitError) as refused:
        ablation_scan(small_gpt2, LONG)
    message = str(refused.value)
    # Ablating each of 144 heads re-runs the layers from its own on: 1 + sum_l 12 (l + 1) / 12
    # = 79 plain passes' worth of layers, of the 1,024 tokens the model keeps.
    assert "about 79 forward passes of 1,024 tokens through GPT-2 (124M)" in message
    assert all(words in message for words in LIMIT_WORDS)
    assert "at most" in message and "tokens" in message
    scan = ablation_scan(small_gpt2, SHORT)  # a normal scan still runs
    assert scan.effect.shape == (12, 12)


def test_integrated_gradients_of_512_points_on_1024_tokens_is_refused_in_minutes(small_gpt2):
    with pytest.raises(CostLimitError) as refused:
        token_attribution(small_gpt2, LONG, steps=512)
    message = str(refused.value)
    # 512 forward + backward passes (3 passes' work each) and the clean pass: 1,537.
    assert "at most 512 path points" in message
    assert "about 1,537 forward passes of 1,024 tokens" in message
    assert re.search(r"roughly \d+ (minutes|hours)", message) and "fewer steps" in message
    assert all(words in message for words in LIMIT_WORDS)


def test_the_scan_estimate_counts_exactly_the_layer_rows_the_scan_runs(tiny_gpt2):
    seen, handles = _rows_through_blocks(tiny_gpt2)
    try:
        scan = ablation_scan(tiny_gpt2, SHORT)
    finally:
        for handle in handles:
            handle.remove()
    tokens = len(tiny_gpt2.tokenizer.encode(SHORT))
    estimate = budget.scan(tiny_gpt2, tokens)
    layer_rows = (estimate.flop - (1 + 8) * budget.unembed_flop(tiny_gpt2)) / budget.layer_flop(
        tiny_gpt2, tokens
    )
    assert scan.effect.shape == (2, 4)
    assert seen[0] == pytest.approx(layer_rows * tokens)  # row-tokens entering each block


def test_the_attribution_estimate_bounds_the_forward_rows_it_runs(tiny_gpt2):
    seen, handles = _rows_through_blocks(tiny_gpt2)
    try:
        token_attribution(tiny_gpt2, SHORT, steps=33)
    finally:
        for handle in handles:
            handle.remove()
    tokens = len(tiny_gpt2.tokenizer.encode(SHORT))
    layers = tiny_gpt2.layers
    # Estimated forward rows: 33 path points + the clean pass, through every layer.
    assert 0 < seen[0] <= (33 + 1) * tokens * layers


def test_long_generation_ablation_and_comparison_are_refused_under_a_lower_limit(
    small_gpt2, monkeypatch
):
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", "2")
    beam = GenerationSettings("beam", max_new_tokens=50, beams=5)
    cases = [
        (lambda: generate(small_gpt2, LONG, beam), "This generation", "fewer new tokens or beams"),
        (lambda: ablate(small_gpt2, LONG, [[0, 1]], new_tokens=50), "This ablation", "fewer new"),
        (lambda: compare(small_gpt2, small_gpt2, LONG), "This comparison", "shorter prompt"),
    ]
    for run, what, hint in cases:
        with pytest.raises(CostLimitError) as refused:
            run()
        message = str(refused.value)
        assert message.startswith(what) and hint in message, message
        assert "forward pass" in message and "the limit is 2 s of work per request" in message
    result = generate(small_gpt2, SHORT, GenerationSettings(max_new_tokens=2))
    assert len(result.steps) == 2


def test_steering_counts_the_prompts_its_vector_is_made_from(small_gpt2, monkeypatch):
    """Each part alone fits the limit, the whole request does not: the request is refused."""
    text = "the cat sat on the mat and " * 40
    tokens = len(small_gpt2.tokenizer.encode(text))
    plain_and_steered = budget.ablation(small_gpt2, tokens, 0).seconds
    one_vector_prompt = budget.analysis(small_gpt2, tokens).seconds
    limit = plain_and_steered + 0.5 * one_vector_prompt
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", f"{limit:.6f}")
    with pytest.raises(CostLimitError, match=r"^This steering") as refused:
        steer(small_gpt2, text, 3, 4.0, prompts=[text, text], new_tokens=0)
    assert "shorter steering prompts" in str(refused.value)
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", f"{3 * limit:.6f}")
    assert steer(small_gpt2, text, 3, 4.0, prompts=[text, text], new_tokens=0).vector.layer == 3


def test_an_analysis_over_the_memory_limit_is_refused_with_both_sizes(small_gpt2, monkeypatch):
    monkeypatch.setenv("LMSCOPE_MAX_ANALYSIS_MEMORY", "64M")
    with pytest.raises(CostLimitError) as refused:
        analyze(small_gpt2, LONG)
    message = str(refused.value)
    assert "would hold about" in message and "for 1,024 tokens" in message
    assert (
        "the limit is 64 MiB per analysis" in message and "LMSCOPE_MAX_ANALYSIS_MEMORY" in message
    )
    assert len(analyze(small_gpt2, SHORT).tokens) == 4


def test_the_memory_estimate_matches_what_an_analysis_holds(small_gpt2):
    analysis = analyze(small_gpt2, "the cat sat on the mat and " * 10)
    held = analysis_bytes(analysis)
    estimate = budget.analysis_memory(small_gpt2, len(analysis.tokens))
    assert 1 / 1.5 < estimate / held < 1.5, (estimate, held)


def test_raising_the_limit_lets_the_same_request_through(small_gpt2, monkeypatch):
    with pytest.raises(CostLimitError):
        budget.check_scan(small_gpt2, 1024)
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", "3600")
    assert budget.check_scan(small_gpt2, 1024).seconds > 90
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", "90")
    monkeypatch.setenv("LMSCOPE_GFLOPS", "1e6")  # a much faster machine
    assert budget.check_scan(small_gpt2, 1024).seconds < 90


@pytest.mark.parametrize("value", ["0", "-5", "fast", "nan"])
def test_a_limit_that_does_not_parse_names_its_variable(small_gpt2, monkeypatch, value):
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", value)
    with pytest.raises(SettingError, match="LMSCOPE_MAX_REQUEST_SECONDS must be a positive"):
        budget.check_scan(small_gpt2, 8)


def test_the_defaults_allow_the_benchmarked_operations(small_gpt2):
    """benchmarks/results/experiments.md: GPT-2 Small, 32 tokens, each well under a minute here."""
    for estimate in (
        budget.check_analysis(small_gpt2, 1024),
        budget.check_scan(small_gpt2, 32, mean=True),
        budget.check_token_attribution(small_gpt2, 32, 512),
        budget.check_generation(small_gpt2, 974, 50, beams=5),
        budget.check_ablation(small_gpt2, 32, 10),
    ):
        assert estimate.seconds < 90


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        (
            "/api/ablation-scan",
            {"prompt": LONG, "method": "exact"},
            "about 79 forward passes of 1,024 tokens",
        ),
        ("/api/token-attribution", {"prompt": LONG, "steps": 512}, "at most 512 path points"),
    ],
)
def test_the_api_answers_413_with_the_estimate_and_then_serves_a_normal_request(
    client, route, body, words
):
    response = client.post(route, json={"model": "gpt2"} | body)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert words in error and all(w in error for w in LIMIT_WORDS)
    normal = {"model": "gpt2", "prompt": SHORT} | ({"steps": 5} if "steps" in body else {})
    assert client.post(route, json=normal).status_code == 200


def test_the_api_refuses_an_over_limit_generation_and_analysis(client, monkeypatch):
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", "2")
    body = {"model": "gpt2", "prompt": LONG, "method": "beam", "beams": 5, "max_new_tokens": 50}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 413
    assert "the limit is 2 s of work per request" in response.get_json()["error"]
    monkeypatch.setenv("LMSCOPE_MAX_ANALYSIS_MEMORY", "64M")
    response = client.post("/api/analyze", json={"model": "gpt2", "prompt": LONG})
    assert response.status_code == 413 and "64 MiB per analysis" in response.get_json()["error"]
    ok = client.post("/api/analyze", json={"model": "gpt2", "prompt": SHORT})
    assert ok.status_code == 200 and len(ok.get_json()["tokens"]) == 4


def test_the_cli_prints_the_refusal_in_one_line(tiny_gpt2_folder, monkeypatch, capsys):
    monkeypatch.setenv("LMSCOPE_MAX_REQUEST_SECONDS", "0.001")
    args = ["generate", "--model", str(tiny_gpt2_folder), "--prompt", SHORT]
    assert main(args) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the loading progress lines
    assert last.startswith("lmscope: This generation would take about")
    assert "the limit is 0.001 s of work per request" in last


def test_refusals_are_request_errors_that_run_nothing(small_gpt2):
    seen, handles = _rows_through_blocks(small_gpt2)
    try:
        with pytest.raises(LmscopeError) as refused:
            token_attribution(small_gpt2, LONG, steps=512)
    finally:
        for handle in handles:
            handle.remove()
    assert refused.value.status == 413 and seen[0] == 0
