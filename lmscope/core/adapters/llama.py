"""Llama-style models (Llama 1-3, Qwen2, Mistral): rotary positions, RMSNorm, grouped-query attention.

Llama 3's rope scaling (`rope_parameters["rope_type"] == "llama3"`) lives in the rotary embedding
module, which computes the angles every layer receives; nothing here depends on it.
"""

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
    rotary=True,
    normalization="RMSNorm",
    attribution_baseline="mean",
    gated_mlp=True,
)
