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
NaN, reported as "not applicable on this input", never as zero evidence.

A head is filed under a category when its score reaches the category's threshold AND is at least
`CHANCE_MULTIPLE` times the chance level: the same score of uniform attention on the same tokens
(on a 3-token prompt uniform attention already scores 0.42 as a previous-token head). See
docs/head-scores.md for the thresholds and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
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
POSITIONAL: tuple[Category, ...] = ("previous_token", "first_token", "self", "diffuse")
REPEAT: tuple[Category, ...] = ("duplicate_token", "induction")
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
# ... and is at least this many times what uniform attention scores on the same tokens (not for
# diffuse, whose chance level is the uniform pattern itself).
CHANCE_MULTIPLE = 2.0
# Specific behaviours win over generic ones when a head passes several thresholds.
_SPECIFIC: tuple[Category, ...] = ("induction", "duplicate_token", "previous_token", "self")
_GENERIC: tuple[Category, ...] = ("first_token", "diffuse")
_CHUNK = 1 << 22  # elements per entropy chunk (16 MB): bounded temporaries, few tensor ops


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


def row_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """Entropy `-sum_j A[i,j] log A[i,j]` over `j <= i` of every row of a causal `(..., T, T)` pattern.

    Computed in chunks of ~16 MB (whole heads), and on long prompts only up to each row block's
    last key (the rest of a causal row is zero): the one step whose cost grows as T^2 per head.
    """
    size = pattern.shape[-1]
    flat = pattern.reshape(-1, size, size)
    step = max(1, _CHUNK // (size * size))
    blocks = 4 if size >= 256 else 1
    edges = [size * k // blocks for k in range(blocks + 1)]
    out = flat.new_empty(flat.shape[:-1])
    for start in range(0, flat.shape[0], step):
        for lo, hi in pairwise(edges):
            rows = flat[start : start + step, lo:hi, :hi]
            out[start : start + step, lo:hi] = -rows.clamp_min(1e-30).log_().mul_(rows).sum(-1)
    return out.reshape(pattern.shape[:-1])


def _mass_on(pattern: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows with a target of the attention mass on the targets; NaN if no row has one.

    pattern `(N, M, T, T)`, targets `(N, T, T)`: only the target entries are read (they are few),
    head by head in memory order; the loop is over the N id rows of a batch only.
    """
    items, heads, size = pattern.shape[0], pattern.shape[1], pattern.shape[-1]
    mass = pattern.new_zeros(items, heads, size)
    for item in range(items):
        rows, keys = targets[item].nonzero(as_tuple=True)
        values = pattern[item].reshape(heads, -1).index_select(1, rows * size + keys)
        mass[item].index_add_(1, rows, values)
    return _masked_mean(mass, targets.any(-1).unsqueeze(1))


def score_heads(pattern: torch.Tensor, ids: torch.Tensor) -> dict[Category, torch.Tensor]:
    """Every score for every head at once.

    pattern: `(..., T, T)`, e.g. `(layers, heads, T, T)` with ids `(T,)`, or
    `(batch, layers, heads, T, T)` with ids `(batch, T)` (or `(T,)`, shared by the batch). Returns
    each score with the pattern's leading shape; NaN where undefined.
    """
    size = pattern.shape[-1]
    lead = pattern.shape[:-2]
    ids = ids.reshape(-1, size).to(pattern.device)
    flat = pattern.float().reshape(ids.shape[0], -1, size, size)  # (N, M, T, T): N ids rows
    later = torch.arange(size, device=pattern.device) >= 1
    log_prefix = torch.arange(1, size + 1, device=pattern.device, dtype=flat.dtype).log()
    duplicate, induction = repeat_masks(ids)
    scores: dict[Category, torch.Tensor] = {
        "previous_token": _masked_mean(
            torch.nn.functional.pad(flat.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0)), later
        ),
        "first_token": _masked_mean(flat[..., 0], later),
        "self": _masked_mean(flat.diagonal(dim1=-2, dim2=-1), later),
        "diffuse": _masked_mean(row_entropy(flat) / log_prefix.clamp_min(1e-12), later),
        "duplicate_token": _mass_on(flat, duplicate),
        "induction": _mass_on(flat, induction),
    }
    return {k: v.reshape(lead) for k, v in scores.items()}


def chance_scores(ids: torch.Tensor) -> dict[Category, float]:
    """Each score of uniform causal attention (`A[i, j] = 1/(i+1)`) on these ids: the chance level."""
    size = ids.shape[-1]
    uniform = torch.ones(size, size).tril() / torch.arange(1, size + 1).unsqueeze(-1)
    scores = score_heads(uniform.expand(*ids.shape[:-1], size, size), ids)
    return {k: float(v.float().nanmean()) for k, v in scores.items()}


def passes(category: Category, score: float, chance: float | None = None) -> bool:
    """Whether a score files a head under `category`: threshold reached, well above chance."""
    if score != score or score < THRESHOLDS[category]:
        return False
    return category == "diffuse" or chance is None or score >= CHANCE_MULTIPLE * chance


def primary_category(
    scores: dict[Category, float], chance: dict[Category, float] | None = None
) -> Category:
    """The category a head is filed under: the strongest specific behaviour, else a generic one.

    Within a group the score furthest above its threshold (score / threshold) wins.
    """
    chance = chance or {}
    for group in (_SPECIFIC, _GENERIC):
        passing = [c for c in group if passes(c, scores[c], chance.get(c))]
        if passing:
            return max(passing, key=lambda c: scores[c] / THRESHOLDS[c])
    return "other"


def head_name(layer: int, head: int) -> str:
    """The name a user reads: `L4-H11`."""
    return f"L{layer}-H{head}"


def depth_bin(layer: int, layers: int, bins: int = 5) -> int:
    """Which of `bins` equal slices of relative depth a layer's middle, `(layer + 0.5) / layers`,
    falls in: comparable across models of different depth (GPT-2 Small vs Medium)."""
    return min(bins - 1, int((layer + 0.5) / layers * bins))


@dataclass(frozen=True)
class HeadReport:
    """Scores and categories of every head on one input: `scores[name][layer][head]`, NaN = n/a.

    `chance[name]` is what uniform attention scores on the same input (see `chance_scores`).
    """

    scores: dict[Category, list[list[float]]]
    categories: list[list[Category]]
    chance: dict[Category, float] = field(default_factory=dict)

    @classmethod
    def from_pattern(cls, pattern: torch.Tensor, ids: torch.Tensor) -> HeadReport:
        """Score a `(layers, heads, T, T)` pattern, or average a batch `(B, layers, heads, T, T)`:
        each score is the mean of the per-item scores over the items where it is defined."""
        scores = score_heads(pattern, ids)
        if pattern.dim() == 5:
            scores = {k: v.nanmean(0) for k, v in scores.items()}
        return cls.from_scores({k: v.tolist() for k, v in scores.items()}, chance_scores(ids))

    @classmethod
    def from_scores(
        cls, scores: dict[Category, list[list[float]]], chance: dict[Category, float] | None = None
    ) -> HeadReport:
        chance = dict(chance or {})
        layers, heads = len(scores["self"]), len(scores["self"][0])
        categories = [
            [primary_category({k: scores[k][l][h] for k in SCORES}, chance) for h in range(heads)]
            for l in range(layers)
        ]
        return cls(scores, categories, chance)

    @property
    def layers(self) -> int:
        return len(self.categories)

    def applicable(self, score: Category) -> bool:
        """False when the input gave this score nothing to measure (no repeated tokens)."""
        return any(v == v for row in self.scores[score] for v in row)

    def active(self, layer: int, head: int, category: Category) -> bool:
        """Whether the head shows this behaviour on this input (its score passes the category's
        threshold and chance test)."""
        if category == "other":
            return self.categories[layer][head] == "other"
        return passes(category, self.scores[category][layer][head], self.chance.get(category))

    def summary(self) -> dict[Category, list[str]]:
        """Per category, its heads as `L4-H11`, strongest first."""
        members: dict[Category, list[tuple[float, int, int]]] = {c: [] for c in (*SCORES, "other")}
        for layer, row in enumerate(self.categories):
            for head, category in enumerate(row):
                strength = self.scores[category][layer][head] if category != "other" else 0.0
                members[category].append((-strength, layer, head))
        return {c: [head_name(l, h) for _, l, h in sorted(m)] for c, m in members.items()}

    def counts_per_layer(self) -> dict[Category, list[int]]:
        """How many heads of each category each layer holds."""
        counts = {c: [0] * self.layers for c in (*SCORES, "other")}
        for layer, row in enumerate(self.categories):
            for category in row:
                counts[category][layer] += 1
        return counts

    def counts_by_depth(self, bins: int = 5) -> dict[Category, list[int]]:
        """How many heads of each category sit in each fifth (`bins`) of the model's depth."""
        counts = {c: [0] * bins for c in (*SCORES, "other")}
        for layer, row in enumerate(self.categories):
            for category in row:
                counts[category][depth_bin(layer, self.layers, bins)] += 1
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
            "chance": {k: None if v != v else round(v, 4) for k, v in self.chance.items()},
            "summary": self.summary(),
            "counts_per_layer": self.counts_per_layer(),
            "counts_by_depth": self.counts_by_depth(),
            "labels": LABELS,
            "thresholds": THRESHOLDS,
            "chance_multiple": CHANCE_MULTIPLE,
        }
