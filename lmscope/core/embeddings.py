"""Stage 2, embeddings: a token's vector, and the vocabulary entries whose vectors point the same way.

Computed on request for one token only: the embedding table stays on the server.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .devices import onloaded
from .errors import RequestError
from .model import LoadedModel


@dataclass(frozen=True)
class Neighbor:
    """A vocabulary entry and the cosine similarity of its embedding to the chosen token's."""

    id: int
    text: str
    similarity: float
    display: str  # as the token is shown everywhere (`tokens.token_display`)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "display": self.display,
            "similarity": round(self.similarity, 4),
        }


def embedding_table(lm: LoadedModel) -> torch.Tensor:
    """The token embedding matrix `(vocab, d)`, rows limited to ids the tokenizer knows; read
    inside `devices.onloaded` of the embedding where the model may be offloaded."""
    weight = lm.model.get_submodule(lm.adapter.token_embedding).weight
    return weight[: min(weight.shape[0], len(lm.tokenizer))]


_ROW_NORMS: weakref.WeakKeyDictionary[LoadedModel, torch.Tensor] = weakref.WeakKeyDictionary()


ROWS = 16_384  # embedding rows turned to float32 at a time (Gemma's 262,144 x 640 in bfloat16
# would otherwise be copied whole, 671 MB, on every request)


def _in_float32(table: torch.Tensor, read: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`read` of each block of `ROWS` rows of `table` in float32, joined: a half-precision table
    is never copied whole (a float32 one is not copied at all)."""
    return torch.cat([read(rows.float()) for rows in table.split(ROWS)])


def _row_norms(lm: LoadedModel, table: torch.Tensor) -> torch.Tensor:
    """Each embedding's length, computed once a model (the table does not change)."""
    norms = _ROW_NORMS.get(lm)
    if norms is None or norms.shape[0] != table.shape[0]:
        norms = _ROW_NORMS[lm] = _in_float32(table, lambda rows: rows.norm(dim=-1))
    return norms


def nearest_tokens(lm: LoadedModel, token_id: int, k: int = 10) -> list[Neighbor]:
    """The `k` tokens whose embeddings have the highest cosine similarity to `token_id`'s (itself
    left out): one matrix-vector product over the table, its row lengths kept per model. The
    table is onloaded for it where accelerate offloaded it (then it sits on `meta`)."""
    module = lm.model.get_submodule(lm.adapter.token_embedding)
    with torch.inference_mode(), onloaded(module):
        table = embedding_table(lm)
        if not isinstance(token_id, int) or not 0 <= token_id < table.shape[0]:
            raise RequestError(f"'token_id' must be between 0 and {table.shape[0] - 1}.")
        norms = _row_norms(lm, table)
        vector = table[token_id].float()
        dots = _in_float32(table, lambda rows: rows @ vector)
        similarity = dots / (norms * norms[token_id]).clamp_min(1e-8)
        similarity[token_id] = -torch.inf
        top = similarity.topk(min(k, table.shape[0] - 1))
    return [
        Neighbor(i, lm.token_text(i), s, lm.token_display(i))
        for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
