"""Activation patching between a clean and a corrupted prompt of the same token count.

"denoising" runs the corrupted prompt with one clean activation patched in (does that activation
suffice to restore the clean answer?); "noising" runs the clean prompt with one corrupted activation
(is it necessary?). A cell is the residual stream entering a layer at one position (`resid`), an
attention or MLP sublayer's output at one position (`attn`, `mlp`), or one head's output z at every
position (`heads`). Results are normalized, `(m - m_corrupted) / (m_clean - m_corrupted)`: 0 is the
corrupted run's metric, 1 the clean run's. Patching layer l leaves layers < l unchanged, so the
exact scan batches its rows like the ablation scan: each row joins the pass at its own layer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..core import jobs
from ..core.budget import check_patching
from ..core.errors import LmscopeError, RequestError
from ..core.heads import head_name
from ..core.model import LoadedModel
from ..core.tokens import Token
from ..core.trace import HeadPatch, StreamPatch, run
from .ablation import BATCH_TOKENS, PATTERN_FLOATS, scan_pass
from .atp import (
    COMPONENTS,
    HOOKS,
    Component,
    Gradients,
    Tape,
    activations,
    agreement,
    backward_rows,
    captured,
    first_order,
    forward,
    gradients,
    strongest,
)
from .inputs import as_ids, check_count, choice, prompt_ids
from .metric import Metric, make_metric

Direction = Literal["denoising", "noising"]
DIRECTIONS: tuple[Direction, ...] = ("denoising", "noising")
Scan = Literal["exact", "atp", "both"]
SCANS: tuple[Scan, ...] = ("exact", "atp", "both")
CHECK_TOP = 10  # cells the AtP scan checks exactly by default
Cell = tuple[int, int]  # (layer, position) or (layer, head)


@dataclass
class Pair:
    """A clean and a corrupted prompt as ids `(1, T)`, the metric, and its value on each run."""

    lm: LoadedModel
    clean: torch.Tensor
    corrupt: torch.Tensor
    clean_tokens: list[Token]
    corrupt_tokens: list[Token]
    metric: Metric
    clean_metric: float
    corrupt_metric: float
    notices: list[str] = field(default_factory=list)
    # What `pair()`'s own passes kept, by (component, direction): the activations patched in, and
    # AtP's gradient of the run patched into; the scans read them instead of running again.
    sources: dict[tuple[Component, Direction], torch.Tensor] = field(default_factory=dict)
    grads: dict[tuple[Component, Direction], Gradients] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.clean.shape[1]

    def normalize(self, metric: torch.Tensor) -> torch.Tensor:
        """0 = the corrupted run's metric, 1 = the clean run's."""
        return (metric - self.corrupt_metric) / (self.clean_metric - self.corrupt_metric)

    def runs(self, direction: Direction) -> tuple[torch.Tensor, torch.Tensor]:
        """(the run patched into, the run its activations come from)."""
        return (
            (self.corrupt, self.clean) if direction == "denoising" else (self.clean, self.corrupt)
        )

    def cells(self, component: Component) -> list[Cell]:
        columns = self.lm.heads if component == "heads" else self.tokens
        return [(layer, c) for layer in range(self.lm.layers) for c in range(columns)]


@dataclass
class PairPrompts:
    """A clean and a corrupted prompt as the model reads them, with the same token count."""

    clean: list[Token]
    corrupt: list[Token]
    notices: list[str]

    @property
    def tokens(self) -> int:
        return len(self.clean)


def pair_prompts(lm: LoadedModel, clean: object, corrupt: object) -> PairPrompts:
    """Both prompts tokenized; a `RequestError` naming both counts when they differ."""
    clean_tokens, notices = prompt_ids(lm, clean, what="clean prompt")
    corrupt_tokens, more = prompt_ids(lm, corrupt, what="corrupted prompt")
    if len(clean_tokens) != len(corrupt_tokens):
        raise RequestError(
            f"The clean prompt is {len(clean_tokens)} tokens and the corrupted prompt "
            f"{len(corrupt_tokens)}: patching pairs their positions, so both need the same count."
        )
    return PairPrompts(clean_tokens, corrupt_tokens, notices + more)


def pair(
    lm: LoadedModel,
    clean: object,
    corrupt: object,
    answer: object,
    wrong: object,
    *,
    component: Component | None = None,
    direction: Direction = "denoising",
    gradient: bool = False,
) -> Pair:
    """Both prompts tokenized (same count, else a `RequestError` naming both), the metric, and its
    value on each run; `answer` None follows the clean run's top prediction.

    With `component`, the same passes keep the activations `direction` patches in
    (`Pair.sources`); with `gradient` too, the run patched into is the differentiable pass and its
    metric's gradient is taken (`Pair.grads`): AtP's one forward pass of each prompt and one
    backward pass, nothing run twice.
    """
    prompts = pair_prompts(lm, clean, corrupt)
    (made,) = pairs(lm, [prompts], [(answer, wrong)], component=component, direction=direction,
                    gradient=gradient)  # fmt: skip
    if isinstance(made, LmscopeError):
        raise made
    return made


def pairs(
    lm: LoadedModel,
    prompts: list[PairPrompts],
    targets: list[tuple[object, object]],
    *,
    component: Component | None = None,
    direction: Direction = "denoising",
    gradient: bool = False,
) -> list[Pair | LmscopeError]:
    """`pair` of several pairs of one token count in one batch of passes; `targets` holds each
    pair's (answer, wrong). A pair that cannot be patched (a bad target, a metric that does not
    move) comes back as the error `pair` would raise, the others as their `Pair`."""
    clean = torch.cat([as_ids(p.clean) for p in prompts])
    corrupt = torch.cat([as_ids(p.corrupt) for p in prompts])
    logits, kept, tape = _passes(lm, clean, corrupt, component, direction, gradient)
    made: list[Pair | LmscopeError] = []
    for row, (prompt, (answer, wrong)) in enumerate(zip(prompts, targets, strict=True)):
        try:
            made.append(_pair(lm, prompt, logits[row], answer, wrong, clean, corrupt, row))
        except LmscopeError as error:
            made.append(error)
    metrics = [m.metric if isinstance(m, Pair) else None for m in made]
    grads = backward_rows(lm, tape, metrics) if tape is not None else [None] * len(made)
    for row, (p, grad) in enumerate(zip(made, grads, strict=True)):
        if isinstance(p, Pair) and component is not None:
            p.sources[component, direction] = kept[row]
            if grad is not None:
                p.grads[component, direction] = grad
    return made


def _pair(
    lm: LoadedModel,
    prompt: PairPrompts,
    logits: torch.Tensor,
    answer: object,
    wrong: object,
    clean: torch.Tensor,
    corrupt: torch.Tensor,
    row: int,
) -> Pair:
    """Row `row` of a batch as a `Pair`: its metric from its logits `(2, vocab)` (clean,
    corrupted), refused when the metric is the same on both prompts."""
    metric, targets = make_metric(lm, answer, wrong, logits[0])
    values = metric(logits)
    if abs(float(values[0] - values[1])) < 1e-6:
        raise RequestError(
            f"{metric.label} is {float(values[0]):.4g} on both prompts: there is no difference for "
            "patching to restore. Pick a corruption that changes the answer."
        )
    return Pair(
        lm, clean[row : row + 1], corrupt[row : row + 1], prompt.clean, prompt.corrupt, metric,
        float(values[0]), float(values[1]), prompt.notices + targets,
    )  # fmt: skip


def _passes(
    lm: LoadedModel,
    clean: torch.Tensor,
    corrupt: torch.Tensor,
    component: Component | None,
    direction: Direction,
    gradient: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], Tape | None]:
    """`pairs()`'s passes over `(B, T)` clean and corrupted ids: the last-position logits
    `(B, 2, vocab)` (clean, corrupted), each row's source-run activations of `component` if named,
    and with `gradient` the run patched into as a `Tape` (then the source prompts run as one
    batch without autograd, the others as one with it)."""
    batch = clean.shape[0]
    source_first = direction == "denoising"  # the clean run is the source
    if component is None or not gradient:
        with torch.inference_mode():
            out, rec = run(lm, torch.cat([clean, corrupt]), capture=component is not None,
                           keep_keys=False)  # fmt: skip
        first = 0 if source_first else batch
        kept = [] if component is None else [
            captured(lm, rec, component, first + row) for row in range(batch)
        ]  # fmt: skip
        logits = out[:, -1].float().unflatten(0, (2, batch)).transpose(0, 1)
        return logits, kept, None
    source, base = (clean, corrupt) if source_first else (corrupt, clean)
    with torch.inference_mode():
        source_logits, rec = run(lm, source, keep_keys=False)
    kept = [captured(lm, rec, component, row) for row in range(batch)]
    tape = forward(lm, base, component)
    rows = [source_logits[:, -1], tape.logits.detach()]
    logits = torch.stack(rows if source_first else rows[::-1], 1).float()
    return logits, kept, tape


def _sources(p: Pair, component: Component, direction: Direction) -> torch.Tensor:
    """The activations `direction` patches in: those `pair()` kept, else one pass for them."""
    key = (component, direction)
    if key not in p.sources:
        p.sources[key] = activations(p.lm, p.runs(direction)[1], component)
    return p.sources[key]


def _position_pass(
    p: Pair, base: torch.Tensor, component: Component, cells: list[Cell], sources: torch.Tensor
) -> torch.Tensor:
    """Last-position logits `(1 + len(cells), vocab)`: row 0 unpatched, row 1 + i with `cells[i]`
    (in layer order) patched. Each row joins the pass at its cell's layer (`trace.run(grow=)`)."""
    grow = Counter(layer for layer, _ in cells)
    patches, rows = {}, 1
    for layer, count in sorted(grow.items()):
        rows += count
        mask = torch.zeros(rows, p.tokens, device=p.lm.device)
        for row, (_, position) in enumerate(c for c in cells if c[0] == layer):
            mask[rows - count + row, position] = 1
        patches[f"blocks.{layer}.{HOOKS[component]}"] = StreamPatch(mask, sources[layer])
    logits, _ = run(p.lm, base, capture=False, stream_patches=patches, grow=dict(grow))
    return logits[:, -1].float()


