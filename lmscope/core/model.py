"""A loaded model: network, tokenizer, family adapter and card. Every view talks to this object."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapters import Adapter
from .card import ModelCard


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
        """Logits of residual-stream vectors `(..., d)`: final norm, then the unembedding."""
        for path in self.adapter.unembed:
            module = self.adapter.submodule(self.model, path)
            if module is not None:
                residual = module(residual)
        return residual

    def token_text(self, token_id: int) -> str:
        """The text of one vocabulary entry."""
        return self.tokenizer.decode([token_id])
