"""Tiny random models of today's families (Gemma 2 and 3, Qwen3, Llama 3, OLMo 2, Phi-3), for the
tests that compare lmscope with a plain transformers pass and hand-written hooks.

Where each part lives is written out here (`Parts`), from transformers' modeling files, not read
from lmscope's adapters: it is the tests' own knowledge of each architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedModel,
    Qwen3Config,
    Qwen3ForCausalLM,
)

VOCAB = 50257  # the real GPT-2 tokenizer drives every family
WINDOW = 4  # the sliding window of the tiny Gemmas: shorter than the test prompts
SMALL = {
    "vocab_size": VOCAB,
    "attn_implementation": "eager",
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "max_position_embeddings": 128,
}
# head_dim 32 with 4 heads of a 64-wide stream: head size is NOT hidden / heads (as in Gemma 3 270M)
GEMMA = {**SMALL, "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": WINDOW}
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,  # the test prompts reach past it
}


@dataclass(frozen=True)
class Parts:
    """A family's tiny model and where its parts live, inside each block unless said otherwise."""

    build: Callable[[], PreTrainedModel]
    out_proj: str  # reads the heads' concatenated outputs
    attn_writes: str  # its output is what attention adds to the stream (a post-norm if any)
    mlp_writes: str  # its output is what the MLP adds to the stream
    final_norm: str = "model.norm"  # on the whole model
    embedding: str = "model.embed_tokens"  # on the whole model
    embed_scale: float = 1.0  # the embedding module multiplies rows by this
    windows: tuple[int | None, ...] = (None, None)  # per layer


NEW_FAMILIES: dict[str, Parts] = {
    "gemma2": Parts(  # soft-capping of attention scores and logits, tight enough to matter:
        # weights 10x the default spread, so raw scores reach well past the cap of 2
        lambda: Gemma2ForCausalLM(
            Gemma2Config(
                **GEMMA,
                attn_logit_softcapping=2.0,
                final_logit_softcapping=0.5,
                initializer_range=0.2,
            )
        ),
        "self_attn.o_proj",
        "post_attention_layernorm",
        "post_feedforward_layernorm",
        embed_scale=8.0,
        windows=(WINDOW, None),  # Gemma 2 alternates local and global layers
    ),
    "gemma3": Parts(
        lambda: Gemma3ForCausalLM(
            Gemma3TextConfig(**GEMMA, layer_types=["sliding_attention", "full_attention"])
        ),
        "self_attn.o_proj",
        "post_attention_layernorm",
        "post_feedforward_layernorm",
        embed_scale=8.0,
        windows=(WINDOW, None),
    ),
    "qwen3": Parts(
        lambda: Qwen3ForCausalLM(Qwen3Config(**SMALL, head_dim=24)),
        "self_attn.o_proj",
        "self_attn",
        "mlp",
    ),
    "llama3": Parts(
        lambda: LlamaForCausalLM(LlamaConfig(**SMALL, rope_parameters=LLAMA3_ROPE)),
        "self_attn.o_proj",
        "self_attn",
        "mlp",
    ),
    "olmo2": Parts(
        lambda: Olmo2ForCausalLM(Olmo2Config(**SMALL)),
        "self_attn.o_proj",
        "post_attention_layernorm",
        "post_feedforward_layernorm",
    ),
    "phi3": Parts(
        lambda: Phi3ForCausalLM(Phi3Config(**SMALL, pad_token_id=0)),
        "self_attn.o_proj",
        "self_attn",
        "mlp",
    ),
}


POST_NORM_FAMILIES = ("gemma2", "gemma3", "olmo2")


def perturbed(model: PreTrainedModel) -> PreTrainedModel:
    """Random init leaves norms at identity (Gemma's at w = 0) and biases at zero: make every
    parameter matter."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def build(name: str) -> PreTrainedModel:
    """The family's tiny model, seeded and perturbed."""
    torch.manual_seed(0)
    return perturbed(NEW_FAMILIES[name].build())


def head_dim(model: PreTrainedModel) -> int:
    config = model.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def block(model: PreTrainedModel, layer: int) -> torch.nn.Module:
    return model.model.layers[layer]  # every family here keeps its blocks at model.layers
