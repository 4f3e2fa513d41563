"""OLMo 2: Llama's module names, but the norms come AFTER each sublayer (none before), and one
RMSNorm spans all heads' queries (and one all keys) before rotary."""

from dataclasses import replace

from .llama import LLAMA

OLMO2 = replace(
    LLAMA,
    family="OLMo 2",
    model_types=("olmo2",),
    attn_out_norm="post_attention_layernorm",
    mlp_out_norm="post_feedforward_layernorm",
    q_norm="self_attn.q_norm",
    k_norm="self_attn.k_norm",
    qk_norm_span="all",
)
