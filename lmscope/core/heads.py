"""Stage 3, what each attention head does: scores on a pattern, and a category per head.

All scores are pure functions of attention patterns `A` of shape `(..., T, T)` (rows are query
positions, each row sums to 1 over keys j <= i) and the token ids. Real models park much of their
attention on key 0 (the attention sink) whatever the input, so that share is measured on its own
(`sink`) and every behaviour is scored on the REST of the attention: key 0 left out, each query row
counted by the mass it has off the sink, `r_i = 1 - A[i, 0]`. Rows i >= 2 count (row 0 sees only
the sink, row 1 only the sink and itself).

| score | formula over the rows i it is defined on (i >= 2) | defined on |
|---|---|---|
| sink | mean A[i, 0] (the share parked on the first token) | every row |
| previous_token | sum A[i, i-1] / sum r_i | every row |
| self | sum A[i, i] / sum r_i | every row |
| diffuse | sum r_i H(A[i, 1:i+1] / r_i) / log(i) / sum r_i (1 = uniform over keys 1..i) | every row |
| duplicate_token | sum over rows of A[i, j], j >= 1 earlier with token[j] == token[i], / sum r_i | rows with such a j |
| induction | sum over rows of A[i, j+1], j earlier with token[j] == token[i], j+1 < i, / sum r_i | rows with such a j |

Each behaviour score is the attention a head puts where the behaviour says it should look, as a
share of the attention it does not park on the sink: 1 means all of the rest goes there. Its
evidence is `sum r_i` over its rows: how many query rows' worth of attention off the sink it was
measured on. A head parking 99% on the sink has almost none, however long the prompt.

Duplicate-token and induction scores exist only where the prompt repeats a token; elsewhere they are
NaN ("not applicable on this input"). A head is filed under a category when its score reaches the
category's threshold, is at least `CHANCE_MULTIPLE` times the chance level (the same score of
uniform attention on the same tokens) AND rests on at least `MIN_EVIDENCE` rows' worth of
attention. A head that would pass only on less evidence is filed "too little evidence on this
input" (`insufficient`), never "other". See docs/head-scores.md for the thresholds and why.

A head of a sliding-window layer (window w: query i reads keys j with i - j < w) is judged on what
it can see: its duplicate and induction targets are the visible ones only, its diffuse score is
normalized by the keys it can read (`log(min(i, w))`), its sink share is measured on the rows that
can still see key 0 (i < w), and its chance level is uniform attention over its window
(`chance_scores(ids, window)`, kept per layer in `HeadReport.layer_chance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import torch

Category = Literal[
    "previous_token", "self", "diffuse", "duplicate_token", "induction", "insufficient", "other"
]
SCORES: tuple[Category, ...] = ("previous_token", "self", "diffuse", "duplicate_token", "induction")
CATEGORIES: tuple[Category, ...] = (*SCORES, "insufficient", "other")
POSITIONAL: tuple[Category, ...] = ("previous_token", "self", "diffuse")
REPEAT: tuple[Category, ...] = ("duplicate_token", "induction")
SINK = "sink"  # the share of attention on key 0: a number beside the category, not a category
LABELS: dict[str, str] = {
    "previous_token": "previous-token",
    "self": "self / current-token",
    "diffuse": "bag-of-words / diffuse",
    "duplicate_token": "duplicate-token",
    "induction": "induction",
    "insufficient": "too little evidence on this input",
    "other": "other",
    SINK: "attention sink (share on the first token)",
}
# A head belongs to a category when its score reaches the threshold (docs/head-scores.md says why).
THRESHOLDS: dict[Category, float] = {
    "previous_token": 0.4,
    "self": 0.4,
    "diffuse": 0.85,
    "duplicate_token": 0.4,
    "induction": 0.4,
}
# ... and is at least this many times what uniform attention scores on the same tokens (not for
# diffuse, whose chance level is the uniform pattern itself) ...
CHANCE_MULTIPLE = 2.0
# ... and was measured on at least this many query rows' worth of attention off the sink.
MIN_EVIDENCE = 4.0
# A head parking at least this share on the first token is marked as a sink head in the grid.
SINK_MARK = 0.5
# Categories whose pattern a learner can see at a glance, the most telling first
CLEAR: tuple[str, ...] = ("induction", "duplicate_token", "previous_token", "self")
FIRST_ROW = 2  # query rows from here on are scored
# Specific behaviours win over generic ones when a head passes several thresholds.
_SPECIFIC: tuple[Category, ...] = ("induction", "duplicate_token", "previous_token", "self")
_GENERIC: tuple[Category, ...] = ("diffuse",)
_CHUNK = 1 << 22  # elements per entropy chunk (16 MB): bounded temporaries, few tensor ops


def repeat_masks(ids: torch.Tensor, window: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean `(..., T, T)` masks: earlier same token (duplicate) and the token after it (induction).

    Key 0 is never a target: attention there cannot be told apart from the sink. With a `window`,
    only targets the query can see count.
    """
    size = ids.shape[-1]
    duplicate, induction = repeat_targets(ids.reshape(-1, size), 0, size, size, window)
    shape = (*ids.shape[:-1], size, size)
    return duplicate.reshape(shape), induction.reshape(shape)


