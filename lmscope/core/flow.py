"""The pass on one screen: what the followed token goes through, part by part, with this prompt's
own numbers, and the rows of attention a line view draws for one hovered token.

`flow` reads one position of an `Analysis`: the embedding, then for each layer the length of the
residual stream entering it, of what its attention and its MLP added, of the stream leaving it,
and the logit lens's guess there; then the final norm, the unembedding and the top predictions.
Its size grows with layers, not tokens. `head_lines` rebuilds one query row per head
(`Analysis.layer_patterns`), never a T x T pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .analysis import Analysis, Prediction
from .model import LoadedModel

TOP = 5  # predictions in the flow
LINE_WINDOW = 48  # tokens a line view shows at once (the sink, token 0, pinned above them)
LINE_FLOOR = 0.02  # a line view draws the weights at least this large


@dataclass(frozen=True)
class LayerStep:
    """One layer at the followed position: lengths (L2 norms) of the stream and of the writes."""

    layer: int
    stream_in: float  # the residual stream entering the layer
    attention: float  # what the layer's attention added to it
    mlp: float  # what the layer's MLP added to it
    stream_out: float  # the stream leaving the layer: stream_in + attention + mlp, as vectors
    lens: Prediction  # the logit lens's top guess read off the stream leaving the layer

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "stream_in": round(self.stream_in, 4),
            "attention": round(self.attention, 4),
            "mlp": round(self.mlp, 4),
            "stream_out": round(self.stream_out, 4),
            "lens": self.lens.to_dict(),
        }


@dataclass(frozen=True)
class Flow:
    """The followed token's way through the model: its numbers and the design it goes through
    (read from the model card's facts, never from a family's name)."""

    position: int
    tokens: int
    token: str  # the followed token as shown (`Token.display`)
    token_id: int
    token_embedding: float  # length of the token's embedding row (as the embedding module gives it)
    position_embedding: float | None  # length of the learned position vector; None: no such vector
    stream_start: float  # length of the stream entering layer 0 (what the embeddings sum to)
    embedding_lens: Prediction  # the logit lens read off the embeddings alone
    layers: list[LayerStep]
    final_in: float  # the stream's length entering the final norm
    final_out: float  # its length after the final norm: what the unembedding reads
    predictions: list[Prediction]
    design: dict  # rotary, gated_mlp, post_norms, tied_embeddings, ... (see `design_of`)

    @property
    def settled_layer(self) -> int | None:
        """The first layer after which the logit lens's guess is the model's answer at every
        later layer (the last layer's guess is the model's own output)."""
        settled = None
        for step in reversed(self.layers):
            if step.lens.id != self.predictions[0].id:
                break
            settled = step.layer
        return settled

    @property
    def largest_write(self) -> tuple[str, int, float]:
        """The longest vector any sublayer added here: ("attention" or "MLP", layer, length)."""
        writes = [("attention", s.layer, s.attention) for s in self.layers]
        writes += [("MLP", s.layer, s.mlp) for s in self.layers]
        return max(writes, key=lambda write: write[2])

    def to_dict(self) -> dict:
        part, layer, length = self.largest_write
        return {
            "position": self.position,
            "tokens": self.tokens,
            "token": self.token,
            "token_id": self.token_id,
            "token_embedding": round(self.token_embedding, 4),
            "position_embedding": None
            if self.position_embedding is None
            else round(self.position_embedding, 4),
            "stream_start": round(self.stream_start, 4),
            "embedding_lens": self.embedding_lens.to_dict(),
            "layers": [step.to_dict() for step in self.layers],
            "final_in": round(self.final_in, 4),
            "final_out": round(self.final_out, 4),
            "predictions": [p.to_dict() for p in self.predictions],
            "settled_layer": self.settled_layer,
            "largest_write": {"part": part, "layer": layer, "length": round(length, 4)},
            "design": self.design,
        }


def design_of(lm: LoadedModel) -> dict:
    """The facts of the model card the flow draws: how positions enter, the norm, the MLP's
    kind, norms after sublayers, soft-caps, tied read-out."""
    card = lm.card
    return {
        "rotary": card.rotary,
        "learned_positions": lm.adapter.position_embedding is not None,
        "positional_encoding": card.positional_encoding,
        "normalization": card.normalization,
        "gated_mlp": card.gated_mlp,
        "activation": card.activation,
        "post_norms": card.post_norms,
        "qk_norm": card.qk_norm,
        "tied_embeddings": card.tied_embeddings,
        "embedding_scale": card.embedding_scale,
        "final_softcap": card.final_softcap,
        "heads": card.heads_per_layer,
        "layers": card.layers,
        "hidden_size": card.hidden_size,
        "mlp_size": card.mlp_size,
        "vocab_size": card.vocab_size,
    }


def final_normed(lm: LoadedModel, residual: torch.Tensor) -> torch.Tensor:
    """What the read-out matrix reads: the stream through the model's unembedding path up to its
    first linear map (the final norm, where the model has one)."""
    for path in lm.adapter.unembed:
        module = lm.adapter.submodule(lm.model, path)
        if type(module) is torch.nn.Linear:
            break
        if module is not None:
            residual = module(residual)
    return residual


def flow(analysis: Analysis, position: int | None = None, k: int = TOP) -> Flow:
    """The flow at `position` (default: the last token), from the analysis's own tensors."""
    count = len(analysis.tokens)
    position = count - 1 if position is None else position % count
    stream = analysis.residual[:, position]  # (layers + 1, d)
    lengths = stream.norm(dim=-1).tolist()
    lens = analysis.logit_lens(position, 1)
    with torch.inference_mode():
        normed = final_normed(analysis.lm, stream[-1])
    pos = analysis.position_embeddings
    steps = [
        LayerStep(
            layer,
            lengths[layer],
            float(analysis.attn_norms[layer, position]),
            float(analysis.mlp_norms[layer, position]),
            lengths[layer + 1],
            lens[layer + 1][0],
        )
        for layer in range(len(analysis.keys))
    ]
    token = analysis.tokens[position]
    return Flow(
        position=position,
        tokens=count,
        token=token.display,
        token_id=token.id,
        token_embedding=float(analysis.token_embeddings[position].norm()),
        position_embedding=None if pos is None else float(pos[position].norm()),
        stream_start=lengths[0],
        embedding_lens=lens[0][0],
        layers=steps,
        final_in=lengths[-1],
        final_out=float(normed.float().norm()),
        predictions=analysis.top_predictions(k, position),
        design=design_of(analysis.lm),
    )


