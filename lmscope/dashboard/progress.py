"""Each tab's long work: a progress line with an estimate, a Cancel button, and a heartbeat.

Every long callback (Analyze, the experiments) runs inside `Tabs.job`, a `core.jobs.Job` for its
tab. The status poll (`progress-poll`, always on: every 2 s when the tab is idle, 0.4 s while
it waits) shows the tab's jobs and records that the tab is still open; a job whose tab has not
polled for `HEARTBEAT` seconds (the tab was closed) is cancelled at its next check, as is an
older job of the same kind (and, for Analyze, every job of the tab) when a newer one starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dash import Dash, Input, Output, State, dcc, html, no_update, set_props

from ..core import jobs
from ..core.jobs import Job

HEARTBEAT = 10.0  # seconds without a poll after which a tab counts as closed
IDLE_POLL_MS, BUSY_POLL_MS = 2000, 400
TABS_KEPT = 1000  # tabs whose last poll is remembered
CANCELLING = "Cancelling…"


class Tabs:
    """The running jobs of each tab (by client id) and when each tab last polled."""

    def __init__(self, heartbeat: float = HEARTBEAT) -> None:
        self.heartbeat = heartbeat
        self._jobs: dict[str, dict[str, Job]] = {}
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

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
            if len(self._seen) > TABS_KEPT:
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


def tabs(app: Dash) -> Tabs:
    """The app's registry of tab jobs (one per app, made on first use)."""
    found = getattr(app, "_lmscope_tabs", None)
    if found is None:
        found = app._lmscope_tabs = Tabs()
    return found


def status_line() -> html.Div:
    """The status line under the model picker, with its Cancel button (shown while work runs)."""
    return html.Div(
        [
            html.Div(id="status", className="status", role="status"),
            html.Button("Cancel", id="cancel", className="button secondary", hidden=True),
        ],
        className="row status-row",
    )


def poll() -> dcc.Interval:
    """The status poll: always on, so that the server knows the tab is still open."""
    return dcc.Interval(id="progress-poll", interval=IDLE_POLL_MS)


def register(app: Dash) -> Tabs:
    """The status poll and the Cancel button; returns the app's `Tabs`."""
    registry = tabs(app)

    @app.callback(
        Output("status", "children"),
        Input("progress-poll", "n_intervals"),
        State("message", "children"),  # as State: a pending Analyze writes it, and Dash holds
        State("client", "data"),  # back every callback with an input that is pending
    )
    def status(_tick, _message, client):
        """The tab's progress lines; also its heartbeat, and the poll's pace."""
        if not isinstance(client, str):
            return ""
        lines = registry.poll(client)
        set_props("cancel", {"hidden": not lines})
        set_props("progress-poll", {"interval": BUSY_POLL_MS if lines else IDLE_POLL_MS})
        return f"… {' · '.join(lines)}" if lines else ""

    @app.callback(
        Output("status", "children", allow_duplicate=True),
        Input("cancel", "n_clicks"),
        State("client", "data"),
        prevent_initial_call=True,
    )
    def cancel(_clicks, client):
        if not isinstance(client, str) or not registry.cancel(client):
            return no_update
        return f"… {CANCELLING}"

    return registry
