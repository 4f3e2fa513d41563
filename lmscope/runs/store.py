"""A run on disk: a manifest, every per-prompt value as Parquet rows, written part by part.

    OUT/manifest.json            what was run (model, its card, dataset hash, settings, version,
                                 timings, status, counts)
    OUT/parts/N.values.parquet   one row per prompt and cell: model, prompt_id, quantity, layer,
                                 column, value
    OUT/parts/N.prompts.parquet  one row per prompt of part N: its text, token count, notices, or
                                 why it was skipped
    OUT/aggregates/              what `aggregate.py` computes from the parts (recomputable)

Each part is written to a temporary name and renamed, values first, prompts last: a part counts as
done only once its prompts file exists, so a run stopped at any point (Ctrl-C, a crash, SIGKILL)
leaves whole parts and at most one values file with no prompts file, removed when the run
resumes. A prompt is in exactly one done part: resuming computes only the prompts not in one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..core.errors import LmscopeError

MANIFEST = "manifest.json"
FORMAT = 1  # bump when the layout or a table's schema changes
VALUES = pa.schema(
    [
        ("model", pa.string()),
        ("prompt_id", pa.int64()),
        ("quantity", pa.string()),
        ("layer", pa.int16()),
        ("column", pa.int32()),
        ("value", pa.float64()),
    ]
)
PROMPTS = pa.schema(
    [
        ("prompt_id", pa.int64()),
        ("prompt", pa.string()),
        ("fields", pa.string()),  # the row's columns as a JSON object
        ("tokens", pa.int32()),
        ("skipped", pa.string()),
        ("notices", pa.list_(pa.string())),
    ]
)
_PART = re.compile(r"^(\d{6})\.(values|prompts)\.parquet$")


class RunError(LmscopeError):
    """A run cannot start or go on (its folder holds another run, is in use, ...)."""


class RunStore:
    """One run's folder: write parts (`write_part`), read what is done (`prompts`, `values`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.parts = self.path / "parts"

    # -- the manifest

    def manifest(self) -> dict | None:
        """The run's manifest, or None where there is no run yet."""
        try:
            return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise RunError(f"{self.path / MANIFEST} cannot be read: {error}") from None

    def save_manifest(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / MANIFEST, json.dumps(manifest, indent=1).encode())

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one writer; another run on it is refused, not interleaved."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(f"{self.path} is being written by another run.") from None
            yield

    # -- parts

    def _numbers(self, kind: str) -> set[int]:
        if not self.parts.is_dir():
            return set()
        return {
            int(m.group(1))
            for p in self.parts.iterdir()
            if (m := _PART.match(p.name)) and m.group(2) == kind
        }

    def done_parts(self) -> list[int]:
        """Parts whose prompts file is written, in order."""
        return sorted(self._numbers("prompts"))

    def tidy(self) -> None:
        """Remove what a stopped run left half done: temporary files, and values files of parts
        whose prompts file was never written."""
        if not self.parts.is_dir():
            return
        done = self._numbers("prompts")
        for p in self.parts.iterdir():
            match = _PART.match(p.name)
            if p.name.endswith(".tmp") or (match and int(match.group(1)) not in done):
                p.unlink(missing_ok=True)

    def write_part(self, values: pa.Table, prompts: pa.Table) -> int:
        """Store one part: its values, then (marking it done) its prompts."""
        self.parts.mkdir(parents=True, exist_ok=True)
        number = max(self._numbers("prompts") | self._numbers("values"), default=0) + 1
        for kind, table in (("values", values), ("prompts", prompts)):
            final = self.parts / f"{number:06d}.{kind}.parquet"
            partial = final.with_name(final.name + ".tmp")
            pq.write_table(table, partial)
            os.replace(partial, final)
        return number

    def part_tables(self) -> Iterator[tuple[pa.Table, pa.Table]]:
        """(prompts, values) of each done part, one part at a time (memory: one part)."""
        for number in self.done_parts():
            yield (
                pq.read_table(self.parts / f"{number:06d}.prompts.parquet", schema=PROMPTS),
                pq.read_table(self.parts / f"{number:06d}.values.parquet", schema=VALUES),
            )

    # -- reading

    def done_ids(self) -> set[int]:
        """Every prompt id in a done part (measured or skipped)."""
        ids: set[int] = set()
        for number in self.done_parts():
            path = self.parts / f"{number:06d}.prompts.parquet"
            ids.update(pq.read_table(path, columns=["prompt_id"])["prompt_id"].to_pylist())
        return ids

    def prompts(self) -> pa.Table:
        """Every done prompt's row (measured or skipped), by prompt id."""
        tables = [prompts for prompts, _ in self._files("prompts")]
        table = pa.concat_tables(tables) if tables else PROMPTS.empty_table()
        return table.sort_by("prompt_id")

    def skipped(self) -> list[tuple[int, str]]:
        """(row number, reason) of every skipped row, in row order."""
        table = self.prompts().filter(pc.is_valid(pc.field("skipped")))
        return list(zip(table["prompt_id"].to_pylist(), table["skipped"].to_pylist(), strict=True))

    def values(
        self, filter: pc.Expression | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """The per-prompt values of the done parts, optionally filtered, e.g.
        `pc.field("quantity") == "atp"` (Arrow reads only what the filter needs)."""
        files = [str(self.parts / f"{n:06d}.values.parquet") for n in self.done_parts()]
        if not files:
            return VALUES.empty_table()
        dataset = ds.dataset(files, schema=VALUES, format="parquet")
        return dataset.to_table(filter=filter, columns=columns)

    def cell(self, quantity: str, layer: int = -1, column: int = -1) -> pa.Table:
        """One cell's value on every prompt: (prompt_id, value), by prompt id."""
        where = (
            (pc.field("quantity") == quantity)
            & (pc.field("layer") == layer)
            & (pc.field("column") == column)
        )
        return self.values(where, ["prompt_id", "value"]).sort_by("prompt_id")

    def _files(self, kind: str) -> Iterator[tuple[pa.Table, int]]:
        schema = PROMPTS if kind == "prompts" else VALUES
        for number in self.done_parts():
            yield pq.read_table(self.parts / f"{number:06d}.{kind}.parquet", schema=schema), number


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)
