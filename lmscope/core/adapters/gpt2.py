"""GPT-2: learned absolute positions, LayerNorm before each sublayer, fused QKV (`c_attn`)."""

from .base import Adapter

GPT2 = Adapter(
    family="GPT-2",
    model_types=("gpt2",),
    blocks="transformer.h",
    attention="attn",
    out_proj="attn.c_proj",
    mlp="mlp",
    unembed=("transformer.ln_f", "lm_head"),
    token_embedding="transformer.wte",
    position_embedding="transformer.wpe",
    positional_encoding="learned absolute",
    normalization="LayerNorm",
)
