"""GPT-Neo: GPT-2's layout with separate q/k/v projections and alternating local attention."""

from dataclasses import replace

from .gpt2 import GPT2

GPT_NEO = replace(
    GPT2, family="GPT-Neo", model_types=("gpt_neo",), out_proj="attn.attention.out_proj"
)
