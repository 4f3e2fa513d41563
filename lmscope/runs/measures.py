"""Each experiment of a run, measured on a batch of rows of one token count.

A `Measure` turns `Item`s (rows that share a token count) into one `Values` per row: the cells the
one-prompt experiment computes on that row, by the same library calls (the analysis, DLA, the
ablation scan, patching, steering), batched where the call takes a batch. A cell is
`(quantity, layer, column)`: the column is a head or a token position, -1 where the quantity has
none (as is the layer of a per-prompt number such as the clean metric).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..core import budget
from ..core.analysis import analyze_batch, score_batch
from ..core.errors import LmscopeError, RequestError
from ..core.heads import CATEGORIES, SCORES, SINK
from ..core.model import LoadedModel
from ..core.trace import Steer, run, steering
from ..experiments.ablation import ablation_scan, kl_divergence
from ..experiments.ablation_atp import ablation_estimates
from ..experiments.attribution import direct_logit_attribution
from ..experiments.lens import lens_logits, metric_lens
from ..experiments.metric import make_metric
from ..experiments.patching import PairPrompts, pairs, scan_pair
from ..experiments.steering import (
    check_coefficient,
    check_layer,
    default_layer,
    steering_vector,
)
from .rows import Item

# What a quantity's cells are indexed by: (layer axis, column axis), None where there is none.
Axes = tuple[str | None, str | None]
HEADS: Axes = ("layer", "head")
POSITIONS: Axes = ("layer", "position")
LAYERS: Axes = ("layer", None)
SCALAR: Axes = (None, None)


@dataclass
class Values:
    """One row's measured cells, as columns: quantity, layer, column, value (NaN left out)."""

    quantity: list[str] = field(default_factory=list)
    layer: list[np.ndarray] = field(default_factory=list)
    column: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def grid(self, quantity: str, values: torch.Tensor | list) -> None:
        """A `(layers, columns)` grid (or `(layers,)`: one value per layer)."""
        array = torch.as_tensor(values, dtype=torch.float64).numpy()
        if array.ndim == 1:
            layers, columns = np.arange(len(array)), np.full(len(array), -1)
        else:
            layers, columns = (index.ravel() for index in np.indices(array.shape))
        self._add(quantity, layers, columns, array.ravel())

    def scalar(self, quantity: str, value: float | None) -> None:
        if value is not None:
            self._add(quantity, np.array([-1]), np.array([-1]), np.array([float(value)]))

    def cell(self, quantity: str, layer: int, column: int, value: float) -> None:
        self._add(quantity, np.array([layer]), np.array([column]), np.array([float(value)]))

    def _add(self, quantity: str, layer: np.ndarray, column: np.ndarray, value: np.ndarray) -> None:
        kept = ~np.isnan(value)
        self.quantity += [quantity] * int(kept.sum())
        self.layer.append(layer[kept])
        self.column.append(column[kept])
        self.value.append(value[kept])

    def columns(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return (
            self.quantity,
            joined(self.layer, np.int16),
            joined(self.column, np.int32),
            joined(self.value, np.float64),
        )


class Measure:
    """One experiment over rows: `measure(items)` gives each row's `Values` or the error that
    skips it. `pair`: rows need `corrupt`. What it stores (`cells`) and ranks (`ranked`) follow
    from its settings alone, so a driver without the model can describe a run."""

    name: ClassVar[str]
    pair: ClassVar[bool] = False

    def __init__(self, lm: LoadedModel, settings: dict[str, object]) -> None:
        self.lm = lm
        self.settings = settings

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        """Each quantity this experiment stores and what its cells are indexed by."""
        raise NotImplementedError

    @classmethod
    def ranked(cls, settings: dict) -> tuple[str, ...]:
        """Quantities whose strongest cells are counted (top-k frequency): full grids only."""
        return ()

    @property
    def tokens_per_pass(self) -> int:
        """Rows x tokens per batched pass (a backward pass keeps much more per token)."""
        return 4096

    def check(self, item: Item) -> None:
        """Refuse a row the experiment cannot run on (its cost over a limit, a position past its
        end) before it joins a batch."""
        budget.check_analysis(self.lm, item.size)

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        raise NotImplementedError


class Profile(Measure):
    """Every head's scores and category on each prompt (the analysis's head report)."""

    name = "profile"

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        return {name: HEADS for name in (*SCORES, SINK, *(f"category:{c}" for c in CATEGORIES))}

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        made: list[Values | LmscopeError] = []
        for item, report in zip(
            items, score_batch(self.lm, [i.tokens for i in items]), strict=True
        ):
            values = Values(notices=item.notices)
            for name in (*SCORES, SINK):
                values.grid(name, report.scores[name])
            categories = np.array(report.categories)
            for category in CATEGORIES:
                values.grid(f"category:{category}", (categories == category).astype(float))
            made.append(values)
        return made


class Lens(Measure):
    """The metric read off the stream entering each layer (`experiments.lens`); layer L is the
    model's output."""

    name = "lens"

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        return {"lens": LAYERS}

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        analyses = analyze_batch(
            self.lm, [(i.prompt, i.tokens, i.notices) for i in items], lens=False
        )
        logits = lens_logits(analyses)  # every row's read-out after each layer, in one product
        made: list[Values | LmscopeError] = []
        for analysis, item, read in zip(analyses, items, logits, strict=True):
            try:
                lens = metric_lens(analysis, *item.targets, logits=read)
            except LmscopeError as error:
                made.append(error)
                continue
            values = Values(notices=analysis.notices + lens.notices)
            values.grid("lens", lens.values)
            made.append(values)
        return made


class Dla(Measure):
    """Direct logit attribution of the answer (or logit(answer) - logit(wrong))."""

    name = "dla"

    @classmethod
    def ranked(cls, settings: dict) -> tuple[str, ...]:
        return ("head",)

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        return {
            "head": HEADS,
            "mlp": LAYERS,
            "attention_bias": LAYERS,
            "embeddings": SCALAR,
            "constant": SCALAR,
            "logit": SCALAR,
        }

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        def one(analysis, item: Item) -> Values:
            dla = direct_logit_attribution(analysis, *item.targets)
            values = Values(notices=analysis.notices + list(dla.notices))
            values.grid("head", dla.heads)
            values.grid("mlp", dla.mlps)
            values.grid("attention_bias", dla.attention_bias)
            for name in ("embeddings", "constant", "logit"):
                values.scalar(name, getattr(dla, name))
            return values

        return _per_analysis(self.lm, items, one)


def _per_analysis(lm: LoadedModel, items: list[Item], one) -> list[Values | LmscopeError]:
    """`one(analysis, item)` for each row, from one batched analysis (the logit lens read only on
    request); a row's error skips it."""
    analyses = analyze_batch(lm, [(i.prompt, i.tokens, i.notices) for i in items], lens=False)
    made: list[Values | LmscopeError] = []
    for analysis, item in zip(analyses, items, strict=True):
        try:
            made.append(one(analysis, item))
        except LmscopeError as error:
            made.append(error)
    return made


class AblationScan(Measure):
    """Each head removed alone: the metric's change, exact and/or estimated by AtP."""

    name = "ablation-scan"

    @property
    def tokens_per_pass(self) -> int:
        return _tokens_per_pass(self.settings["method"])

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        return _scanned(settings["method"], HEADS) | {"metric": SCALAR}

    @classmethod
    def ranked(cls, settings: dict) -> tuple[str, ...]:
        return RANKED[settings["method"]]

    def check(self, item: Item) -> None:
        mode, method = self.settings["mode"], self.settings["method"]
        if method == "exact":
            budget.check_scan(self.lm, item.size, mean=mode == "mean")
        else:
            budget.check_ablation_estimate(
                self.lm, item.size, method == "both", self.settings["check"]
            )

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        mode, method, check = (self.settings[k] for k in ("mode", "method", "check"))
        if method == "exact":
            return [self._exact(item, mode) for item in items]
        estimates = ablation_estimates(
            self.lm,
            [(i.prompt, i.tokens, i.notices) for i in items],
            [i.targets for i in items],
            mode,
            exact=method == "both",
            check=check,
        )
        made: list[Values | LmscopeError] = []
        for estimate in estimates:
            if isinstance(estimate, LmscopeError):
                made.append(estimate)
                continue
            values = Values(notices=estimate.notices)
            values.grid("atp", estimate.atp)
            _checked_or_exact(values, estimate.exact, estimate.checked, "head")
            values.scalar("metric", estimate.base_metric)
            _agreement(values, estimate.agreement())
            made.append(values)
        return made

    def _exact(self, item: Item, mode: str) -> Values | LmscopeError:
        try:
            scan = ablation_scan(self.lm, item.prompt, mode, target=item.answer, wrong=item.wrong)
        except LmscopeError as error:
            return error
        values = Values(notices=scan.notices)
        values.grid("exact", scan.effect)
        values.scalar(
            "metric", scan.clean_metric if scan.clean_metric is not None else scan.clean_logprob
        )
        return values


class Patch(Measure):
    """Activation patching of every cell of a component between each row's clean and corrupted
    prompts: exact, AtP (with its strongest cells checked exactly), or both."""

    name = "patch"
    pair = True

    @property
    def tokens_per_pass(self) -> int:
        return _tokens_per_pass(self.settings["scan"])

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        grid = HEADS if settings["component"] == "heads" else POSITIONS
        return _scanned(settings["scan"], grid) | {"clean": SCALAR, "corrupt": SCALAR}

    @classmethod
    def ranked(cls, settings: dict) -> tuple[str, ...]:
        return RANKED[settings["scan"]]

    def check(self, item: Item) -> None:
        s = self.settings
        budget.check_patching(self.lm, item.size, s["component"], s["scan"], s["check"])

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        s = self.settings
        made_pairs = pairs(
            self.lm,
            [PairPrompts(i.tokens, i.corrupt_tokens, i.notices) for i in items],
            [i.targets for i in items],
            component=s["component"],
            direction=s["direction"],
            gradient=s["scan"] != "exact",
        )
        made: list[Values | LmscopeError] = []
        for p in made_pairs:
            if isinstance(p, LmscopeError):
                made.append(p)
                continue
            try:
                result = scan_pair(p, s["component"], s["direction"], s["scan"], s["check"])
            except LmscopeError as error:
                made.append(error)
                continue
            values = Values(notices=p.notices)
            if result.atp is not None:
                values.grid("atp", result.atp)
            _checked_or_exact(values, result.exact, result.checked, "cell")
            values.scalar("clean", p.clean_metric)
            values.scalar("corrupt", p.corrupt_metric)
            _agreement(values, result.agreement())
            made.append(values)
        return made


# The full grids a scan by 'exact', 'atp' or 'both' ranks (under 'atp', only AtP's checked cells
# are measured exactly: too few to rank).
RANKED = {"exact": ("exact",), "atp": ("atp",), "both": ("atp", "exact")}


def _scanned(scan: str, grid: Axes) -> dict[str, Axes]:
    """The cells of a scan by `scan`: the exact values (AtP's checked cells only, under 'atp'),
    AtP's estimate unless 'exact', and under 'both' their agreement on each prompt."""
    cells = {"exact": grid}
    if scan != "exact":
        cells["atp"] = grid
    if scan == "both":
        cells |= {"spearman": SCALAR, "top_k_overlap": SCALAR}
    return cells


def _tokens_per_pass(scan: str) -> int:
    """A gradient keeps far more per token than a forward pass: smaller batches for AtP."""
    return 4096 if scan == "exact" else 1024


def _checked_or_exact(values: Values, exact, checked: list[dict], key: str) -> None:
    """The exact grid where the full scan ran, else the cells AtP's check measured exactly."""
    if exact is not None:
        values.grid("exact", exact)
        return
    for entry in checked:
        layer, column = entry[key]
        values.cell("exact", layer, column, entry["exact"])


def _agreement(values: Values, agreement: dict | None) -> None:
    if agreement is not None:
        values.scalar("spearman", agreement["spearman"])
        values.scalar("top_k_overlap", agreement["top_k_overlap"])


class Steering(Measure):
    """One steering vector added to every prompt: the metric without and with it, its change,
    and KL(without || with) of the next-token distribution."""

    name = "steer"

    def __init__(self, lm: LoadedModel, settings: dict[str, object]) -> None:
        super().__init__(lm, settings)
        chosen = settings["layer"]  # None: the library's default depth
        layer = check_layer(lm, default_layer(lm) if chosen is None else chosen)
        coefficient = check_coefficient(settings["coefficient"])
        vector = steering_vector(
            lm, layer, prompts=settings["from_prompts"], token=settings["token"]
        )
        self.notices = list(vector.notices)
        self.change = Steer(layer, coefficient * vector.vector, settings["position"] or 0)

    @classmethod
    def cells(cls, settings: dict) -> dict[str, Axes]:
        return {name: SCALAR for name in ("before", "after", "change", "kl")}

    def check(self, item: Item) -> None:
        budget.check_ablation(self.lm, item.size, 0)
        position = self.settings["position"]
        if position is not None and not 0 <= position < item.size:
            raise RequestError(
                f"'position' must be a token position from 0 to {item.size - 1} (the prompt has "
                f"{item.size} tokens); got {position}."
            )

    def measure(self, items: list[Item]) -> list[Values | LmscopeError]:
        ids = torch.tensor([[t.id for t in item.tokens] for item in items])
        with torch.inference_mode():
            before = run(self.lm, ids, capture=False)[0][:, -1].float()
            with steering(self.change):
                after = run(self.lm, ids, capture=False)[0][:, -1].float()
        made: list[Values | LmscopeError] = []
        for row, item in enumerate(items):
            try:
                metric, notices = make_metric(self.lm, item.answer, item.wrong, before[row])
            except LmscopeError as error:
                made.append(error)
                continue
            values = Values(notices=item.notices + self.notices + notices)
            m_before, m_after = float(metric(before[row])), float(metric(after[row]))
            values.scalar("before", m_before)
            values.scalar("after", m_after)
            values.scalar("change", m_after - m_before)
            values.scalar("kl", kl_divergence(before[row], after[row]))
            made.append(values)
        return made


MEASURES: dict[str, type[Measure]] = {
    m.name: m for m in (Profile, Lens, Dla, AblationScan, Patch, Steering)
}
