"""Llama-style models (Llama, Qwen2, Mistral): rotary positions, RMSNorm, grouped-query attention."""

from .base import Adapter

LLAMA = Adapter(
    family="Llama-style",
    model_types=("llama", "qwen2", "mistral"),
    blocks="model.layers",
    attention="self_attn",
    out_proj="self_attn.o_proj",
    mlp="mlp",
    unembed=("model.norm", "lm_head"),
    token_embedding="model.embed_tokens",
    position_embedding=None,
    positional_encoding="rotary (RoPE)",
    normalization="RMSNorm",
    attribution_baseline="mean",
    gated_mlp=True,
)
