"""Head ablation: removing heads matches an independent hook, the scan matches single ablations,
other families work through their adapter, and an ablation never leaks into a concurrent request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError
from lmscope.experiments.ablation import BATCH_TOKENS, ablate, ablation_scan

PROMPT = "When Mary and John went to the store, John gave a drink to"


def plain_logits(model, ids, out_proj, heads: list[tuple[int, int]], n_heads: int, mode="zero"):
    """Last-position logits with heads replaced, by forward pre-hooks written here, on the raw model.

    `out_proj(layer)` is the module whose input is the concatenated head outputs.
    """
    d_head = model.config.hidden_size // n_heads
    means = {}
    if mode == "mean":  # each head's mean input slice over positions, from a clean pass
        grabbed = {}
        handles = [
            out_proj(layer).register_forward_pre_hook(
                lambda m, args, layer=layer: grabbed.__setitem__(layer, args[0][0].clone())
            )
            for layer in {layer for layer, _ in heads}
        ]
        try:
            with torch.no_grad():
                model(ids)
        finally:
            for h in handles:
                h.remove()
        means = {layer: x.mean(0) for layer, x in grabbed.items()}

    def hook(layer):
        def replace(module, args):
            x = args[0].clone()
            for l, h in heads:
                if l == layer:
                    cols = slice(h * d_head, (h + 1) * d_head)
                    x[..., cols] = means[layer][cols] if mode == "mean" else 0.0
            return (x, *args[1:])

        return replace

    handles = [out_proj(layer).register_forward_pre_hook(hook(layer)) for layer, _ in heads]
    try:
        with torch.no_grad():
            return model(ids).logits[0, -1]
    finally:
        for h in handles:
            h.remove()


def gpt2_proj(model):
    return lambda layer: model.transformer.h[layer].attn.c_proj


def prompt_ids(lm):
    return torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("heads", [[(0, 1)], [(1, 3)], [(0, 2), (1, 0), (1, 2)]])
def test_ablating_heads_gives_the_logits_of_an_independent_hook(tiny_gpt2, heads, mode):
    model = tiny_gpt2.model
    expected = plain_logits(model, prompt_ids(tiny_gpt2), gpt2_proj(model), heads, 4, mode)
    result = ablate(tiny_gpt2, PROMPT, heads, mode, new_tokens=0)
    torch.testing.assert_close(result.after, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(result.after, result.before, atol=1e-6)


def test_ablating_no_head_changes_nothing(tiny_gpt2):
    result = ablate(tiny_gpt2, PROMPT, [], new_tokens=3)
    with torch.no_grad():
        clean = tiny_gpt2.model(prompt_ids(tiny_gpt2)).logits[0, -1]
    torch.testing.assert_close(result.before, clean, atol=1e-5, rtol=0)
    assert torch.equal(result.before, result.after)
    assert result.kl == 0.0
    assert result.generation_before.ids == result.generation_after.ids


def test_target_change_and_kl_match_the_two_distributions(tiny_gpt2):
    result = ablate(tiny_gpt2, PROMPT, [(1, 1), (0, 3)], target=" Mary", new_tokens=0)
    model = tiny_gpt2.model
    after = plain_logits(model, prompt_ids(tiny_gpt2), gpt2_proj(model), [(1, 1), (0, 3)], 4)
    with torch.no_grad():
        before = model(prompt_ids(tiny_gpt2)).logits[0, -1]
    p, q = before.softmax(-1), after.softmax(-1)
    mary = tiny_gpt2.tokenizer.encode(" Mary")[0]
    doc = result.to_dict()
    assert doc["target"]["id"] == mary
    assert doc["target"]["probability_before"] == pytest.approx(float(p[mary]), abs=1e-6)
    assert doc["target"]["probability_after"] == pytest.approx(float(q[mary]), abs=1e-6)
    assert doc["kl_divergence"] == pytest.approx(float((p * (p / q).log()).sum()), abs=1e-5)


def test_generation_after_ablation_is_the_greedy_continuation_of_the_ablated_model(tiny_gpt2):
    heads = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    result = ablate(tiny_gpt2, PROMPT, heads, new_tokens=6)
    model, ids = tiny_gpt2.model, prompt_ids(tiny_gpt2)
    for _ in range(6):  # greedy, one full pass per token, with the test's own hook
        logits = plain_logits(model, ids, gpt2_proj(model), heads, 4)
        ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=-1)
    assert result.generation_after.ids == ids[0, -6:].tolist()


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("batch_tokens", [64, BATCH_TOKENS], ids=["several-passes", "one-pass"])
def test_the_scan_value_of_each_head_equals_ablating_that_head_alone(tiny_gpt2, mode, batch_tokens):
    scan = ablation_scan(tiny_gpt2, PROMPT, mode, batch_tokens=batch_tokens)
    assert scan.ablated_logprob.shape == (2, 4)
    for layer in range(2):
        for head in range(4):
            alone = ablate(
                tiny_gpt2, PROMPT, [(layer, head)], mode, target=scan.target, new_tokens=0
            )
            expected = float(alone.after.log_softmax(-1)[scan.target])
            assert float(scan.ablated_logprob[layer, head]) == pytest.approx(expected, abs=1e-5)
            before = float(alone.before.log_softmax(-1)[scan.target])
            assert float(scan.effect[layer, head]) == pytest.approx(expected - before, abs=1e-5)
    doc = scan.to_dict()
    assert len(doc["effect"]) == 2 and len(doc["effect"][0]) == 4


def test_the_scan_runs_all_heads_in_one_batched_pass_when_they_fit(tiny_gpt2):
    passes = []
    hook = tiny_gpt2.model.register_forward_pre_hook(lambda module, args: passes.append(1))
    try:
        ablation_scan(tiny_gpt2, PROMPT)  # zero ablation: the clean row rides in the same pass
    finally:
        hook.remove()
    assert len(passes) == 1


def test_ablation_and_scan_work_on_a_llama_with_grouped_query_attention(tiny_llama):
    model = tiny_llama.model
    proj = lambda layer: model.model.layers[layer].self_attn.o_proj  # noqa: E731
    heads = [(1, 2), (0, 1)]
    expected = plain_logits(model, prompt_ids(tiny_llama), proj, heads, 4)
    result = ablate(tiny_llama, PROMPT, heads, new_tokens=0)
    torch.testing.assert_close(result.after, expected, atol=1e-5, rtol=0)
    scan = ablation_scan(tiny_llama, PROMPT)
    alone = plain_logits(model, prompt_ids(tiny_llama), proj, [(1, 2)], 4)
    assert float(scan.ablated_logprob[1, 2]) == pytest.approx(
        float(alone.log_softmax(-1)[scan.target]), abs=1e-5
    )


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ([(2, 0)], "Layer 2 does not exist"),
        ([(0, 4)], "Head 4 does not exist"),
        ([(0, -1)], "Head -1 does not exist"),
        ([[0]], "[layer, head] pair"),
        ("0.1", "list of [layer, head] pairs"),
    ],
)
def test_a_bad_head_is_refused_with_a_clear_message(tiny_gpt2, heads, message):
    with pytest.raises(RequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ablate(tiny_gpt2, PROMPT, heads)


def test_a_bad_mode_is_refused(tiny_gpt2):
    with pytest.raises(RequestError, match="'zero' or 'mean'"):
        ablate(tiny_gpt2, PROMPT, [(0, 0)], "half")


def test_ablations_never_change_what_a_concurrent_plain_analysis_returns(tiny_gpt2):
    prompts = [f"{PROMPT} {word}" for word in ("her", "him", "them", "the", "a", "it")]
    expected = [analyze(tiny_gpt2, p) for p in prompts]
    every = [(layer, head) for layer in range(2) for head in range(4)]
    expected_ablation = ablate(tiny_gpt2, PROMPT, every, new_tokens=2)

    def job(i: int):
        if i % 2:
            return ablate(tiny_gpt2, PROMPT, every, new_tokens=2)
        return analyze(tiny_gpt2, prompts[(i // 2) % len(prompts)])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(job, range(48)))
    for i, result in enumerate(results):
        if i % 2:
            assert torch.equal(result.after, expected_ablation.after)
            assert result.generation_after.ids == expected_ablation.generation_after.ids
        else:
            clean = expected[(i // 2) % len(prompts)]
            assert torch.equal(result.logits, clean.logits)
            assert torch.equal(result.z, clean.z)
            assert torch.equal(result.attention, clean.attention)
