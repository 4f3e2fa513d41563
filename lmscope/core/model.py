"""A loaded model: network, tokenizer, family adapter and card. Every view talks to this object."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapters import Adapter
from .card import ModelCard
from .devices import onloaded
from .tokens import token_display

SLOW_ROWS = range(5, 16)  # row counts for which BLAS runs x @ W^T slowly on a wide read-out


def read_out(head: torch.nn.Linear, rows: torch.Tensor) -> torch.Tensor:
    """`head(rows)` for a read-out as wide as a vocabulary. On CPU, BLAS takes x @ W^T two to
    three times longer for 5 to 15 rows than for 16 (a logit lens is 13 rows on GPT-2 Small);
    for those it computes (W @ x^T)^T, which stays fast (benchmarks/results/unembed.md)."""
    flat = rows.reshape(-1, rows.shape[-1])
    if flat.shape[0] not in SLOW_ROWS or rows.device.type != "cpu":
        return head(rows)
    with onloaded(head):  # the weight is read directly: onload it where accelerate offloaded it
        weight = head.weight
        out = (weight @ flat.to(weight.device).T).T
        if head.bias is not None:
            out = out + head.bias
    return out.contiguous().reshape(*rows.shape[:-1], -1).to(rows.device)


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
    # Where the input goes and the analyses stay: the device of a one-piece model, the execution
    # device of the token embedding for a model spread by a device map (core/devices.py).
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def layers(self) -> int:
        return self.card.layers

    @property
    def heads(self) -> int:
        return self.card.heads_per_layer

    @property
    def dtype(self) -> torch.dtype:
        """What the model computes in (its weights' dtype)."""
        return next(self.model.parameters()).dtype

    def zeros(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Zeros on the model's device, in its dtype unless `dtype` says otherwise."""
        return torch.zeros(*shape, dtype=dtype or self.dtype, device=self.device)

    def ids(self, ids: list | torch.Tensor) -> torch.Tensor:
        """Token ids as a long tensor on the model's input device."""
        return torch.as_tensor(ids, dtype=torch.long).to(self.device)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits of residual-stream vectors `(..., d)`: final norm, the unembedding, then the
        soft-cap `c * tanh(logit / c)` where the model caps its logits (Gemma 2). In the model's
        dtype, on the device of `residual`."""
        device, residual = residual.device, residual.to(self.dtype)
        for path in self.adapter.unembed:
            module = self.adapter.submodule(self.model, path)
            if type(module) is torch.nn.Linear:
                residual = read_out(module, residual)
            elif module is not None:
                residual = module(residual)
        return soft_cap(residual, self.card.final_softcap).to(device)

    def attention_writes(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """What layer `layer`'s attention adds to the stream, from its heads' outputs `z`
        `(..., heads * d_head)`: the output projection, then the norm after the sublayer where
        the family has one (`Adapter.attn_out_norm`)."""
        block = self.adapter.block_list(self.model)[layer]
        out = block.get_submodule(self.adapter.out_proj)(z.to(self.dtype))
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
