"""Two models side by side on one prompt: what each predicts, and how its heads specialize by depth.

Depth is normalized, `layer / (layers - 1)` (0 = first layer, 1 = last), so models of different
depth (GPT-2 Small's 12 layers, Medium's 24) can be drawn on one axis.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import jobs
from ..core.analysis import Analysis, analyze
from ..core.budget import check_comparison
from ..core.heads import LABELS
from ..core.model import LoadedModel
from .inputs import prompt_ids

TOP_K = 10


def depths(layers: int) -> list[float]:
    """`layer / (layers - 1)` for each layer; a one-layer model sits at 0."""
    return [layer / (layers - 1) if layers > 1 else 0.0 for layer in range(layers)]


@dataclass
class Comparison:
    """Two analyses of the same prompt."""

    prompt: str
    analyses: tuple[Analysis, Analysis]

    @property
    def same_top_prediction(self) -> bool:
        a, b = (x.top_predictions(1)[0].text for x in self.analyses)
        return a == b

    @staticmethod
    def side(analysis: Analysis) -> dict:
        """One model's column: card, tokens, predictions, head categories per layer by depth."""
        counts = analysis.heads.counts_per_layer()
        heads = analysis.lm.heads
        return {
            "model": analysis.lm.card.to_dict(),
            "notices": analysis.notices,
            "tokens": [t.display for t in analysis.tokens],
            "predictions": [p.to_dict() for p in analysis.top_predictions(TOP_K)],
            "depth": depths(analysis.lm.layers),
            "counts_per_layer": counts,
            "fraction_per_layer": {
                c: [round(n / heads, 4) for n in row] for c, row in counts.items()
            },
            "categories": analysis.heads.categories,
        }

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "models": [self.side(a) for a in self.analyses],
            "same_top_prediction": self.same_top_prediction,
            "labels": LABELS,
        }


def compare(first: LoadedModel, second: LoadedModel, prompt: str) -> Comparison:
    """Analyze the prompt with both models (each one traced forward pass)."""
    check_comparison(
        first, second, (len(prompt_ids(first, prompt)[0]), len(prompt_ids(second, prompt)[0]))
    )
    jobs.report(0, 2, "model")
    one = analyze(first, prompt)
    jobs.report(1, 2, "model")
    return Comparison(prompt, (one, analyze(second, prompt)))
