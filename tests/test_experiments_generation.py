"""Generation: greedy and beam search equal transformers' own `generate`, a seed repeats exactly
without touching the global RNG, and every step shows the model's own distribution."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lmscope.core.errors import RequestError
from lmscope.core.loading import from_model
from lmscope.experiments.generation import GenerationSettings, generate

PROMPT = "Once upon a time, there was a little"


@pytest.fixture(scope="module")
def peaked(gpt2_tokenizer):
    """A tiny GPT-2 with large random weights: sharp distributions, so continuations vary."""
    torch.manual_seed(3)
    config = GPT2Config(
        n_layer=2, n_head=4, n_embd=64, n_positions=128, initializer_range=0.3,
        attn_implementation="eager",
    )  # fmt: skip
    return from_model(GPT2LMHeadModel(config), gpt2_tokenizer, "peaked-gpt2")


def hf_generate(lm, **kwargs) -> list[int]:
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        out = lm.model.generate(
            ids, attention_mask=torch.ones_like(ids), pad_token_id=50256, **kwargs
        )
    new = out[0, ids.shape[1] :].tolist()
    return new[: new.index(50256) + 1] if 50256 in new else new


def test_greedy_equals_transformers_generate(peaked):
    result = generate(peaked, PROMPT, GenerationSettings("greedy", 30))
    expected = hf_generate(peaked, max_new_tokens=30, do_sample=False)
    assert result.ids == expected
    assert len(set(expected)) > 3  # the test model does not just repeat one token
    assert result.text == peaked.tokenizer.decode(expected)
    assert all(step.rank == 0 for step in result.steps)


@pytest.mark.parametrize("beams", [2, 5])
def test_beam_search_equals_transformers_generate(peaked, beams):
    result = generate(peaked, PROMPT, GenerationSettings("beam", 12, beams=beams))
    assert result.ids == hf_generate(peaked, max_new_tokens=12, num_beams=beams, do_sample=False)


def test_steps_show_the_models_own_next_token_distribution(peaked):
    result = generate(peaked, PROMPT, GenerationSettings("beam", 8, beams=3))
    prompt_ids = peaked.tokenizer(PROMPT)["input_ids"]
    ids = torch.tensor([prompt_ids + result.ids])
    with torch.no_grad():
        logits = peaked.model(ids).logits[0, len(prompt_ids) - 1 : -1]
    probs = logits.softmax(-1)
    for i, step in enumerate(result.steps):
        token = result.ids[i]
        assert step.chosen.probability == pytest.approx(float(probs[i, token]), abs=1e-6)
        assert step.rank == int((probs[i] > probs[i, token]).sum())
        top = probs[i].topk(5)
        assert [p.id for p in step.alternatives] == top.indices.tolist()
        assert [p.probability for p in step.alternatives] == pytest.approx(top.values.tolist())


def test_sampling_with_a_seed_repeats_exactly_and_leaves_the_global_rng_alone(peaked):
    settings = GenerationSettings("sample", 25, temperature=1.5, top_k=40, top_p=0.95, seed=7)
    state = torch.get_rng_state()
    first = generate(peaked, PROMPT, settings)
    assert torch.equal(torch.get_rng_state(), state)
    with ThreadPoolExecutor(4) as pool:  # concurrent requests with other seeds change nothing
        seeds = [7, 8, 9, 7]
        others = list(
            pool.map(lambda s: generate(peaked, PROMPT, replace(settings, seed=s)), seeds)
        )
    again = generate(peaked, PROMPT, settings)
    assert again.ids == first.ids and first.seed == 7
    assert others[0].ids == first.ids and others[3].ids == first.ids
    assert len({tuple(o.ids) for o in others}) > 1  # different seeds differ
    assert torch.equal(torch.get_rng_state(), state)


def test_sampling_obeys_top_k_and_reports_the_seed_it_drew(peaked):
    result = generate(peaked, PROMPT, GenerationSettings("sample", 30, top_k=3, temperature=3.0))
    assert all(step.rank < 3 for step in result.steps)
    assert all(step.sampling_probability > 0 for step in result.steps)
    repeat = generate(
        peaked, PROMPT, GenerationSettings("sample", 30, top_k=3, temperature=3.0, seed=result.seed)
    )
    assert repeat.ids == result.ids


def test_sampling_from_the_single_most_likely_token_is_greedy(peaked):
    greedy = generate(peaked, PROMPT, GenerationSettings("greedy", 20))
    top1 = generate(peaked, PROMPT, GenerationSettings("sample", 20, top_k=1, seed=1))
    assert top1.ids == greedy.ids
    assert all(step.sampling_probability == pytest.approx(1.0) for step in top1.steps)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_new_tokens": 51}, "between 1 and 50"),
        ({"max_new_tokens": 0}, "between 1 and 50"),
        ({"method": "beam", "beams": 6}, "between 1 and 5"),
        ({"beams": 0}, "between 1 and 5"),
        ({"method": "sample", "temperature": 0}, "above 0"),
        ({"method": "sample", "temperature": float("nan")}, "must be a number"),
        ({"method": "sample", "top_p": 0}, "above 0 and at most 1"),
        ({"method": "sample", "top_p": 1.5}, "above 0 and at most 1"),
        ({"method": "sample", "top_k": -1}, "0 \\(off\\) or more"),
        ({"method": "sample", "seed": "x"}, "'seed' must be an integer"),
        ({"method": "nucleus"}, "'method' must be one of"),
        ({"max_new_tokens": True}, "must be an integer"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(settings, message):
    with pytest.raises(RequestError, match=message):
        GenerationSettings.from_request(settings)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_greedy_equals_transformers_own_eager_generate_on_soft_capped_windowed_families(
    name, gpt2_tokenizer
):
    """Cached generation steps attend from one query to many keys: Gemma 2's soft-capped
    attention and both Gemmas' sliding windows (4 tokens in the tiny models) included."""
    from families import build

    from lmscope.core import attention

    lm = from_model(build(name), gpt2_tokenizer, name)
    result = generate(lm, PROMPT, GenerationSettings("greedy", 12))
    with attention.eager(lm.model):
        expected = hf_generate(lm, max_new_tokens=12, do_sample=False)
    assert result.ids == expected
    assert len(set(expected)) > 2  # not one token repeated