def rows_per_pass(lm: LoadedModel, tokens: int, batch_tokens: int = BATCH_TOKENS) -> int:
    """Cells per batched pass beside the unpatched row, bounded as `ablation.scan_passes` is."""
    rows = min(batch_tokens // tokens, PATTERN_FLOATS // (lm.heads * tokens * tokens))
    return max(1, rows - 1)


def in_layer_order(
    cells: list[Cell], size: int, measure: Callable[[list[Cell]], torch.Tensor]
) -> torch.Tensor:
    """`measure` (one value per cell of a chunk) over `cells` cut into chunks of `size` in layer
    order, as the batched passes need them; the values come back in the order of `cells`."""
    order = sorted(range(len(cells)), key=lambda i: cells[i][0])  # stable
    ordered = [cells[i] for i in order]
    starts = range(0, len(ordered), size)
    chunks = []
    for done, start in enumerate(starts):
        jobs.report(done, len(starts))  # progress, and a cancel point between passes
        chunks.append(measure(ordered[start : start + size]))
    values = torch.cat(chunks) if chunks else torch.zeros(0)
    result = torch.empty_like(values)
    result[torch.tensor(order, dtype=torch.long)] = values
    return result


def exact(
    p: Pair,
    component: Component,
    direction: Direction,
    cells: list[Cell] | None = None,
    batch_tokens: int = BATCH_TOKENS,
) -> torch.Tensor:
    """The normalized metric with each of `cells` (default all) patched alone, in their order."""
    cells = p.cells(component) if cells is None else cells
    base, _ = p.runs(direction)
    sources = _sources(p, component, direction)

    def measure(chunk: list[Cell]) -> torch.Tensor:
        if component == "heads":  # the ablation scan's pass, the other run's z as replacement
            logits = scan_pass(p.lm, base, chunk, sources)
        else:
            logits = _position_pass(p, base, component, chunk, sources)
        return p.normalize(p.metric(logits[1:]))

    with torch.inference_mode():
        return in_layer_order(cells, rows_per_pass(p.lm, p.tokens, batch_tokens), measure)


def patched_together(
    p: Pair, component: Component, direction: Direction, cells: list[Cell]
) -> float:
    """The normalized metric with all of `cells` patched at once, in one pass."""
    base, _ = p.runs(direction)
    sources = _sources(p, component, direction)
    if component == "heads":
        keep = torch.ones(p.lm.layers, p.lm.heads, device=p.lm.device)
        for layer, head in cells:
            keep[layer, head] = 0
        patches = {layer: HeadPatch(keep[layer], sources[layer]) for layer in range(p.lm.layers)}
        streams = {}
    else:
        mask = torch.zeros(p.lm.layers, p.tokens, device=p.lm.device)
        for layer, position in cells:
            mask[layer, position] = 1
        name = HOOKS[component]
        patches = {}
        streams = {
            f"blocks.{l}.{name}": StreamPatch(mask[l], sources[l]) for l in range(p.lm.layers)
        }
    with torch.inference_mode():
        logits, _ = run(p.lm, base, capture=False, patches=patches, stream_patches=streams)
    return float(p.normalize(p.metric(logits[0, -1].float())))


def estimate(p: Pair, component: Component, direction: Direction) -> torch.Tensor:
    """AtP: the normalized metric of every cell to first order, `(layers, T)` or `(layers, heads)`,
    from one forward pass of each prompt and one backward pass of the run patched into (those
    `pair(gradient=True)` ran, where it did)."""
    grad = p.grads.get((component, direction))
    if grad is None:
        grad = gradients(p.lm, p.runs(direction)[0], p.metric, component)
    change = first_order(grad, _sources(p, component, direction), component)
    unpatched = 0.0 if direction == "denoising" else 1.0
    return unpatched + change / (p.clean_metric - p.corrupt_metric)


@dataclass
class Patching:
    """A patching heatmap, exact and/or estimated (AtP), normalized 0 = corrupted, 1 = clean."""

    pair: Pair
    component: Component
    direction: Direction
    exact: torch.Tensor | None  # (layers, T) or (layers, heads)
    atp: torch.Tensor | None
    checked: list[dict]  # the AtP's strongest cells, measured exactly

    @property
    def unpatched(self) -> float:
        return 0.0 if self.direction == "denoising" else 1.0

    @property
    def scan(self) -> str:
        """How it was made: 'exact', 'atp' or 'both'."""
        return (
            "both"
            if self.exact is not None and self.atp is not None
            else ("exact" if self.exact is not None else "atp")
        )

    def agreement(self, k: int = CHECK_TOP) -> dict | None:
        if self.exact is None or self.atp is None:
            return None
        return agreement(self.atp - self.unpatched, self.exact - self.unpatched, k)

    def columns(self) -> list[str]:
        """The heatmap's column labels: each position's clean token (and the corrupted one where
        it differs), or the head names of a layer."""
        if self.component == "heads":
            return [f"H{h}" for h in range(self.pair.lm.heads)]
        return [
            c.display if c.id == x.id else f"{c.display} / {x.display}"
            for c, x in zip(self.pair.clean_tokens, self.pair.corrupt_tokens, strict=True)
        ]

    def cell_name(self, cell: Cell) -> str:
        layer, column = cell
        if self.component == "heads":
            return head_name(layer, column)
        return f"L{layer} @ {column} {self.pair.clean_tokens[column].display!r}"

    def to_dict(self) -> dict:
        p = self.pair
        return {
            "scan": self.scan,
            "component": self.component,
            "direction": self.direction,
            "metric": p.metric.to_dict(),
            "notices": p.notices,
            "clean_metric": round(p.clean_metric, 6),
            "corrupt_metric": round(p.corrupt_metric, 6),
            "clean_tokens": [t.to_dict() for t in p.clean_tokens],
            "corrupt_tokens": [t.to_dict() for t in p.corrupt_tokens],
            "rows": [f"L{layer}" for layer in range(p.lm.layers)],
            "columns": self.columns(),
            "exact": _rounded(self.exact),
            "atp": _rounded(self.atp),
            "checked": rounded_checks(self.checked),
            "agreement": self.agreement(),
        }


def rounded_checks(checked: list[dict]) -> list[dict]:
    """Checked cells as the JSON document shows them: values to 6 decimals."""
    return [c | {"atp": round(c["atp"], 6), "exact": round(c["exact"], 6)} for c in checked]


def _rounded(values: torch.Tensor | None) -> list | None:
    return None if values is None else values.round(decimals=6).tolist()


def check_top(
    p: Pair,
    component: Component,
    direction: Direction,
    atp: torch.Tensor,
    k: int = CHECK_TOP,
    measured: torch.Tensor | None = None,
) -> list[dict]:
    """Exact patching of the `k` cells AtP ranks strongest, beside their estimate; read from
    `measured` (the full exact scan, shaped as `atp`) where it has run already."""
    unpatched = 0.0 if direction == "denoising" else 1.0
    cells = strongest(atp - unpatched, k)
    if measured is not None:
        values = torch.stack([measured[cell] for cell in cells]) if cells else torch.zeros(0)
    else:
        values = exact(p, component, direction, cells) if cells else torch.zeros(0)
    return [
        {
            "cell": [layer, column],
            "atp": float(atp[layer, column]),
            "exact": float(v),
        }
        for (layer, column), v in zip(cells, values, strict=True)
    ]


def patch(
    lm: LoadedModel,
    clean: object,
    corrupt: object,
    answer: object = None,
    wrong: object = None,
    *,
    component: object = "resid",
    direction: object = "denoising",
    scan: object = "atp",
    check: object = CHECK_TOP,
    batch_tokens: int = BATCH_TOKENS,
) -> Patching:
    """Patch every cell of `component` between the two prompts: `scan` 'exact' (every cell, batched),
    'atp' (the estimate, with its `check` strongest cells measured exactly) or 'both' (and their
    agreement)."""
    component = choice("component", component, COMPONENTS)
    direction = choice("direction", direction, DIRECTIONS)
    scan = choice("scan", scan, SCANS)
    check = check_count(check)
    clean_tokens, _ = prompt_ids(lm, clean, what="clean prompt")
    check_patching(lm, len(clean_tokens), component, scan, check)
    p = pair(lm, clean, corrupt, answer, wrong, component=component, direction=direction,
             gradient=scan in ("atp", "both"))  # fmt: skip
    return scan_pair(p, component, direction, scan, check, batch_tokens)


def scan_pair(
    p: Pair,
    component: Component,
    direction: Direction,
    scan: Scan,
    check: int = CHECK_TOP,
    batch_tokens: int = BATCH_TOKENS,
) -> Patching:
    """`patch`'s scans of a pair made by `pair` / `pairs` (with the gradient where `scan` is
    'atp' or 'both')."""
    shape = (p.lm.layers, p.lm.heads if component == "heads" else p.tokens)
    exact_values = atp = None
    if scan in ("exact", "both"):
        exact_values = exact(p, component, direction, batch_tokens=batch_tokens).reshape(shape)
    checked: list[dict] = []
    if scan in ("atp", "both"):
        atp = estimate(p, component, direction)
        if check:
            checked = check_top(p, component, direction, atp, check, exact_values)
    return Patching(p, component, direction, exact_values, atp, checked)