def repeat_targets(
    ids: torch.Tensor, start: int, stop: int, keys: int, window: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`repeat_masks` for query rows `start:stop` and keys `0:keys` only: `(N, rows, keys)` each."""
    i = torch.arange(start, stop, device=ids.device).unsqueeze(-1)
    j = torch.arange(keys, device=ids.device)
    earlier = j < i
    if window is not None:
        earlier = earlier & (i - j < window)
    same = (ids[:, start:stop, None] == ids[:, None, :keys]) & (j < i)  # key 0 included
    induction = torch.zeros_like(same)
    induction[..., 1:] = same[..., :-1]
    return same & (j >= 1) & earlier, induction & earlier


# Categories with a place to look: a head's job row is where it looks there most (`job_rows`)
TARGETED: tuple[Category, ...] = ("previous_token", "self", "duplicate_token", "induction")
# A row within this share of the clearest one may be chosen; the latest such row is
JOB_ROW_SHARE = 0.9


def target_mass(
    block: torch.Tensor,
    ids: torch.Tensor,
    start: int,
    category: Category,
    window: int | None = None,
) -> torch.Tensor:
    """Per query row, the share of ALL its attention (the sink included) that one head puts where
    a `category` head looks: `(R,)` from rows `start:start + R` of its pattern `(R, K)`, keys
    `0:K` (`K >= start + R`), ids `(T,)`. Previous-token: `A[i, i-1]`; self: `A[i, i]`;
    duplicate-token and induction: the mass on `repeat_targets` (0 on rows without one). Rows
    before `FIRST_ROW` get 0: they see too few keys to show anything."""
    rows, keys = block.shape
    position = torch.arange(start, start + rows, device=block.device)
    if category == "previous_token":
        mass = block.gather(-1, (position - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1)
    elif category == "self":
        mass = block.gather(-1, position.unsqueeze(-1)).squeeze(-1)
    elif category in REPEAT:
        duplicate, induction = repeat_targets(ids.reshape(1, -1), start, start + rows, keys, window)
        targets = (duplicate if category == "duplicate_token" else induction)[0]
        mass = (block.float() * targets).sum(-1)
    else:
        raise ValueError(f"A {category!r} head has no place it looks; see TARGETED.")
    return mass.float() * (position >= FIRST_ROW)


def job_row(mass: torch.Tensor) -> int | None:
    """The row to show a head doing its job, from `target_mass` over every row `(T,)`: the latest
    row within `JOB_ROW_SHARE` of the clearest (nearest the prompt's end, where views open), None
    where no row puts anything there."""
    best = float(mass.max()) if mass.numel() else 0.0
    if best <= 0:
        return None
    return int((mass >= JOB_ROW_SHARE * best).nonzero().max())


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


def softmax_entropy(
    logits: torch.Tensor, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`A = softmax(logits)` over the last axis `(..., K)` (written to `out` where given) and each
    row's entropy `-sum_j A_j log A_j`, from the logits: `log A_j = s_j - lse` and
    `lse - m = -log max_j A_j` (m the row's largest logit) give
    `H = -log max_j A_j - sum_j A_j (s_j - m)`, a dot product per row instead of a log of every
    weight (half the time on a block, as precise: both terms are small). Masked keys hold
    float32's lowest logit and weight 0. `logits` is overwritten (shifted by m)."""
    weights = torch.softmax(logits, -1, out=out) if out is not None else logits.softmax(-1)
    shifted = logits.sub_(logits.amax(-1, keepdim=True))
    dot = torch.einsum("...k,...k->...", weights, shifted)
    return weights, -weights.amax(-1).log() - dot


def _mass_on(pattern: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row, the attention mass on the target keys: `(N, M, R)` from pattern `(N, M, R, T)`.

    targets `(N, R, T)`: only the target entries are read (they are few), head by head in memory
    order; the loop is over the N id rows of a batch only.
    """
    items, heads, size = pattern.shape[0], pattern.shape[1], pattern.shape[-1]
    mass = pattern.new_zeros(items, heads, pattern.shape[-2])  # rows may be a block of keys
    for item in range(items):
        rows, keys = targets[item].nonzero(as_tuple=True)
        values = pattern[item].reshape(heads, -1).index_select(1, rows * size + keys)
        mass[item].index_add_(1, rows, values)
    return mass


@dataclass
class ScoreSums:
    """The running sums behind every head score, over blocks of query rows.

    Each score is a sum over query rows divided at the end (`score = mass / evidence`, sink =
    sum / rows), so a pattern can be scored a block of rows at a time and never held whole: `add`
    blocks in any order, read `scores()` at the end. Sums are per id row and head: `(N, M)`.
    """

    ids: torch.Tensor  # (N, T)
    mass: dict[str, torch.Tensor]
    evidence: dict[str, torch.Tensor]
    counted: dict[str, torch.Tensor]  # rows each score was defined on
    sink: torch.Tensor
    sink_rows: torch.Tensor
    window: int | None = None  # a sliding-window layer's: keys i - j < window only

    @classmethod
    def start(cls, ids: torch.Tensor, heads: int, window: int | None = None) -> ScoreSums:
        """Empty sums for `heads` patterns per row of `ids` `(N, T)` (of a layer whose queries
        see only the last `window` keys, where given)."""
        zero = torch.zeros(ids.shape[0], heads, dtype=torch.float32, device=ids.device)
        return cls(
            ids,
            {k: zero.clone() for k in SCORES},
            {k: zero.clone() for k in SCORES},
            {k: zero.clone() for k in SCORES},
            zero.clone(),
            zero.new_zeros(()),
            window,
        )

    def add(self, block: torch.Tensor, start: int, entropy: torch.Tensor | None = None) -> None:
        """Add query rows `start:start + R` of a pattern: block `(N, M, R, K)` over keys `0:K`, every
        key those rows read (`K >= start + R` for a causal pattern); `entropy` `(N, M, R)` of those
        rows where the caller has it (`softmax_entropy`), else computed here."""
        items, heads, rows, keys = block.shape
        block = block.float()
        position = torch.arange(start, start + rows, device=block.device)
        scored = position >= FIRST_ROW
        sink = block[..., 0]  # (N, M, R)
        rest = (1.0 - sink).clamp_min(0.0)
        at = position.view(1, 1, rows, 1).expand(items, heads, rows, 1)
        own = block.gather(-1, at).squeeze(-1)
        previous = block.gather(-1, (at - 1).clamp_min(0)).squeeze(-1) * (position >= 1)
        # r_i * H(A[i, 1:] / r_i) = H_raw(A[i, 1:]) + r_i log r_i: no division by a tiny r_i
        if entropy is None:
            entropy = -torch.xlogy(block, block).sum(-1)
        spread = entropy - torch.special.entr(sink) - torch.special.entr(rest)
        readable = position if self.window is None else position.clamp_max(self.window)
        diffuse = spread / readable.clamp_min(2).to(block.dtype).log()
        duplicate, induction = repeat_targets(self.ids, start, start + rows, keys, self.window)
        for name, mass, counted in (
            ("previous_token", previous, scored),
            ("self", own, scored),
            ("diffuse", diffuse, scored),
            ("duplicate_token", _mass_on(block, duplicate), duplicate.any(-1).unsqueeze(1)),
            ("induction", _mass_on(block, induction), induction.any(-1).unsqueeze(1)),
        ):
            counted = (counted & scored).to(block.dtype).expand(items, heads, rows)
            self.mass[name] += (mass * counted).sum(-1)
            self.evidence[name] += (rest * counted).sum(-1)
            self.counted[name] += counted.sum(-1)
        sees_sink = scored if self.window is None else scored & (position < self.window)
        self.sink += (sink * sees_sink).sum(-1)
        self.sink_rows += sees_sink.sum()

    def scores(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """`(scores, evidence)` `(N, M)` each, as `score_heads_with_evidence` defines them."""
        scores: dict[str, torch.Tensor] = {}
        for name in SCORES:
            defined = self.counted[name] > 0
            score = torch.where(
                defined, self.mass[name] / self.evidence[name].clamp_min(1e-12), torch.nan
            )
            scores[name] = score.clamp(0.0, 1.0).where(defined, torch.nan)
        evidence = dict(self.evidence)
        scores[SINK] = torch.where(
            self.sink_rows > 0, self.sink / self.sink_rows.clamp_min(1), torch.nan
        )
        return scores, evidence


def score_heads_with_evidence(
    pattern: torch.Tensor, ids: torch.Tensor, window: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every score (and `sink`) for every head, and the evidence behind each behaviour score.

    pattern: `(..., T, T)`, e.g. `(layers, heads, T, T)` with ids `(T,)`, or
    `(batch, layers, heads, T, T)` with ids `(batch, T)` (or `(T,)`, shared by the batch). Returns
    `(scores, evidence)`, each with the pattern's leading shape; scores are NaN where undefined.
    Scored in blocks of rows (`ScoreSums`), ~16 MB at a time; `window`: the patterns are of a
    sliding-window layer (see the module's docstring).
    """
    size = pattern.shape[-1]
    lead = pattern.shape[:-2]
    ids = ids.reshape(-1, size).to(pattern.device)
    flat = pattern.reshape(ids.shape[0], -1, size, size)  # (N, M, T, T): N ids rows
    sums = ScoreSums.start(ids, flat.shape[1], window)
    step = max(1, _CHUNK // (flat.shape[0] * flat.shape[1] * size))
    for start in range(0, size, step):
        sums.add(flat[:, :, start : start + step], start)
    scores, evidence = sums.scores()
    return (
        {k: v.reshape(lead) for k, v in scores.items()},
        {k: v.reshape(lead) for k, v in evidence.items()},
    )


def score_heads(
    pattern: torch.Tensor, ids: torch.Tensor, window: int | None = None
) -> dict[str, torch.Tensor]:
    """Every score (and `sink`) for every head at once; see `score_heads_with_evidence`."""
    return score_heads_with_evidence(pattern, ids, window)[0]


def chance_scores(ids: torch.Tensor, window: int | None = None) -> dict[str, float]:
    """Each score of uniform causal attention (`A[i, j] = 1/(i+1)`) on these ids: the chance level
    (with a `window`, uniform over the keys a query of a sliding-window layer sees; ids `(T,)`, or
    `(N, T)`: the mean over the rows where a score is defined)."""
    return {k: float(v.nanmean()) for k, v in _chance(ids, window).items()}


def chance_scores_per_row(ids: torch.Tensor, window: int | None = None) -> list[dict[str, float]]:
    """`chance_scores` of each row of ids `(N, T)` on its own, in one go."""
    scores = _chance(ids, window)
    return [{k: float(v[row]) for k, v in scores.items()} for row in range(ids.shape[0])]


def _chance(ids: torch.Tensor, window: int | None = None) -> dict[str, torch.Tensor]:
    """Uniform attention's scores per row of ids, `(N,)` each: built and scored a block of rows at
    a time, never a whole T x T uniform pattern."""
    size = ids.shape[-1]
    flat = ids.reshape(-1, size)
    sums = ScoreSums.start(flat, 1, window)
    step = max(1, _CHUNK // (flat.shape[0] * size))
    for start in range(0, size, step):
        stop = min(size, start + step)
        rows = torch.ones(stop - start, size).tril(start)
        if window is not None:
            rows = rows.triu(start - window + 1)
        rows /= rows.sum(-1, keepdim=True)
        sums.add(rows.expand(flat.shape[0], 1, *rows.shape), start)
    return {k: v.float()[:, 0] for k, v in sums.scores()[0].items()}


def windowed_chance(ids: torch.Tensor, windows: list[int | None]) -> dict[int, dict[str, float]]:
    """`HeadReport.layer_chance`: the chance levels of each layer whose window is shorter than
    the input `ids` `(..., T)` (one computation per distinct window)."""
    size = ids.shape[-1]
    by_window = {w: chance_scores(ids, w) for w in set(windows) if w is not None and w < size}
    return {layer: by_window[w] for layer, w in enumerate(windows) if w in by_window}


def passes(category: Category, score: float, chance: float | None = None) -> bool:
    """Whether a score files a head under `category`: threshold reached, well above chance."""
    if score != score or score < THRESHOLDS[category]:
        return False
    return category == "diffuse" or chance is None or score >= CHANCE_MULTIPLE * chance


def enough(evidence: float | None) -> bool:
    """Whether a score rests on enough attention (`MIN_EVIDENCE` rows' worth) for a verdict."""
    return evidence is None or evidence >= MIN_EVIDENCE


def primary_category(
    scores: dict[str, float],
    chance: dict[str, float] | None = None,
    evidence: dict[str, float] | None = None,
) -> Category:
    """The category a head is filed under: the strongest specific behaviour, else a generic one.

    Within a group the score furthest above its threshold (score / threshold) wins. Only scores
    with enough evidence count; if none passes but one would on too little evidence, the head is
    `insufficient` (too little evidence on this input), not `other`.
    """
    chance, evidence = chance or {}, evidence or {}
    thin = False
    for group in (_SPECIFIC, _GENERIC):
        passing = [c for c in group if passes(c, scores[c], chance.get(c))]
        solid = [c for c in passing if enough(evidence.get(c))]
        if solid:
            return max(solid, key=lambda c: scores[c] / THRESHOLDS[c])
        thin = thin or bool(passing)
    return "insufficient" if thin else "other"


def head_name(layer: int, head: int) -> str:
    """The name a user reads: `L4-H11`."""
    return f"L{layer}-H{head}"


def depth_bin(layer: int, layers: int, bins: int = 5) -> int:
    """Which of `bins` equal slices of relative depth a layer's middle, `(layer + 0.5) / layers`,
    falls in: comparable across models of different depth (GPT-2 Small vs Medium)."""
    return min(bins - 1, int((layer + 0.5) / layers * bins))


Grid = list[list[float]]


@dataclass(frozen=True)
class HeadReport:
    """Scores and categories of every head on one input: `scores[name][layer][head]`, NaN = n/a.

    `scores["sink"]` is each head's share on the first token; `evidence[name]` the rows' worth of
    attention off the sink each behaviour score rests on; `chance[name]` what uniform attention
    scores on the same input (see `chance_scores`), and `layer_chance[layer]` the same for a
    sliding-window layer whose window the input outgrows (`chance_of`).
    """

    scores: dict[str, Grid]
    categories: list[list[Category]]
    chance: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Grid] = field(default_factory=dict)
    layer_chance: dict[int, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_pattern(cls, pattern: torch.Tensor, ids: torch.Tensor) -> HeadReport:
        """Score a `(layers, heads, T, T)` pattern, or a batch `(B, layers, heads, T, T)`: each
        score is then the mean of the per-item scores where defined, the evidence their sum."""
        scores, evidence = score_heads_with_evidence(pattern, ids)
        if pattern.dim() == 5:
            scores = {k: v.nanmean(0) for k, v in scores.items()}
            evidence = {k: v.sum(0) for k, v in evidence.items()}
        return cls.from_scores(
            {k: v.tolist() for k, v in scores.items()},
            chance_scores(ids),
            {k: v.tolist() for k, v in evidence.items()},
        )

    @classmethod
    def from_scores(
        cls,
        scores: dict[str, Grid],
        chance: dict[str, float] | None = None,
        evidence: dict[str, Grid] | None = None,
        layer_chance: dict[int, dict[str, float]] | None = None,
    ) -> HeadReport:
        """Categorize every head from its scores (no evidence given: every score counts)."""
        chance, evidence = dict(chance or {}), dict(evidence or {})
        layer_chance = dict(layer_chance or {})
        layers, heads = len(scores["self"]), len(scores["self"][0])
        categories = [
            [
                primary_category(
                    {k: scores[k][l][h] for k in SCORES},
                    layer_chance.get(l, chance),
                    {k: v[l][h] for k, v in evidence.items()},
                )
                for h in range(heads)
            ]
            for l in range(layers)
        ]
        return cls(scores, categories, chance, evidence, layer_chance)

    def chance_of(self, layer: int) -> dict[str, float]:
        """The chance levels a head of `layer` is judged against."""
        return self.layer_chance.get(layer, self.chance)

    @property
    def layers(self) -> int:
        return len(self.categories)

    def applicable(self, score: Category) -> bool:
        """False when the input gave this score nothing to measure (no repeated tokens)."""
        return any(v == v for row in self.scores[score] for v in row)

    def evidence_of(self, layer: int, head: int, score: Category) -> float | None:
        """The rows' worth of attention off the sink behind this score (None: not recorded)."""
        rows = self.evidence.get(score)
        return None if rows is None else rows[layer][head]

    def sink(self, layer: int, head: int) -> float | None:
        """This head's share of attention on the first token (None: not recorded)."""
        rows = self.scores.get(SINK)
        value = None if rows is None else rows[layer][head]
        return None if value is None or value != value else value

    def decided(self, layer: int, head: int, category: Category) -> bool:
        """Whether this input gives enough evidence to say if the head shows this behaviour."""
        score = self.scores[category][layer][head]
        return score == score and enough(self.evidence_of(layer, head, category))

    def active(self, layer: int, head: int, category: Category) -> bool:
        """Whether the head shows this behaviour on this input (its score passes the category's
        threshold and chance test, on enough evidence)."""
        if category in ("other", "insufficient"):
            return self.categories[layer][head] == category
        return self.decided(layer, head, category) and passes(
            category, self.scores[category][layer][head], self.chance_of(layer).get(category)
        )

    def strength(self, layer: int, head: int) -> float | None:
        """The score of the head's own category (None for other / too little evidence)."""
        category = self.categories[layer][head]
        return self.scores[category][layer][head] if category in SCORES else None

    def summary(self) -> dict[Category, list[str]]:
        """Per category, its heads as `L4-H11`, strongest first."""
        members: dict[Category, list[tuple[float, int, int]]] = {c: [] for c in CATEGORIES}
        for layer, row in enumerate(self.categories):
            for head, category in enumerate(row):
                members[category].append((-(self.strength(layer, head) or 0.0), layer, head))
        return {c: [head_name(l, h) for _, l, h in sorted(m)] for c, m in members.items()}

    def visible_share(self, layer: int, head: int) -> float:
        """The share of ALL the head's attention (the sink included) its category's score
        describes: what its heatmap shows. A head parking 90% on the first token draws a sink
        column, however high its score on the rest."""
        return (self.strength(layer, head) or 0.0) * (1.0 - (self.sink(layer, head) or 0.0))

    def clearest_head(self) -> tuple[int, int] | None:
        """The head to show a learner: of the first category in `CLEAR` that any head is filed
        under, the one whose pattern shows it most (`visible_share`); None if no head has a clear
        role (a diffuse head shows nothing to point at)."""
        for category in CLEAR:
            heads = [
                (layer, head)
                for layer, row in enumerate(self.categories)
                for head, filed in enumerate(row)
                if filed == category
            ]
            if heads:
                return max(heads, key=lambda h: (self.visible_share(*h), -h[0], -h[1]))
        return None

    def strongest(self, category: Category, n: int) -> list[list[int]]:
        """At most `n` heads filed under `category`, strongest first; the best scores on it when
        none is filed (NaN scores left out)."""
        scores = self.scores[category]
        ranked = sorted(
            (
                (float(scores[l][h]), l, h)
                for l in range(self.layers)
                for h in range(len(self.categories[l]))
                if not math.isnan(float(scores[l][h]))
            ),
            reverse=True,
        )
        filed = [[l, h] for _, l, h in ranked if self.categories[l][h] == category]
        return (filed or [[l, h] for _, l, h in ranked])[:n]

    def sink_heads(self) -> list[str]:
        """Heads parking at least `SINK_MARK` of their attention on the first token, most first."""
        heads = [
            (-(self.sink(l, h) or 0.0), l, h)
            for l in range(self.layers)
            for h in range(len(self.categories[l]))
            if (self.sink(l, h) or 0.0) >= SINK_MARK
        ]
        return [head_name(l, h) for _, l, h in sorted(heads)]

    def counts_per_layer(self) -> dict[Category, list[int]]:
        """How many heads of each category each layer holds."""
        counts = {c: [0] * self.layers for c in CATEGORIES}
        for layer, row in enumerate(self.categories):
            for category in row:
                counts[category][layer] += 1
        return counts

    def sink_per_layer(self) -> list[float | None]:
        """Each layer's mean share of attention on the first token (None where no head has one)."""
        means = []
        for layer in range(self.layers):
            shares = [self.sink(layer, h) for h in range(len(self.categories[layer]))]
            known = [share for share in shares if share is not None]
            means.append(sum(known) / len(known) if known else None)
        return means

    def first_token_counts(self) -> list[int]:
        """Per layer, the heads that park at least `SINK_MARK` of their attention on the first
        token: GPT-2 overviews call them first-token or positional heads; on modern models this
        is the attention sink, a head's resting place when it has nothing to read."""
        return [
            sum((self.sink(layer, h) or 0.0) >= SINK_MARK for h in range(len(row)))
            for layer, row in enumerate(self.categories)
        ]

    def counts_by_depth(self, bins: int = 5) -> dict[Category, list[int]]:
        """How many heads of each category sit in each fifth (`bins`) of the model's depth."""
        counts = {c: [0] * bins for c in CATEGORIES}
        for layer, row in enumerate(self.categories):
            for category in row:
                counts[category][depth_bin(layer, self.layers, bins)] += 1
        return counts

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes null (not applicable)."""

        def clean(grids: dict[str, Grid], decimals: int) -> dict:
            return {
                k: [[None if v != v else round(v, decimals) for v in row] for row in rows]
                for k, rows in grids.items()
            }

        return {
            "scores": clean(self.scores, 4),
            "evidence": clean(self.evidence, 2),
            "categories": self.categories,
            "applicable": {k: self.applicable(k) for k in SCORES},
            "chance": {k: None if v != v else round(v, 4) for k, v in self.chance.items()},
            "layer_chance": {
                str(layer): {k: None if v != v else round(v, 4) for k, v in values.items()}
                for layer, values in self.layer_chance.items()
            },
            "summary": self.summary(),
            "sink_heads": self.sink_heads(),
            "counts_per_layer": self.counts_per_layer(),
            "counts_by_depth": self.counts_by_depth(),
            "labels": LABELS,
            "thresholds": THRESHOLDS,
            "chance_multiple": CHANCE_MULTIPLE,
            "min_evidence": MIN_EVIDENCE,
            "sink_mark": SINK_MARK,
        }
