"""GPT-Neo: GPT-2's layout with separate q/k/v projections and alternating local attention."""

from .base import Adapter

GPT_NEO = Adapter(
    family="GPT-Neo",
    model_types=("gpt_neo",),
    blocks="transformer.h",
    attention="attn",
    out_proj="attn.attention.out_proj",
    mlp="mlp",
    unembed=("transformer.ln_f", "lm_head"),
    token_embedding="transformer.wte",
    position_embedding="transformer.wpe",
    positional_encoding="learned absolute",
    normalization="LayerNorm",
)
