"""What a paper prints about a run, computed from its stored per-prompt rows, one part at a time
(memory does not grow with the number of prompts):

- per cell: n, mean, standard deviation (n - 1 in the denominator), and the 95% interval of the
  mean, mean +- 1.96 std / sqrt(n) (the normal approximation: for n of a few dozen or more);
- top-k frequency: for quantities that rank components, how often each cell is among a prompt's
  k largest in magnitude;
- AtP vs exact: over every (prompt, cell) measured both ways, Spearman's and Pearson's
  correlation, the mean absolute difference and how often the signs agree.

Position cells are aggregated by position when every prompt has the same token count, else by
position counted from the end (-1 is the last token, where the metric is read): `aligned` says
which.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ..experiments.atp import spearman
from .measures import MEASURES, POSITIONS
from .store import RunError, RunStore

Z95 = 1.959964  # the normal distribution's 97.5% quantile
KEYS = ["quantity", "layer", "column"]
TOP_K = 10


@dataclass
class Aggregates:
    """A run's aggregates: `cells` (quantity, layer, column, n, mean, std, ci_low, ci_high),
    `top_k` (quantity, layer, column, count, prompts, frequency), `agreement` (AtP vs exact)."""

    cells: pa.Table
    top_k: pa.Table
    k: int
    agreement: dict | None
    aligned: bool  # position cells by position (True) or from the end (False)

    def to_dict(self) -> dict:
        """JSON-ready: NaN and infinities (a cell of one prompt has no spread) become null."""
        return json_ready({
            "cells": self.cells.to_pylist(),
            "top_k": {"k": self.k, "cells": self.top_k.to_pylist()},
            "agreement": self.agreement,
            "positions": "aligned" if self.aligned else "from the end",
        })  # fmt: skip

    def save(self, folder) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.cells, folder / "cells.parquet")
        pq.write_table(self.top_k, folder / "top_k.parquet")
        meta = {"k": self.k, "agreement": self.agreement, "aligned": self.aligned}
        (folder / "summary.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def json_ready(value: object) -> object:
    """`value` with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def aggregates(store: RunStore, k: int = TOP_K) -> Aggregates:
    """A run's aggregates, from its stored rows; top-k frequency with this `k`."""
    manifest = store.manifest() or {}
    experiment = manifest.get("experiment")
    if experiment not in MEASURES:
        raise RunError(f"{store.path} holds no run.")
    positions = {q for q, axes in manifest["cells"].items() if tuple(axes) == POSITIONS}
    return aggregate(store, positions, MEASURES[experiment].ranked(manifest["settings"]), k)


def aggregate(
    store: RunStore, positions: set[str], ranked: tuple[str, ...] = (), k: int = TOP_K
) -> Aggregates:
    """Every aggregate of the run in `store`; `positions` names the quantities whose column is a
    token position, `ranked` those counted for top-k frequency."""
    sizes = set(pc.unique(store.prompts()["tokens"].drop_null()).to_pylist())
    aligned = len(sizes) <= 1
    stats, counts, pairs = [], [], []
    for prompts, values in store.part_tables():
        if not aligned and positions:
            values = _from_end(values, prompts, positions)
        stats.append(_part_stats(values))
        counts += [_top_counts(values, quantity, k) for quantity in ranked]
        pairs.append(_pairs(values))
    return Aggregates(_combine(stats), _frequency(counts, stats), k, _agreement(pairs), aligned)


def _from_end(values: pa.Table, prompts: pa.Table, positions: set[str]) -> pa.Table:
    """Position cells renumbered from the end: column - tokens (-1 = the last token)."""
    tokens = dict(zip(prompts["prompt_id"].to_pylist(), prompts["tokens"].to_pylist(), strict=True))
    size = np.array([tokens[p] or 0 for p in values["prompt_id"].to_pylist()])
    column = values["column"].to_numpy()
    moved = np.isin(values["quantity"].to_numpy(zero_copy_only=False), list(positions))
    moved &= column >= 0
    renumbered = np.where(moved, column - size, column).astype(np.int32)
    return values.set_column(
        values.schema.get_field_index("column"), "column", pa.array(renumbered)
    )


def _part_stats(values: pa.Table) -> pa.Table:
    """Per cell of one part: n, mean and M2 (the sum of squared deviations from the mean)."""
    grouped = values.group_by(KEYS).aggregate(
        [
            ("value", "count"),
            ("value", "mean"),
            ("value", "variance", pc.VarianceOptions(ddof=0)),
        ]
    )
    n = grouped["value_count"].to_numpy().astype(np.float64)
    m2 = grouped["value_variance"].to_numpy(zero_copy_only=False) * n
    return pa.table(
        {
            **{key: grouped[key] for key in KEYS},
            "n": n,
            "mean": grouped["value_mean"],
            "m2": m2,
        }
    )


