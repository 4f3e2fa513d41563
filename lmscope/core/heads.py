"""Stage 3, what each attention head does: scores on a pattern, and a category per head.

All scores are pure functions of attention patterns `A` of shape `(..., T, T)` (rows are query
positions, each row sums to 1 over keys j <= i) and the token ids. Every score is a mean over query
positions of the attention mass a head puts where a category says it should look, so each lies in
[0, 1] and 1 means the head does exactly that. Query position 0 is left out of the positional scores:
it can only attend to itself, so it says nothing about the head.

| score | formula (mean over the query positions i it is defined on) | defined on |
|---|---|---|
| previous_token | A[i, i-1] | i >= 1 |
| first_token | A[i, 0] (the attention sink) | i >= 1 |
| self | A[i, i] | i >= 1 |
| diffuse | entropy(A[i, :i+1]) / log(i+1): 1 = uniform over the prefix (bag of words) | i >= 1 |
| duplicate_token | sum of A[i, j] over earlier j with token[j] == token[i] | i whose token occurred before |
| induction | sum of A[i, j+1] over earlier j with token[j] == token[i], j+1 < i | i whose token occurred before, not just at i-1 |

Duplicate-token and induction scores exist only where the prompt repeats a token; elsewhere they are
NaN, reported as "not applicable on this input", never as zero evidence. See docs/head-scores.md for
the thresholds and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Category = Literal[
    "previous_token", "first_token", "self", "diffuse", "duplicate_token", "induction", "other"
]
SCORES: tuple[Category, ...] = (
    "previous_token",
    "first_token",
    "self",
    "diffuse",
    "duplicate_token",
    "induction",
)
LABELS: dict[Category, str] = {
    "previous_token": "previous-token",
    "first_token": "first-token / positional",
    "self": "self / current-token",
    "diffuse": "bag-of-words / diffuse",
    "duplicate_token": "duplicate-token",
    "induction": "induction",
    "other": "other",
}
# A head belongs to a category when its score reaches the threshold (docs/head-scores.md says why).
THRESHOLDS: dict[Category, float] = {
    "previous_token": 0.4,
    "first_token": 0.5,
    "self": 0.4,
    "diffuse": 0.85,
    "duplicate_token": 0.4,
    "induction": 0.4,
}
# Specific behaviours win over generic ones when a head passes several thresholds.
_SPECIFIC: tuple[Category, ...] = ("induction", "duplicate_token", "previous_token", "self")
_GENERIC: tuple[Category, ...] = ("first_token", "diffuse")


def _masked_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis where `rows` is True; NaN where no row counts."""
    rows = rows.to(values.dtype)
    count = rows.sum(-1)
    total = (values * rows).sum(-1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def repeat_masks(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean `(..., T, T)` masks: earlier same token (duplicate) and the token after it (induction)."""
    same = ids.unsqueeze(-1) == ids.unsqueeze(-2)
    earlier = torch.ones(same.shape[-2:], dtype=torch.bool, device=ids.device).tril(-1)
    duplicate = same & earlier
    induction = torch.zeros_like(duplicate)
    induction[..., 1:] = duplicate[..., :-1]
    return duplicate, induction & earlier


def score_heads(pattern: torch.Tensor, ids: torch.Tensor) -> dict[Category, torch.Tensor]:
    """Every score for every head at once.

    pattern: `(..., T, T)`, e.g. `(layers, heads, T, T)`, or `(batch, layers, heads, T, T)` with ids
    `(batch, T)`. Returns each score with the pattern's leading shape; NaN where undefined.
    """
    pattern = pattern.float()
    size = pattern.shape[-1]
    ids = ids.reshape(ids.shape[:-1] + (1,) * (pattern.dim() - 1 - ids.dim()) + ids.shape[-1:])
    later = torch.arange(size, device=pattern.device) >= 1
    diag = pattern.diagonal(dim1=-2, dim2=-1)
    previous = torch.nn.functional.pad(pattern.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0))
    log_prefix = torch.arange(1, size + 1, device=pattern.device, dtype=pattern.dtype).log()
    entropy = torch.special.entr(pattern).sum(-1)
    duplicate, induction = repeat_masks(ids)
    return {
        "previous_token": _masked_mean(previous, later),
        "first_token": _masked_mean(pattern[..., 0], later),
        "self": _masked_mean(diag, later),
        "diffuse": _masked_mean(entropy / log_prefix.clamp_min(1e-12), later),
        "duplicate_token": _mass_on(pattern, duplicate),
        "induction": _mass_on(pattern, induction),
    }


def _mass_on(pattern: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows with any target of the attention mass on the targets; NaN if none has one."""
    rows = targets.any(-1)
    if not rows.any():
        return torch.full(pattern.shape[:-2], torch.nan)
    return _masked_mean((pattern * targets).sum(-1), rows)


def primary_category(scores: dict[Category, float]) -> Category:
    """The category a head is filed under: the strongest specific behaviour, else a generic one."""
    for group in (_SPECIFIC, _GENERIC):
        passing = [c for c in group if scores[c] == scores[c] and scores[c] >= THRESHOLDS[c]]
        if passing:
            return max(passing, key=lambda c: scores[c] / THRESHOLDS[c])
    return "other"


def head_name(layer: int, head: int) -> str:
    """The name a user reads: `L4-H11`."""
    return f"L{layer}-H{head}"


@dataclass(frozen=True)
class HeadReport:
    """Scores and categories of every head on one input: `scores[name][layer][head]`, NaN = n/a."""

    scores: dict[Category, list[list[float]]]
    categories: list[list[Category]]

    @classmethod
    def from_pattern(cls, pattern: torch.Tensor, ids: torch.Tensor) -> HeadReport:
        """Score a `(layers, heads, T, T)` pattern, or average a batch `(B, layers, heads, T, T)`."""
        scores = score_heads(pattern, ids)
        if pattern.dim() == 5:
            scores = {k: v.nanmean(0) for k, v in scores.items()}
        return cls.from_scores({k: v.tolist() for k, v in scores.items()})

    @classmethod
    def from_scores(cls, scores: dict[Category, list[list[float]]]) -> HeadReport:
        layers, heads = len(scores["self"]), len(scores["self"][0])
        categories = [
            [primary_category({k: scores[k][l][h] for k in SCORES}) for h in range(heads)]
            for l in range(layers)
        ]
        return cls(scores, categories)

    def applicable(self, score: Category) -> bool:
        """False when the input gave this score nothing to measure (no repeated tokens)."""
        return any(v == v for row in self.scores[score] for v in row)

    def active(self, layer: int, head: int, category: Category) -> bool:
        """Whether the head shows this behaviour on this input (its score reaches the threshold)."""
        if category == "other":
            return self.categories[layer][head] == "other"
        value = self.scores[category][layer][head]
        return value == value and value >= THRESHOLDS[category]

    def summary(self) -> dict[Category, list[str]]:
        """Per category, its heads as `L4-H11`, strongest first."""
        members: dict[Category, list[tuple[float, str]]] = {c: [] for c in (*SCORES, "other")}
        for layer, row in enumerate(self.categories):
            for head, category in enumerate(row):
                strength = self.scores[category][layer][head] if category != "other" else 0.0
                members[category].append((-strength, head_name(layer, head)))
        return {c: [name for _, name in sorted(m)] for c, m in members.items()}

    def counts_per_layer(self) -> dict[Category, list[int]]:
        """How many heads of each category each layer holds."""
        counts = {c: [0] * len(self.categories) for c in (*SCORES, "other")}
        for layer, row in enumerate(self.categories):
            for category in row:
                counts[category][layer] += 1
        return counts

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes null (not applicable)."""
        clean = {
            k: [[None if v != v else round(v, 4) for v in row] for row in rows]
            for k, rows in self.scores.items()
        }
        return {
            "scores": clean,
            "categories": self.categories,
            "applicable": {k: self.applicable(k) for k in SCORES},
            "summary": self.summary(),
            "counts_per_layer": self.counts_per_layer(),
            "labels": LABELS,
            "thresholds": THRESHOLDS,
        }
