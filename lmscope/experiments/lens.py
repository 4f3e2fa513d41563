"""The logit lens for one target: an experiment's metric read off the residual stream after each
layer at the last position (through the final norm and the unembedding), as the model's own
read-out would give it if the pass stopped there."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.analysis import Analysis
from .metric import Metric, make_metric


@dataclass
class MetricLens:
    """`values[l]`: the metric read off the stream entering layer l (`values[0]`: the embeddings;
    the last: the model's output, the metric itself)."""

    metric: Metric
    values: torch.Tensor  # (layers + 1,)
    notices: list[str]

    def to_dict(self) -> dict:
        return {
            "metric": self.metric.to_dict(),
            "notices": self.notices,
            "values": self.values.round(decimals=6).tolist(),
        }


def metric_lens(
    analysis: Analysis,
    answer: object = None,
    wrong: object = None,
    logits: torch.Tensor | None = None,
) -> MetricLens:
    """log p(answer) (default: the top prediction), or logit(answer) - logit(wrong), after each
    layer, from an analysis's residual stream at the last position; `logits` `(layers + 1,
    vocab)` are that read-out where the caller has it already (`lens_logits` of a batch)."""
    metric, notices = make_metric(analysis.lm, answer, wrong, analysis.logits)
    if logits is None:
        logits = lens_logits([analysis])[0]
    return MetricLens(metric, metric(logits), notices)


def lens_logits(analyses: list[Analysis]) -> torch.Tensor:
    """Every analysis's residual stream at its last position read out after each layer, in one
    product: `(analyses, layers + 1, vocab)`."""
    lm = analyses[0].lm
    with torch.inference_mode():
        streams = torch.stack([a.residual[:, -1] for a in analyses])  # (B, layers + 1, d)
        return lm.unembed(streams).float()
