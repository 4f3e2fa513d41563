"""GPT-Neo: GPT-2's layout with separate q/k/v projections and alternating local attention.

GPT-Neo computes attention in its own `_attn` (unscaled `q k^T`, a causal or local-window mask from
its `bias` buffer) rather than through transformers' AttentionInterface, so `route` points each
layer's `_attn` at lmscope's attention: the fast kernel, its queries and keys kept.
"""

from dataclasses import replace
from functools import partial

import torch
from torch import nn

from .. import attention
from .gpt2 import GPT2


def _attn(module: nn.Module, window: int | None, query, key, value, attention_mask=None):
    """GPT-Neo's `_attn` on sdpa (eager's own while the config asks for eager)."""
    if module.config._attn_implementation == "eager":
        return type(module)._attn(module, query, key, value, attention_mask)
    query, key = query.float(), key.float()  # GPT-Neo scores in float32
    scored = attention.keep(module, query, key, 1.0, window, attention_mask, value)
    if scored is not None:  # made from the pattern that scored the heads
        return scored.to(value.dtype), None
    allowed = None
    if window is not None or attention_mask is not None:
        size = key.shape[-2]
        allowed = module.bias[:, :, size - query.shape[-2] : size, :size]
        if attention_mask is not None:
            if attention_mask.dtype != torch.bool:
                attention_mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
            allowed = allowed & attention_mask
    return attention.causal_sdpa(query, key, value.float(), 1.0, allowed).to(value.dtype), None


def route(model: nn.Module) -> None:
    """Point every layer's `_attn` at `_attn` above (once)."""
    for block in model.transformer.h:
        core = block.attn.attention
        window = model.config.window_size if core.attention_type == "local" else None
        core._attn = partial(_attn, core, window)


GPT_NEO = replace(
    GPT2,
    family="GPT-Neo",
    model_types=("gpt_neo",),
    out_proj="attn.attention.out_proj",
    route_attention=route,
)
