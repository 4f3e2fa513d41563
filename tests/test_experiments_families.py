"""Every experiment works for every family through its adapter: ablation equals a hook on that
family's output projection (module paths written out here), the batched scan equals single
ablations, and direct logit attribution adds up to the logit, as the linearization its METHOD
states computes it by hand (today's families: tests/families.py)."""

from __future__ import annotations

import pytest
import torch
from families import NEW_FAMILIES, block, head_dim
from transformers import (
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from lmscope.core.analysis import analyze
from lmscope.core.loading import from_model
from lmscope.experiments.ablation import ablate, ablation_scan
from lmscope.experiments.attribution import direct_logit_attribution, token_attribution

PROMPT = "The cat sat on the mat. The cat sat on the"
COMMON = {"vocab_size": 50257, "attn_implementation": "eager", "max_position_embeddings": 128}
SIZE = {"hidden_size": 64, "intermediate_size": 128}

FAMILIES = {
    "gpt_neo": (
        lambda: GPTNeoForCausalLM(
            GPTNeoConfig(
                num_layers=2, num_heads=4, hidden_size=64, window_size=4,
                attention_types=[[["global", "local"], 1]], **COMMON,
            )
        ),
        lambda m, layer: m.transformer.h[layer].attn.attention.out_proj,
    ),
    "gpt_neox": (
        lambda: GPTNeoXForCausalLM(
            GPTNeoXConfig(
                num_hidden_layers=2, num_attention_heads=4, use_parallel_residual=True,
                **SIZE, **COMMON,
            )
        ),
        lambda m, layer: m.gpt_neox.layers[layer].attention.dense,
    ),
    "opt": (
        lambda: OPTForCausalLM(
            OPTConfig(
                num_hidden_layers=2, num_attention_heads=4, hidden_size=64,
                word_embed_proj_dim=64, ffn_dim=128, **COMMON,
            )
        ),
        lambda m, layer: m.model.decoder.layers[layer].self_attn.out_proj,
    ),
    "qwen2": (
        lambda: Qwen2ForCausalLM(
            Qwen2Config(
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                sliding_window=None, **SIZE, **COMMON,
            )
        ),
        lambda m, layer: m.model.layers[layer].self_attn.o_proj,
    ),
} | {
    name: (parts.build, lambda m, layer, path=parts.out_proj: block(m, layer).get_submodule(path))
    for name, parts in NEW_FAMILIES.items()
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, gpt2_tokenizer):
    build, out_proj = FAMILIES[request.param]
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():  # random init leaves norms at identity and biases at zero
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    return from_model(model, gpt2_tokenizer, request.param), out_proj


def hooked_logits(model, ids, proj, heads) -> torch.Tensor:
    """Last-position logits with heads' input slices of the output projection zeroed."""
    d_head = head_dim(model)

    def zero(layer):
        def hook(module, args):
            x = args[0].clone()
            for l, h in heads:
                if l == layer:
                    x[..., h * d_head : (h + 1) * d_head] = 0
            return (x, *args[1:])

        return hook

    handles = [proj(model, layer).register_forward_pre_hook(zero(layer)) for layer in (0, 1)]
    try:
        with torch.no_grad():
            return model(ids).logits[0, -1]
    finally:
        for handle in handles:
            handle.remove()


def test_ablation_matches_a_hook_on_the_familys_output_projection(family):
    lm, proj = family
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    heads = [(0, 3), (1, 1)]
    result = ablate(lm, PROMPT, heads, new_tokens=0)
    torch.testing.assert_close(
        result.after, hooked_logits(lm.model, ids, proj, heads), atol=1e-5, rtol=0
    )


def test_the_batched_scan_equals_single_ablations(family):
    lm, proj = family
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    scan = ablation_scan(lm, PROMPT, batch_tokens=3 * ids.shape[1])  # batches start mid-model
    expected = torch.tensor(
        [
            [
                float(hooked_logits(lm.model, ids, proj, [(l, h)]).log_softmax(-1)[scan.target])
                for h in range(4)
            ]
            for l in range(2)
        ]
    )
    torch.testing.assert_close(scan.ablated_logprob, expected, atol=1e-5, rtol=0)


def test_attributions_add_up(family):
    lm, _ = family
    analysis = analyze(lm, PROMPT)
    dla = direct_logit_attribution(analysis)
    assert dla.total == pytest.approx(float(analysis.logits[dla.target]), abs=1e-4)
    tokens = token_attribution(lm, PROMPT)
    assert tokens.completeness_error < 0.05


def _rms_frozen(x: torch.Tensor, at: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """An RMSNorm with its scale frozen at `at`, applied to x."""
    return x * gain / (at.pow(2).mean() + eps).sqrt()


@pytest.mark.parametrize("name", ["gemma2", "gemma3", "olmo2"])
def test_dla_of_a_post_norm_family_is_the_stated_linearization_by_hand(name, gpt2_tokenizer):
    """Each head's share, computed here: z_h alone through o_proj, the post-attention norm frozen
    at the layer's whole output, the final norm frozen at the full stream, the unembedding column,
    and Gemma 2's logit soft-cap frozen as capped / uncapped. Gemma's norms scale by 1 + w."""
    from families import build

    model = build(name)
    lm = from_model(model, gpt2_tokenizer, name)
    analysis = analyze(lm, PROMPT)
    dla = direct_logit_attribution(analysis)
    config, d_head = model.config, head_dim(model)
    eps = config.rms_norm_eps
    offset = 1.0 if name.startswith("gemma") else 0.0
    final = analysis.residual[-1, -1]
    u = model.lm_head.weight[dla.target]
    g = _rms_frozen(u, final, model.model.norm.weight + offset, eps)
    raw = float(g @ final)
    cap = getattr(config, "final_logit_softcapping", None)
    ratio = cap * torch.tanh(torch.tensor(raw / cap)) / raw if cap else 1.0
    for layer in range(2):
        blk = block(model, layer)
        z = analysis.z[layer, -1]  # (heads, d_head)
        whole = blk.self_attn.o_proj(z.flatten())
        gain = blk.post_attention_layernorm.weight + offset
        for head in range(4):
            alone = torch.zeros(4 * d_head)
            alone[head * d_head : (head + 1) * d_head] = z[head]
            write = _rms_frozen(blk.self_attn.o_proj(alone), whole, gain, eps)
            expected = float(write @ g) * float(ratio)
            assert float(dla.heads[layer, head]) == pytest.approx(expected, abs=1e-5, rel=1e-4)
    assert dla.total == pytest.approx(float(analysis.logits[dla.target]), abs=1e-4)
    assert dla.total == pytest.approx(dla.logit, abs=1e-4)
