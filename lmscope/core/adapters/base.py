"""What differs between model families, in one place: where each part of the network lives.

An adapter names modules by their dotted path. Every hook, ablation and lens in lmscope goes through
these paths, so supporting a new family means writing one small adapter, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Adapter:
    """Module paths and facts of one model family.

    `attention` must return `(attn_out, pattern)` with the eager implementation; `out_proj` receives
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

    def block_list(self, model: nn.Module) -> list[nn.Module]:
        """The transformer blocks, in order."""
        return list(model.get_submodule(self.blocks))

    def submodule(self, model: nn.Module, path: str) -> nn.Module | None:
        """The module at `path`, or None where this model has none (e.g. OPT-350m's final norm)."""
        try:
            return model.get_submodule(path)
        except AttributeError:
            return None
