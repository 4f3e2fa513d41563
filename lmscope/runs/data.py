"""A run's dataset: JSONL, CSV, Parquet, or a folder saved by Hugging Face `datasets`.

Every reader gives the same `Record`s: the row's number as a person finds it (1-based: the line of
a JSONL file, the record otherwise) and its fields among `COLUMNS`. A file that cannot be read at
all raises `DataError`, one line; a row that is malformed (a JSONL line that is not a JSON object)
is a record with its `problem`, which the run reports and skips.

A `datasets` folder (`Dataset.save_to_disk`) is Arrow IPC stream files listed in its `state.json`;
pyarrow reads them as they are, so lmscope needs neither the `datasets` library nor its
dependencies (pandas, fsspec, multiprocess, ...) to read one.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core.errors import LmscopeError

COLUMNS = ("prompt", "corrupt", "answer", "wrong")
FORMATS = ("jsonl", "csv", "parquet", "datasets")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class DataError(LmscopeError):
    """The dataset cannot be read at all (missing, unreadable, not the format it claims)."""


@dataclass(frozen=True)
class Record:
    """One row of the dataset: its number (1-based) and its fields among `COLUMNS`."""

    row: int
    fields: dict[str, object] = field(default_factory=dict)
    problem: str | None = None  # why the row cannot be read, when it cannot


@dataclass(frozen=True)
class Bounds:
    """What a dataset from a client may hold once read (a server's uploads; `lmscope run` reads
    its operator's files unbounded): rows, and bytes of text in the columns read. A small
    Parquet file can decode to far more than its size (one string repeated by its dictionary, a
    compressed page): it is checked from its metadata and dictionaries before any row is made."""

    rows: int
    text_bytes: int


@dataclass(frozen=True)
class Dataset:
    """The rows of one file or folder, its format, the columns it has and its content's hash."""

    path: Path
    format: str
    columns: tuple[str, ...]
    records: list[Record]
    sha256: str


def data_format(path: Path) -> str:
    """Which reader a path needs: by suffix, or `datasets` for a saved folder."""
    if path.is_dir():
        return "datasets"
    return format_of_name(path)


def format_of_name(path: Path) -> str:
    """Which reader a file needs, by its suffix alone."""
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"{path}: lmscope reads .jsonl, .csv, .parquet or a folder saved by Hugging Face "
            "datasets (save_to_disk); this name has none of these forms."
        )
    return found


