"""Attribution: direct logit attribution adds up to the target's logit and matches a hand
computation; integrated gradients are complete, match a hand-written Riemann sum, and say so when
they cannot converge (on a real model, SmolLM2); gradient x input matches plain autograd."""

from __future__ import annotations

import pytest
import torch

from lmscope import load
from lmscope.core.analysis import analyze
from lmscope.core.errors import RequestError
from lmscope.dashboard.stages.investigate.attribution import GREY, token_rows
from lmscope.experiments.attribution import (
    DEFAULT_STEPS,
    direct_logit_attribution,
    token_attribution,
)

PROMPT = "The Eiffel Tower is in the city of"
SMOL_PROMPT = "The capital of France is"


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


def embeddings_and_baseline(lm, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt's token embeddings and, independently, the baseline the family should use:
    zeros where positions are added as vectors (GPT-2), the mean token embedding (rotary)."""
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    table = lm.model.get_input_embeddings().weight.detach()
    x = table[ids].float()
    if lm.model.config.model_type == "gpt2":
        return x, torch.zeros_like(x)
    return x, table[: len(lm.tokenizer)].float().mean(0).expand_as(x)


def riemann_ig(lm, prompt: str, target: int, points: int) -> torch.Tensor:
    """Integrated gradients by hand: a midpoint Riemann sum on the straight path, plain autograd."""
    x, base = embeddings_and_baseline(lm, prompt)
    total = torch.zeros(x.shape[1])
    for chunk in ((torch.arange(points) + 0.5) / points).split(64):
        embeds = (base + chunk.view(-1, 1, 1) * (x - base)).requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(logprob(lm, embeds, target).sum(), embeds)
        total += ((x - base) * grad).sum(-1).sum(0)  # (B, T, d) -> (T,)
    return total / points


@pytest.mark.parametrize("family", ["tiny_gpt2", "tiny_llama"])
def test_integrated_gradients_sum_to_the_change_from_the_baseline(request, family):
    lm = request.getfixturevalue(family)
    result = token_attribution(lm, PROMPT)
    assert result.steps <= DEFAULT_STEPS and result.valid
    x, base = embeddings_and_baseline(lm, PROMPT)
    with torch.no_grad():  # f(input) and f(baseline), independently
        f_input = float(logprob(lm, x, result.target)[0])
        f_baseline = float(logprob(lm, base, result.target)[0])
    assert result.f_input == pytest.approx(f_input, abs=1e-4)
    assert result.f_baseline == pytest.approx(f_baseline, abs=1e-4)
    gap = f_input - f_baseline
    assert abs(float(result.integrated_gradients.sum()) - gap) <= 0.05 * abs(gap)
    assert len(result.integrated_gradients) == x.shape[1]


@pytest.fixture(scope="module")
def demo():
    """The bundled, trained 2-layer GPT-2: its f changes abruptly near the zero baseline."""
    return load("demo")


@pytest.mark.parametrize(
    ("family", "prompt", "points"),
    [
        ("small_gpt2", PROMPT, 96),
        ("small_gpt2", "When Mary and John went to the store, John gave a drink to", 96),
        ("tiny_llama", PROMPT, 256),
        ("demo", "Alice was tired, so she went to", 256),
        ("demo", "The opposite of hot is", 256),
    ],
)
def test_each_token_matches_a_hand_riemann_sum(request, family, prompt, points):
    """On the demo model the old fixed rule (64 s^3-warped steps) missed completeness by 140%
    and 9.5% on these prompts; GPT-2 Small's shape and a tiny Llama are smooth."""
    lm = request.getfixturevalue(family)
    result = token_attribution(lm, prompt)
    reference = riemann_ig(lm, prompt, result.target, points)
    assert result.valid and result.completeness_error < 0.05
    torch.testing.assert_close(result.integrated_gradients, reference, atol=0.01, rtol=0.01)


def test_integrated_gradients_are_complete_on_smollm2(smollm2):
    """RMSNorm makes f(alpha x) jump near alpha = 0; from the mean embedding the path is
    complete, and converged within the default budget."""
    result = token_attribution(smollm2, SMOL_PROMPT)
    assert result.baseline == "mean"
    x, base = embeddings_and_baseline(smollm2, SMOL_PROMPT)
    with torch.no_grad():
        gap = float(
            logprob(smollm2, x, result.target)[0] - logprob(smollm2, base, result.target)[0]
        )
    assert result.f_input - result.f_baseline == pytest.approx(gap, abs=1e-3)
    assert abs(float(result.integrated_gradients.sum()) - gap) <= 0.05 * abs(gap)
    assert result.valid
    assert smollm2.token_text(result.target) == " Paris"


def test_a_budget_too_small_to_converge_is_flagged_and_greyed(smollm2):
    result = token_attribution(smollm2, SMOL_PROMPT, steps=33)
    assert result.steps <= 33
    doc = result.to_dict()
    assert not doc["valid"] and not (doc["converged"] and doc["complete"])
    assert doc["token_change"] > doc["tolerance"] or doc["completeness_error"] > 0.05
    rows = token_rows(result)
    assert rows[0].id == "inv-attr-warning" and "did not converge" in rows[0].children
    ig = next(r for r in rows if getattr(r, "id", None) == "inv-attr-ig")
    assert '"s":["rgba(' + GREY in ig.to_plotly_json()["props"]["data-chips"]
    assert "not converged" in rows[1].children.children.lower()


def test_a_converged_result_is_coloured_without_a_warning(tiny_gpt2):
    result = token_attribution(tiny_gpt2, PROMPT)
    rows = token_rows(result)
    assert result.valid and all(getattr(r, "id", None) != "inv-attr-warning" for r in rows)
    ig = next(r for r in rows if getattr(r, "id", None) == "inv-attr-ig")
    assert GREY not in ig.to_plotly_json()["props"]["data-chips"]


def test_gradient_x_input_matches_plain_autograd(tiny_gpt2):
    result = token_attribution(tiny_gpt2, PROMPT, " Paris", steps=5)
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
        ({"steps": 0}, "'steps' must be an integer from 5"),
        ({"steps": 4}, "'steps' must be an integer from 5"),
        ({"target": " two words"}, "pick a single token"),
        ({"target": 10**7}, "outside the vocabulary"),
    ],
)
def test_bad_attribution_requests_are_refused(tiny_gpt2, kwargs, message):
    with pytest.raises(RequestError, match=message):
        token_attribution(tiny_gpt2, PROMPT, **kwargs)
