"""GPT-NeoX (Pythia): rotary positions, fused QKV, attention and MLP in parallel off one residual."""

from .base import Adapter

GPT_NEOX = Adapter(
    family="GPT-NeoX",
    model_types=("gpt_neox",),
    blocks="gpt_neox.layers",
    attention="attention",
    out_proj="attention.dense",
    mlp="mlp",
    unembed=("gpt_neox.final_layer_norm", "lm_head"),  # transformers 5 names embed_out lm_head
    token_embedding="gpt_neox.embed_in",
    position_embedding=None,
    positional_encoding="rotary (RoPE)",
    rotary=True,
    normalization="LayerNorm",
    attribution_baseline="mean",
)
