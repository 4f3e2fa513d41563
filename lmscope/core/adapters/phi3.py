"""Phi-3: Llama's layout with fused projections: one `qkv_proj` for queries, keys and values and
one `gate_up_proj` for the MLP's gate and up. lmscope reads attention at its output projection's
input and at the attention function (queries and keys as used), never at the projections, so the
fusion changes nothing it records."""

from dataclasses import replace

from .llama import LLAMA

PHI3 = replace(LLAMA, family="Phi-3", model_types=("phi3",))