def line_window(tokens: int, end: int, size: int = LINE_WINDOW) -> list[int]:
    """The positions a line view shows: the `size` tokens up to `end` (inclusive), with token 0
    (where many heads park their attention: the sink) pinned first when it falls outside."""
    end = min(max(end, 0), tokens - 1)
    start = max(0, end + 1 - size)
    return ([0] if start > 0 else []) + list(range(start, end + 1))


@dataclass(frozen=True)
class HeadLines:
    """Where one head reads from for one query token: the shown keys it weighs at least the
    floor (key positions, weights), and the weight it puts on keys the view does not show."""

    head: int
    keys: list[int]
    weights: list[float]
    elsewhere: float

    def to_dict(self) -> dict:
        return {
            "head": self.head,
            "keys": self.keys,
            "weights": [round(w, 4) for w in self.weights],
            "elsewhere": round(self.elsewhere, 4),
        }


def head_lines(
    analysis: Analysis,
    layer: int,
    position: int,
    heads: Sequence[int],
    shown: Sequence[int],
    floor: float = LINE_FLOOR,
) -> list[HeadLines]:
    """For query `position` in `layer`, each of `heads`' weights on the keys in `shown` that are
    at least `floor`, rebuilt as one row per head (`Analysis.layer_patterns`)."""
    rows = analysis.layer_patterns(layer, slice(position, position + 1))[:, 0]  # (heads, T)
    keys = torch.tensor([k for k in shown if k <= position], dtype=torch.long)
    out = []
    for head in heads:
        row = rows[head]
        weights = row[keys]
        kept = weights >= floor
        out.append(
            HeadLines(
                head,
                keys[kept].tolist(),
                weights[kept].tolist(),
                float(row.sum() - weights.sum()),
            )
        )
    return out
