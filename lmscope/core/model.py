"""A loaded model: network, tokenizer, family adapter and card. Every view talks to this object."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapters import Adapter
from .card import ModelCard
from .tokens import token_display

SLOW_ROWS = range(5, 16)  # row counts for which BLAS runs x @ W^T slowly on a wide read-out


def read_out(head: torch.nn.Linear, rows: torch.Tensor) -> torch.Tensor:
    """`head(rows)` for a read-out as wide as a vocabulary. On CPU, BLAS takes x @ W^T two to
    three times longer for 5 to 15 rows than for 16 (a logit lens is 13 rows on GPT-2 Small);
    for those it computes (W @ x^T)^T, which stays fast (benchmarks/results/unembed.md)."""
    flat = rows.reshape(-1, rows.shape[-1])
    if flat.shape[0] not in SLOW_ROWS:
        return head(rows)
    out = (head.weight @ flat.T).T
    if head.bias is not None:
        out = out + head.bias
    return out.contiguous().reshape(*rows.shape[:-1], -1)


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """`cap * tanh(logits / cap)`, as a model that soft-caps computes it; `logits` where no cap."""
    return logits if cap is None else torch.tanh(logits / cap) * cap


@dataclass(eq=False)
class LoadedModel:
    """The backend of one model; architecture differences stay behind `adapter`."""

    model_id: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    card: ModelCard
    revision: str
    nbytes: int = field(default=0)

    @property
    def layers(self) -> int:
        return self.card.layers

    @property
    def heads(self) -> int:
        return self.card.heads_per_layer

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits of residual-stream vectors `(..., d)`: final norm, the unembedding, then the
        soft-cap `c * tanh(logit / c)` where the model caps its logits (Gemma 2)."""
        for path in self.adapter.unembed:
            module = self.adapter.submodule(self.model, path)
            if type(module) is torch.nn.Linear:
                residual = read_out(module, residual)
            elif module is not None:
                residual = module(residual)
        return soft_cap(residual, self.card.final_softcap)

    def attention_writes(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """What layer `layer`'s attention adds to the stream, from its heads' outputs `z`
        `(..., heads * d_head)`: the output projection, then the norm after the sublayer where
        the family has one (`Adapter.attn_out_norm`)."""
        block = self.adapter.block_list(self.model)[layer]
        out = block.get_submodule(self.adapter.out_proj)(z)
        norm = self.adapter.attn_out_norm
        return out if norm is None else block.get_submodule(norm)(out)

    def warnings(self) -> list[str]:
        """What every front-end must show beside this model's numbers: a failed parity check."""
        return [self.card.parity] if self.card.parity_ok is False else []

    def token_text(self, token_id: int) -> str:
        """The text of one vocabulary entry."""
        return self.tokenizer.decode([token_id])

    def token_display(self, token_id: int) -> str:
        """How one vocabulary entry is shown: its own bytes, split characters as <0xNN>."""
        return token_display(self.tokenizer, token_id)
