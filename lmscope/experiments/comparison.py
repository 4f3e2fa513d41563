"""Two models side by side on one prompt: what each predicts, and how its heads specialize by depth.

Depth is normalized, `layer / (layers - 1)` (0 = first layer, 1 = last), so models of different
depth (GPT-2 Small's 12 layers, Medium's 24) can be drawn on one axis.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import jobs
from ..core.analysis import Analysis, analyze
from ..core.budget import check_comparison
from ..core.heads import LABELS, HeadReport
from ..core.model import LoadedModel
from ..core.profile import head_profile
from .inputs import prompt_ids

TOP_K = 10


def depths(layers: int) -> list[float]:
    """`layer / (layers - 1)` for each layer; a one-layer model sits at 0."""
    return [layer / (layers - 1) if layers > 1 else 0.0 for layer in range(layers)]


def by_layer(report: HeadReport, heads: int) -> dict:
    """Per layer: how many heads of each category, their share of the layer, how many park half
    their attention or more on the first token, and the layer's mean sink share."""
    counts = report.counts_per_layer()
    return {
        "counts_per_layer": counts,
        "fraction_per_layer": {c: [round(n / heads, 4) for n in row] for c, row in counts.items()},
        "first_token_per_layer": report.first_token_counts(),
        "sink_per_layer": [None if s is None else round(s, 4) for s in report.sink_per_layer()],
    }


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
        """One model's column: card, tokens, predictions, and per layer by depth its heads'
        categories, first-token heads and sink share, on this prompt and (`profile`) on the
        model's probe set, what its heads do in general (`core.profile`)."""
        lm = analysis.lm
        return {
            "model": lm.card.to_dict(),
            "warnings": lm.warnings(),
            "notices": analysis.notices,
            "tokens": [t.display for t in analysis.tokens],
            "predictions": [p.to_dict() for p in analysis.top_predictions(TOP_K)],
            "depth": depths(lm.layers),
            **by_layer(analysis.heads, lm.heads),
            "categories": analysis.heads.categories,
            "profile": by_layer(head_profile(lm), lm.heads),
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
    jobs.report(0, 4, "step")
    one = analyze(first, prompt)
    jobs.report(1, 4, "step")
    two = analyze(second, prompt)
    for done, lm in enumerate((first, second), start=2):  # measured once per model, then cached
        jobs.report(done, 4, "step")
        head_profile(lm)
    return Comparison(prompt, (one, two))
