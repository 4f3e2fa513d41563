"""Each client's long work: one `core.jobs.Job` per kind of request, cancelled when its client
is gone or a newer request of the same kind replaces it.

A dashboard tab is a client (its random id); its status poll is its heartbeat. A job whose client
has not polled for `HEARTBEAT` seconds (the tab was closed) is cancelled at its next check, as is
an older job of the same kind (or, with `replaces_all`, every job of the client) when a newer one
starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..core import jobs
from ..core.jobs import Job

HEARTBEAT = 10.0  # seconds without a poll after which a client counts as gone
CLIENTS_KEPT = 1000  # clients whose last poll is remembered
CANCELLING = "Cancelling…"


class ClientJobs:
    """The running jobs of each client (a dashboard tab, by its client id) and when each client
    last polled."""

    def __init__(self, heartbeat: float = HEARTBEAT) -> None:
        self.heartbeat = heartbeat
        self._jobs: dict[str, dict[str, Job]] = {}
        self._seen: dict[str, float] = {}
        self._confirmed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def confirm(self, client: str, what: str) -> None:
        """Client `client` confirmed long work `what` after seeing its estimate: its next start
        is allowed past the time limit, once (see `core.budget.confirmed`)."""
        with self._lock:
            if len(self._confirmed) > CLIENTS_KEPT:
                self._confirmed.clear()
            self._confirmed.add((client, what))

    def confirmed(self, client: str, what: str) -> bool:
        """Whether `what` was confirmed by `client` (and the confirmation is used up)."""
        with self._lock:
            found = (client, what) in self._confirmed
            self._confirmed.discard((client, what))
            return found

    @contextmanager
    def job(self, client: str, kind: str, label: str = "", *, replaces_all: bool = False
            ) -> Iterator[Job]:  # fmt: skip
        """Run the block as tab `client`'s job of `kind`, active for the library's checks; an
        older job of that kind (or with `replaces_all`, every job of the tab) is cancelled."""
        job = Job(label)
        job.stale = lambda: self.gone(client, job.started)
        with self._lock:
            mine = self._jobs.setdefault(client, {})
            for other_kind, other in list(mine.items()):
                if other_kind == kind or replaces_all:
                    other.cancel("Cancelled: a newer request from this tab replaced it.")
            mine[kind] = job
        try:
            with jobs.running(job):
                yield job
        finally:
            with self._lock:
                if self._jobs.get(client, {}).get(kind) is job:
                    del self._jobs[client][kind]
                    if not self._jobs[client]:
                        del self._jobs[client]

    def gone(self, client: str, since: float) -> bool:
        """Whether tab `client` has stopped polling (counted from `since` at the earliest)."""
        last = max(self._seen.get(client, since), since)
        return time.monotonic() - last > self.heartbeat

    def poll(self, client: str) -> list[str]:
        """Tab `client` is open: its heartbeat, and the progress line of each of its jobs."""
        with self._lock:
            if len(self._seen) > CLIENTS_KEPT:
                self._seen = {c: t for c, t in self._seen.items() if c in self._jobs}
            self._seen[client] = time.monotonic()
            running = list(self._jobs.get(client, {}).values())
        return [CANCELLING if job.cancelled else job.line() for job in running]

    def cancel(self, client: str) -> int:
        """Cancel every job of tab `client` (the Cancel button); how many there were."""
        with self._lock:
            running = list(self._jobs.get(client, {}).values())
        for job in running:
            job.cancel()
        return len(running)
