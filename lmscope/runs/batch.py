"""The per-batch function of a run: what the local engine calls in-process and each Ray actor
calls on its share, the same code either way.

`BatchWorker(spec)` loads the model once; calling it with a batch of rows (`INPUT`: an Arrow
table) answers one row per input (`OUTPUT`): the prompt's token count and its measured cells as
list columns, or why it was skipped. Rows are grouped by token count and each group runs in
batched passes (length buckets: no padding, so each row's pass is exactly its own prompt's).
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import torch

from ..core import jobs
from ..core.errors import LmscopeError
from ..core.jobs import Cancelled
from ..core.loading import load_model
from ..core.model import LoadedModel
from .measures import MEASURES, Measure, Values
from .rows import Item, make_item
from .spec import RunSpec

INPUT = pa.schema(
    [("prompt_id", pa.int64()), ("fields", pa.string()), ("problem", pa.string())]
)  # fields: the row's columns as a JSON object; problem: why the row could not be read
OUTPUT = pa.schema(
    [
        ("prompt_id", pa.int64()),
        ("prompt", pa.string()),
        ("fields", pa.string()),
        ("tokens", pa.int32()),
        ("skipped", pa.string()),  # why the row was skipped; null when it was measured
        ("notices", pa.list_(pa.string())),
        ("quantity", pa.list_(pa.string())),
        ("layer", pa.list_(pa.int16())),
        ("column", pa.list_(pa.int32())),
        ("value", pa.list_(pa.float64())),
    ]
)


CARD = b"lmscope_card"  # each answer's schema metadata: the card of the model that made it


class BatchWorker:
    """A run's model and experiment, loaded once; called with `INPUT` batches, answers `OUTPUT`.

    `spec` is a `RunSpec.to_dict()` (plain data, so Ray can ship it); `lm` a model already loaded
    in this process (the local engine's), else `spec.model` is loaded here; `threads` sets torch's
    threads (a Ray actor's share of the cores)."""

    def __init__(
        self, spec: dict, lm: LoadedModel | None = None, threads: int | None = None
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.spec = RunSpec.from_dict(spec)
        self.lm = (
            lm
            if lm is not None
            else load_model(self.spec.model, allow_local_path=True, placement=self.spec.placement())
        )
        self.measure: Measure = MEASURES[self.spec.experiment](self.lm, self.spec.settings)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        outcomes: list[Values | str | None] = [None] * len(rows)
        items: dict[int, Item] = {}
        for index, row in enumerate(rows):
            if row["problem"] is not None:
                outcomes[index] = row["problem"]
                continue
            try:
                item = make_item(
                    self.lm, row["prompt_id"], json.loads(row["fields"]), pair=self.measure.pair
                )
                self.measure.check(item)
                items[index] = item
            except Cancelled:
                raise
            except LmscopeError as error:
                outcomes[index] = str(error)
        for indices in self.passes(items):
            jobs.check()
            made = self._measured([items[i] for i in indices])
            for index, result in zip(indices, made, strict=True):
                outcomes[index] = result if isinstance(result, Values) else str(result)
        answer = _output(rows, items, outcomes)
        card = json.dumps(self.lm.card.to_dict() | {"revision": self.lm.revision})
        return answer.replace_schema_metadata({CARD: card.encode()})  # what loaded it, parity too

    def passes(self, items: dict[int, Item]) -> list[list[int]]:
        """Row indices grouped by token count, cut into batched passes of at most
        `spec.batch_size` rows and the experiment's `tokens_per_pass`."""
        by_size: dict[int, list[int]] = defaultdict(list)
        for index, item in items.items():
            by_size[item.size].append(index)
        passes = []
        for size, indices in sorted(by_size.items()):
            rows = max(1, min(self.spec.batch_size, self.measure.tokens_per_pass // size))
            passes += [indices[k : k + rows] for k in range(0, len(indices), rows)]
        return passes

    def _measured(self, items: list[Item]) -> list[Values | LmscopeError]:
        """The batch's results; when the batch as a whole is refused, each row on its own (so
        one row's error skips that row only)."""
        try:
            return self.measure.measure(items)
        except Cancelled:
            raise
        except LmscopeError as error:
            if len(items) == 1:
                return [error]
            return [made for item in items for made in self._measured([item])]


def _output(rows: list[dict], items: dict[int, Item], outcomes: list) -> pa.Table:
    """One `OUTPUT` row per input row, the measured cells as list columns."""
    columns: dict[str, list] = {name: [] for name in ("quantity", "layer", "column", "value")}
    tokens, skipped, notices, prompts = [], [], [], []
    for index, (row, outcome) in enumerate(zip(rows, outcomes, strict=True)):
        fields = json.loads(row["fields"]) if row["fields"] else {}
        prompt = fields.get("prompt")
        prompts.append(prompt if isinstance(prompt, str) else None)
        measured = isinstance(outcome, Values)
        tokens.append(items[index].size if measured else None)
        skipped.append(None if measured else str(outcome))
        notices.append(outcome.notices if measured else [])
        quantity, layer, column, value = (
            outcome.columns() if measured else ([], *(np.zeros(0),) * 3)
        )
        for name, part in zip(columns, (quantity, layer, column, value), strict=True):
            columns[name].append(part)
    return pa.table(
        {
            "prompt_id": pa.array([r["prompt_id"] for r in rows], pa.int64()),
            "prompt": pa.array(prompts, pa.string()),
            "fields": pa.array([r["fields"] for r in rows], pa.string()),
            "tokens": pa.array(tokens, pa.int32()),
            "skipped": pa.array(skipped, pa.string()),
            "notices": pa.array(notices, pa.list_(pa.string())),
            **{
                name: _lists(parts, OUTPUT.field(name).type.value_type)
                for name, parts in columns.items()
            },
        },
        schema=OUTPUT,
    )


def _lists(parts: list, kind: pa.DataType) -> pa.ListArray:
    """One list per row from per-row arrays, built from their concatenation and offsets."""
    lengths = [len(p) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = (
        [v for p in parts for v in p]
        if kind == pa.string()
        else np.concatenate([np.asarray(p) for p in parts] or [np.zeros(0)])
    )
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, kind))
