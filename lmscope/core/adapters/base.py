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
    the heads' concatenated outputs `(B, T, n_heads * d_head)`; `mlp` returns the MLP's contribution.
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
    # Integrated gradients' baseline token embedding: "zero", or "mean" (the vocabulary's mean
    # embedding) where no position vector is added and the first norm would make f(alpha * x)
    # jump near alpha = 0 (see experiments/attribution.py).
    attribution_baseline: str = "zero"
    gated_mlp: bool = False  # down(act(gate(x)) * up(x)) rather than down(act(up(x)))
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
