"""Qwen3: Llama's layout with an RMSNorm on each head's query and key before rotary."""

from dataclasses import replace

from .llama import LLAMA

QWEN3 = replace(
    LLAMA,
    family="Qwen3",
    model_types=("qwen3",),
    q_norm="self_attn.q_norm",
    k_norm="self_attn.k_norm",
)