def read_dataset(path: str | Path, bounds: Bounds | None = None) -> Dataset:
    """Every row of the dataset at `path`; a `DataError` (one line) when it cannot be read, or
    holds more than `bounds` allows."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    kind = data_format(path)
    try:
        if kind == "jsonl":
            records, columns = _jsonl(path)
        elif kind == "csv":
            records, columns = _csv(path)
        elif kind == "parquet" and bounds is not None:
            records, columns = _table(_bounded_parquet(path, bounds))
        else:
            table = pq.read_table(path) if kind == "parquet" else _saved_dataset(path)
            records, columns = _table(table)
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as error:
        raise DataError(f"{path}: cannot be read as {kind}: {_first_line(error)}") from None
    if bounds is not None and len(records) > bounds.rows:
        raise DataError(_too_many(path, len(records), bounds))
    return Dataset(path, kind, columns, records, content_hash(path))


def _too_many(path: Path, rows: int, bounds: Bounds) -> str:
    return (
        f"{path}: {rows:,} rows; a dataset sent to a server has at most {bounds.rows:,} "
        "(run larger ones with lmscope run)."
    )


def _bounded_parquet(path: Path, bounds: Bounds) -> pa.Table:
    """The dataset's columns of a client's Parquet file, refused from its metadata (rows, the
    bytes its pages inflate to) and from its dictionaries (the text they decode to) before the
    rows are made; only text columns are read."""
    file = pq.ParquetFile(path)
    if file.metadata.num_rows > bounds.rows:
        raise DataError(_too_many(path, file.metadata.num_rows, bounds))
    schema = file.schema_arrow
    columns = [c for c in COLUMNS if c in schema.names]
    inflated = sum(  # the pages of the columns read, as they decompress
        chunk.total_uncompressed_size
        for chunk in (
            file.metadata.row_group(g).column(c)
            for g in range(file.metadata.num_row_groups)
            for c in range(file.metadata.num_columns)
        )
        if chunk.path_in_schema in columns
    )
    too_large = f"{path}: its text is more than a server takes ({bounds.text_bytes:,} bytes)."
    if inflated > bounds.text_bytes:
        raise DataError(too_large)
    for name in columns:
        kind = schema.field(name).type
        text = kind.value_type if pa.types.is_dictionary(kind) else kind
        if not (pa.types.is_string(text) or pa.types.is_large_string(text)):
            raise DataError(f"{path}: its column {name!r} holds {kind}, not text.")
    table = pq.ParquetFile(path, read_dictionary=columns).read(columns=columns)
    if sum(_text_bytes(table.column(c)) for c in columns) > bounds.text_bytes:
        raise DataError(too_large)
    return table


def _text_bytes(column: pa.ChunkedArray) -> int:
    """The bytes a text column decodes to, counted without decoding a dictionary."""
    total = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
        else:
            lengths = pc.binary_length(chunk)
        total += pc.sum(lengths).as_py() or 0
    return total


def content_hash(path: Path) -> str:
    """SHA-256 of the dataset's bytes (of a folder: its data files' names and bytes, in order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _jsonl(path: Path) -> tuple[list[Record], tuple[str, ...]]:
    records, seen = [], set()
    with path.open(encoding="utf-8-sig") as handle:  # a BOM is not part of the first key
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                records.append(Record(number, problem=f"not valid JSON ({error.msg})"))
                continue
            except (RecursionError, ValueError):  # nested too deeply; an integer too long
                records.append(Record(number, problem="JSON lmscope does not read (nested too "
                                                      "deeply, or a number too long)"))  # fmt: skip
                continue
            if not isinstance(value, dict):
                records.append(Record(number, problem="not a JSON object"))
                continue
            fields = {k: v for k, v in value.items() if k in COLUMNS and v is not None}
            seen |= fields.keys()
            records.append(Record(number, fields))
    return records, tuple(c for c in COLUMNS if c in seen)


def _csv(path: Path) -> tuple[list[Record], tuple[str, ...]]:
    """CSV with a header row; every field is text, kept exactly (a leading space matters in
    ' Mary'). Python's csv module, not pyarrow's, which infers types ('1' would be a number)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:  # Excel writes a BOM
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty CSV file (no header row).")
        columns = tuple(c for c in COLUMNS if c in reader.fieldnames)
        records = []
        for number, row in enumerate(reader, start=1):
            fields = {c: row[c] for c in columns if row.get(c) is not None}
            records.append(Record(number, fields))
    return records, columns


def _saved_dataset(path: Path) -> pa.Table:
    """The table of a folder written by `datasets.Dataset.save_to_disk`."""
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        raise DataError(
            f"{path} holds several splits ({', '.join(splits)}); name one, e.g. {path / splits[0]}."
        )
    state = path / "state.json"
    if not state.is_file():
        raise DataError(f"{path}: not a saved Hugging Face dataset (no state.json).")
    files = [
        path / f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]
    ]
    tables = []
    for file in files:
        with pa.memory_map(str(file)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if tables else pa.table({})


def _table(table: pa.Table) -> tuple[list[Record], tuple[str, ...]]:
    columns = tuple(c for c in COLUMNS if c in table.column_names)
    rows = table.select(list(columns)).to_pylist() if columns else [{}] * table.num_rows
    records = [_record(number, row) for number, row in enumerate(rows, start=1)]
    return records, columns


def _record(number: int, row: dict) -> Record:
    """A table's row; bytes (a binary column) are not text, and not JSON to carry on."""
    fields = {k: v for k, v in row.items() if v is not None}
    binary = [k for k, v in fields.items() if isinstance(v, bytes)]
    if binary:
        return Record(number, problem=f"{binary[0]} holds bytes, not text")
    return Record(number, fields)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
