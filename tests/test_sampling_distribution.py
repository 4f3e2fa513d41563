"""The distribution the sampling sliders draw is the one `generate` samples from: temperature,
top-k and top-p checked against a filter written out here over a plain transformers pass."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel

import lmscope
from lmscope.core.catalog import DEMO_PATH
from lmscope.dashboard.stages.investigate.generation import distribution_bars
from lmscope.experiments.generation import GenerationSettings, generate

PROMPT = "The cat sat on the mat. The cat sat on the"
SETTINGS = [
    GenerationSettings("sample", 1, temperature=1.0, seed=1),
    GenerationSettings("sample", 1, temperature=0.5, seed=2),
    GenerationSettings("sample", 1, temperature=1.7, top_k=5, seed=3),
    GenerationSettings("sample", 1, temperature=0.8, top_p=0.6, seed=4),
    GenerationSettings("sample", 1, temperature=1.2, top_k=20, top_p=0.9, seed=5),
    GenerationSettings("sample", 1, top_k=1, seed=6),
]


@pytest.fixture(scope="module")
def demo():
    return lmscope.load("demo")


@pytest.fixture(scope="module")
def plain_logits(demo) -> torch.Tensor:
    """The last position's logits from transformers alone (no lmscope hooks)."""
    model = GPT2LMHeadModel.from_pretrained(DEMO_PATH, dtype=torch.float32).eval()
    ids = torch.tensor([demo.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits[0, -1].float()


def filtered_by_hand(logits: torch.Tensor, s: GenerationSettings) -> torch.Tensor:
    """Temperature, then keep the k largest, then the smallest top set holding top_p of the mass."""
    scaled = logits / s.temperature
    keep = torch.ones_like(scaled, dtype=torch.bool)
    if s.top_k:
        keep &= scaled >= scaled.topk(s.top_k).values[-1]
    probs = torch.where(keep, scaled, -torch.inf).softmax(-1)
    if s.top_p < 1:
        order = probs.argsort(descending=True)
        before = probs[order].cumsum(0) - probs[order]  # mass of the tokens ranked above
        kept = torch.zeros_like(keep)
        kept[order] = before < s.top_p
        keep &= kept
    return torch.where(keep, scaled, -torch.inf).softmax(-1)


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: f"T{s.temperature}-k{s.top_k}-p{s.top_p}"
)
def test_slider_distribution_equals_the_filter_written_out(demo, plain_logits, settings):
    expected = filtered_by_hand(plain_logits, settings)
    analysis = lmscope.analyze(demo, PROMPT)
    drawn = settings.distribution(analysis.logits)
    assert torch.allclose(drawn, expected, atol=1e-5)
    assert int((drawn > 0).sum()) == int((expected > 0).sum())
    # What the dashboard puts in its bars is that distribution, token by token.
    bars = distribution_bars(analysis, settings)
    assert bars["ids"] == analysis.logits.topk(len(bars["ids"])).indices.tolist()
    for token, shown in zip(bars["ids"], bars["sampled"], strict=True):
        assert shown == pytest.approx(float(expected[token]), abs=1e-5)
    assert bars["allowed"] == int((expected > 0).sum())


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: f"T{s.temperature}-k{s.top_k}-p{s.top_p}"
)
def test_generate_samples_from_the_drawn_distribution(demo, settings):
    analysis = lmscope.analyze(demo, PROMPT)
    drawn = settings.distribution(analysis.logits)
    for seed in range(settings.seed, settings.seed + 5):
        seeded = GenerationSettings(
            "sample", 1, temperature=settings.temperature, top_k=settings.top_k,
            top_p=settings.top_p, seed=seed,
        )  # fmt: skip
        step = generate(demo, PROMPT, seeded).steps[0]
        # The same seed drawn from the dashboard's distribution picks the same token ...
        draw = torch.multinomial(drawn, 1, generator=torch.Generator().manual_seed(seed))
        assert step.chosen.id == int(draw)
        # ... and generate reports the probability the dashboard draws for it.
        assert step.sampling_probability == pytest.approx(float(drawn[step.chosen.id]), abs=1e-5)


def test_temperature_reshapes_the_distribution(demo):
    logits = lmscope.analyze(demo, PROMPT).logits
    cold = GenerationSettings("sample", temperature=0.3).distribution(logits)
    hot = GenerationSettings("sample", temperature=2.0).distribution(logits)
    best = int(logits.argmax())
    assert cold[best] > logits.softmax(-1)[best] > hot[best]
