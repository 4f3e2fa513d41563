"""Attribution: direct logit attribution adds up to the target's logit and matches a hand
computation; integrated gradients are complete; gradient x input matches plain autograd."""

from __future__ import annotations

import pytest
import torch

from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError
from lmscope.experiments.attribution import (
    DEFAULT_STEPS,
    direct_logit_attribution,
    token_attribution,
)

PROMPT = "The Eiffel Tower is in the city of"


@pytest.mark.parametrize("family", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("target", [None, " Paris"])
def test_components_sum_to_the_target_logit(request, family, target):
    lm = request.getfixturevalue(family)
    analysis = analyze(lm, PROMPT)
    dla = direct_logit_attribution(analysis, target)
    with torch.no_grad():
        logits = lm.model(torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])).logits[0, -1]
    expected = int(logits.argmax()) if target is None else lm.tokenizer.encode(target)[0]
    assert dla.target == expected
    assert dla.total == pytest.approx(float(logits[expected]), abs=1e-4)
    doc = dla.to_dict()
    assert len(doc["heads"]) == lm.layers and len(doc["heads"][0]) == lm.heads
    assert len(doc["mlps"]) == lm.layers


def test_each_head_and_mlp_matches_a_hand_computation_on_gpt2(tiny_gpt2):
    """Head h's write is z_h @ W_O[h rows]; the frozen final LayerNorm centres it, divides by the
    full stream's std, scales by its weight; then the dot with the target's unembedding row."""
    model = tiny_gpt2.model
    ids = torch.tensor([tiny_gpt2.tokenizer(PROMPT)["input_ids"]])
    z, mlp, final = {}, {}, {}

    def keep(store: dict, key: object, output: bool = False):
        """A hook saving the last position of a module's input (or output)."""
        if output:
            return lambda module, args, out: store.__setitem__(key, out[0, -1])
        return lambda module, args: store.__setitem__(key, args[0][0, -1])

    handles = [model.transformer.ln_f.register_forward_pre_hook(keep(final, "x"))]
    for layer, block in enumerate(model.transformer.h):
        handles.append(block.attn.c_proj.register_forward_pre_hook(keep(z, layer)))
        handles.append(block.mlp.register_forward_hook(keep(mlp, layer, output=True)))
    try:
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
    finally:
        for h in handles:
            h.remove()
    target = int(logits.argmax())
    ln = model.transformer.ln_f
    x = final["x"]
    std = (x.var(unbiased=False) + ln.eps).sqrt()
    unembed = model.lm_head.weight[target]

    def read(v: torch.Tensor) -> float:
        return float(((v - v.mean()) / std * ln.weight) @ unembed)

    dla = direct_logit_attribution(analyze(tiny_gpt2, PROMPT))
    d_head = 16
    for layer, block in enumerate(model.transformer.h):
        w = block.attn.c_proj.weight  # Conv1D: (in, out)
        for head in range(4):
            rows = slice(head * d_head, (head + 1) * d_head)
            write = z[layer][rows] @ w[rows]
            assert float(dla.heads[layer, head]) == pytest.approx(read(write), abs=1e-5)
        assert float(dla.attention_bias[layer]) == pytest.approx(
            read(block.attn.c_proj.bias), abs=1e-5
        )
        assert float(dla.mlps[layer]) == pytest.approx(read(mlp[layer]), abs=1e-5)
    assert dla.constant == pytest.approx(float(ln.bias @ unembed), abs=1e-5)


def logprob(lm, embeds: torch.Tensor, target: int) -> torch.Tensor:
    return lm.model(inputs_embeds=embeds).logits[:, -1].log_softmax(-1)[:, target]


@pytest.mark.parametrize("family", ["tiny_gpt2", "tiny_llama"])
def test_integrated_gradients_sum_to_the_change_from_the_baseline(request, family):
    lm = request.getfixturevalue(family)
    result = token_attribution(lm, PROMPT)
    assert result.steps == DEFAULT_STEPS
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    x = lm.model.get_submodule(lm.adapter.token_embedding)(ids)
    with torch.no_grad():  # f(input) and f(baseline = zero token embeddings), independently
        f_input = float(logprob(lm, x, result.target)[0])
        f_baseline = float(logprob(lm, torch.zeros_like(x), result.target)[0])
    assert result.f_input == pytest.approx(f_input, abs=1e-4)
    assert result.f_baseline == pytest.approx(f_baseline, abs=1e-4)
    gap = f_input - f_baseline
    assert abs(float(result.integrated_gradients.sum()) - gap) <= 0.05 * abs(gap)
    assert len(result.integrated_gradients) == ids.shape[1]


def test_the_completeness_error_shrinks_as_steps_grow(tiny_gpt2):
    errors = [
        token_attribution(tiny_gpt2, PROMPT, " Paris", steps=s).completeness_error
        for s in (1, 4, 16, 64)
    ]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0] / 100


def test_gradient_x_input_matches_plain_autograd(tiny_gpt2):
    result = token_attribution(tiny_gpt2, PROMPT, " Paris", steps=2)
    ids = torch.tensor([tiny_gpt2.tokenizer(PROMPT)["input_ids"]])
    x = tiny_gpt2.model.transformer.wte(ids).detach().requires_grad_(True)
    paris = tiny_gpt2.tokenizer.encode(" Paris")[0]
    with torch.enable_grad():
        logprob(tiny_gpt2, x, paris).sum().backward()
    torch.testing.assert_close(
        result.gradient_x_input, (x * x.grad).sum(-1)[0], atol=1e-5, rtol=1e-4
    )
    assert result.target == paris


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "'steps' must be an integer from 1"),
        ({"target": " two words"}, "pick a single token"),
        ({"target": 10**7}, "outside the vocabulary"),
    ],
)
def test_bad_attribution_requests_are_refused(tiny_gpt2, kwargs, message):
    with pytest.raises(RequestError, match=message):
        token_attribution(tiny_gpt2, PROMPT, **kwargs)
