"""The index of every run on this machine: one SQLite table, written as runs start, go on and end,
read by `lmscope runs` (and, later, the API and the Runs page).

Where: `$LMSCOPE_RUNS_INDEX`, else `$XDG_DATA_HOME/lmscope/runs.sqlite`, else
`~/.local/share/lmscope/runs.sqlite`. The runs themselves stay in their own folders; the index
holds what lists and filters them, and each run's folder is the truth it can be rebuilt from.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from contextlib import closing
from pathlib import Path

ENV = "LMSCOPE_RUNS_INDEX"
COLUMNS = (
    "id",
    "path",
    "model",
    "experiment",
    "data",
    "data_sha256",
    "settings",
    "status",
    "done",
    "skipped",
    "total",
    "created",
    "updated",
    "pid",
    "host",
    "message",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    model TEXT NOT NULL,
    experiment TEXT NOT NULL,
    data TEXT NOT NULL,
    data_sha256 TEXT NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL,
    done INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    total INTEGER NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model, experiment);
"""


def default_path() -> Path:
    explicit = os.environ.get(ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lmscope" / "runs.sqlite"


class RunIndex:
    """The runs table. Each call opens its own connection: safe from any thread or process."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(_SCHEMA)
        return connection

    def record(self, manifest: dict, path: str | Path) -> None:
        """Insert or update the run a manifest describes."""
        counts, session = manifest["counts"], (manifest.get("sessions") or [{}])[-1]
        row = {
            "id": manifest["id"],
            "path": str(path),
            "model": manifest["model"]["id"],
            "experiment": manifest["experiment"],
            "data": manifest["data"]["path"],
            "data_sha256": manifest["data"]["sha256"],
            "settings": json.dumps(manifest["settings"], sort_keys=True),
            "status": manifest["status"],
            "done": counts["done"],
            "skipped": counts["skipped"],
            "total": counts["total"],
            "created": manifest["created"],
            "updated": manifest["updated"],
            "pid": session.get("pid"),
            "host": session.get("host"),
            "message": manifest.get("message"),
        }
        names = ", ".join(COLUMNS)
        marks = ", ".join(f":{c}" for c in COLUMNS)
        with closing(self._connect()) as connection, connection:
            connection.execute(f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", row)

    def runs(
        self, *, model: str | None = None, experiment: str | None = None, status: str | None = None
    ) -> list[dict]:
        """Runs, newest first, filtered by model, experiment and status (`stopped`: a run marked
        running whose process is gone)."""
        where, args = [], []
        for column, value in (("model", model), ("experiment", experiment)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with closing(self._connect()) as connection:
            rows = [
                _live(dict(r)) for r in connection.execute(query + " ORDER BY updated DESC", args)
            ]
        return [r for r in rows if status is None or r["status"] == status]

    def get(self, key: str) -> dict | None:
        """One run by id, id prefix or folder."""
        path = str(Path(key).expanduser().resolve()) if Path(key).expanduser().exists() else None
        with closing(self._connect()) as connection:
            found = connection.execute(
                "SELECT * FROM runs WHERE path = ? OR id LIKE ? ORDER BY updated DESC",
                (path, key.replace("%", "") + "%"),
            ).fetchall()
        return _live(dict(found[0])) if len(found) == 1 else None

    def forget(self, run_id: str) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("DELETE FROM runs WHERE id = ?", (run_id,))


def _live(row: dict) -> dict:
    """A run marked running on this host whose process has gone is reported `stopped`."""
    row["settings"] = json.loads(row["settings"])
    if row["status"] == "running" and row["host"] == socket.gethostname() and row["pid"]:
        try:
            os.kill(row["pid"], 0)
        except ProcessLookupError:
            row["status"] = "stopped"
        except PermissionError:
            pass
    return row
