"""What differs between model families, in one place: where each part of the network lives.

An adapter names modules by their dotted path. Every hook, ablation and lens in lmscope goes through
these paths, so supporting a new family means writing one small adapter, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Adapter:
    """Module paths and facts of one model family.

    `attention` returns `(attn_out, ...)` and holds the module attention runs in; `out_proj` receives
    the heads' concatenated outputs `(B, T, n_heads * d_head)`; `mlp` returns the MLP's output.
    Where a norm sits between a sublayer and the stream (`attn_out_norm`, `mlp_out_norm`: Gemma 2
    and 3, OLMo 2), what the sublayer adds to the stream is that norm's output, and every view
    reads it there. Config keys name what the config says: soft-capping (`attention_softcap`,
    `final_softcap`: `c * tanh(x / c)` on attention scores, on the logits).
    """

    family: str
    model_types: tuple[str, ...]
    blocks: str
    attention: str
    out_proj: str
    mlp: str
    unembed: tuple[str, ...]  # applied in order to a residual vector to give logits
    token_embedding: str
    position_embedding: str | None
    positional_encoding: str
    normalization: str
    rotary: bool = False  # positions enter by rotating queries and keys (RoPE)
    # Integrated gradients' baseline token embedding: "zero", or "mean" (the vocabulary's mean
    # embedding) where no position vector is added and the first norm would make f(alpha * x)
    # jump near alpha = 0 (see experiments/attribution.py).
    attribution_baseline: str = "zero"
    gated_mlp: bool = False  # down(act(gate(x)) * up(x)) rather than down(act(up(x)))
    attn_out_norm: str | None = None  # inside a block: a norm on attention's output (post-norm)
    mlp_out_norm: str | None = None  # inside a block: a norm on the MLP's output (post-norm)
    # Inside a block: the norms on queries and keys before rotary (Qwen3, Gemma 3, OLMo 2), each
    # head's vector on its own ("head") or all heads' concatenation at once ("all": OLMo 2).
    q_norm: str | None = None
    k_norm: str | None = None
    qk_norm_span: str = "head"
    attention_softcap: str | None = None  # config key: attention scores soft-capped at this value
    final_softcap: str | None = None  # config key: the logits soft-capped at this value
    # For a family whose attention does not call transformers' AttentionInterface: routes each
    # layer's attention through lmscope's (core/attention.py) on a loaded model.
    route_attention: Callable[[nn.Module], None] | None = None

    def block_list(self, model: nn.Module) -> list[nn.Module]:
        """The transformer blocks, in order."""
        return list(model.get_submodule(self.blocks))

    def submodule(self, model: nn.Module, path: str) -> nn.Module | None:
        """The module at `path`, or None where this model has none (e.g. OPT-350m's final norm)."""
        try:
            return model.get_submodule(path)
        except AttributeError:
            return None