def _combine(stats: list[pa.Table]) -> pa.Table:
    """The parts' per-cell statistics pooled (Chan et al.'s formula: M2 = sum M2_i +
    sum n_i (mean_i - mean)^2), with the standard deviation and the 95% interval."""
    if not stats:
        empty = {key: [] for key in (*KEYS, "n", "mean", "std", "ci_low", "ci_high")}
        return pa.table(empty)
    table = pa.concat_tables(stats)
    weighted = table.append_column("sum", pc.multiply(table["n"], table["mean"]))
    totals = weighted.group_by(KEYS).aggregate([("n", "sum"), ("sum", "sum")])
    totals = totals.append_column("total_mean", pc.divide(totals["sum_sum"], totals["n_sum"]))
    joined = table.join(totals.select([*KEYS, "total_mean"]), KEYS, join_type="inner")
    spread = pc.multiply(
        joined["n"], pc.power(pc.subtract(joined["mean"], joined["total_mean"]), 2)
    )
    joined = joined.append_column("spread", pc.add(joined["m2"], spread))
    pooled = joined.group_by(KEYS).aggregate([("n", "sum"), ("spread", "sum")])
    pooled = pooled.join(totals.select([*KEYS, "total_mean"]), KEYS, join_type="inner").sort_by(
        [(key, "ascending") for key in KEYS]
    )
    n = pooled["n_sum"].to_numpy()
    mean = pooled["total_mean"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(pooled["spread_sum"].to_numpy() / (n - 1))
    half = Z95 * std / np.sqrt(n)
    return pa.table(
        {
            **{key: pooled[key] for key in KEYS},
            "n": n.astype(np.int64),
            "mean": mean,
            "std": std,
            "ci_low": mean - half,
            "ci_high": mean + half,
        }
    )


def _top_counts(values: pa.Table, quantity: str, k: int) -> pa.Table:
    """How many of this part's prompts have each cell among their k largest |value|."""
    rows = values.filter(pc.field("quantity") == quantity)
    rows = rows.append_column("size", pc.abs(rows["value"]))
    rows = rows.sort_by([("prompt_id", "ascending"), ("size", "descending")])
    prompt = rows["prompt_id"].to_numpy()
    _, starts, inverse = np.unique(prompt, return_index=True, return_inverse=True)
    rank = np.arange(len(prompt)) - starts[inverse]
    top = rows.filter(pa.array(rank < k))
    return top.group_by(KEYS).aggregate([("value", "count")]).rename_columns([*KEYS, "count"])


def _frequency(counts: list[pa.Table], stats: list[pa.Table]) -> pa.Table:
    """Top-k counts pooled over parts; `prompts` is how many prompts measured the quantity."""
    counts = [c for c in counts if c.num_rows]
    if not counts:
        return pa.table({key: [] for key in (*KEYS, "count", "prompts", "frequency")})
    pooled = pa.concat_tables(counts).group_by(KEYS).aggregate([("count", "sum")])
    # prompts per quantity: the most-measured cell's n (every prompt measures each ranked cell
    # of its own grid once)
    measured = (
        pa.concat_tables(stats)
        .group_by(KEYS)
        .aggregate([("n", "sum")])
        .group_by(["quantity"])
        .aggregate([("n_sum", "max")])
    )
    table = pooled.join(measured, ["quantity"], join_type="inner").sort_by(
        [
            ("quantity", "ascending"),
            ("count_sum", "descending"),
            ("layer", "ascending"),
            ("column", "ascending"),
        ]
    )
    prompts = table["n_sum_max"].to_numpy()
    count = table["count_sum"].to_numpy()
    return pa.table(
        {
            **{key: table[key] for key in KEYS},
            "count": count,
            "prompts": prompts.astype(np.int64),
            "frequency": count / prompts,
        }
    )


def _pairs(values: pa.Table) -> pa.Table:
    """(atp, exact) of every (prompt, cell) of the part measured both ways."""
    keys = ["prompt_id", "layer", "column"]
    atp = values.filter(pc.field("quantity") == "atp").select([*keys, "value"])
    exact = values.filter(pc.field("quantity") == "exact").select([*keys, "value"])
    if not atp.num_rows or not exact.num_rows:
        return pa.table({"atp": pa.array([], pa.float64()), "exact": pa.array([], pa.float64())})
    joined = atp.rename_columns([*keys, "atp"]).join(
        exact.rename_columns([*keys, "exact"]), keys, join_type="inner"
    )
    return joined.select(["atp", "exact"])


def _agreement(parts: list[pa.Table]) -> dict | None:
    """AtP against exact over every pair measured both ways; None when there are none."""
    pairs = pa.concat_tables(parts) if parts else None
    if pairs is None or pairs.num_rows < 2:
        return None
    atp, exact = pairs["atp"].to_numpy(), pairs["exact"].to_numpy()
    pearson = float(np.corrcoef(atp, exact)[0, 1]) if atp.std() and exact.std() else None
    return {
        "pairs": len(atp),
        "spearman": spearman(torch.tensor(atp), torch.tensor(exact)),
        "pearson": pearson,
        "mean_abs_difference": float(np.abs(atp - exact).mean()),
        "same_sign": float((np.sign(atp) == np.sign(exact)).mean()),
    }
