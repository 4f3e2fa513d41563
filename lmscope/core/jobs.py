"""Long work that shows progress and can be stopped: one `Job` per request, active in its context.

Like trace.py's `Recorder`, a job is active in the calling thread's context (a ContextVar).
Library code calls `report(done, total, what)` between its passes and `check()` where it may
stop; trace.py calls `layer(i, n)` entering each block of every forward pass, so even one long
pass shows how far it got and stops within a layer. With no job active every call is a no-op:
library users, the CLI and tests see no change.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from .errors import LmscopeError

CANCELLED = "Cancelled."
GONE = "Cancelled: the client went away."
MIN_FRACTION = 0.02  # no estimate before this share of the work is done
MIN_SECONDS = 1.0  # ... nor before this much time has passed


class Cancelled(LmscopeError):
    """The job was cancelled (by the user, by a newer request, or because its client left)."""

    status = 499  # client closed request (nginx's code): nobody is left to read the answer


@dataclass
class Job:
    """One request's progress and its cancel flag.

    `stale` (optional) says the job's client is gone (a tab that stopped polling, a closed
    connection); `parent` is the job active where this one started: cancelling it cancels this.

    What a job shows only moves forward: the share done never falls (a unit of work may run
    several passes, each entering layer 0 again; a unit's passes are counted and the share within
    it spreads over as many as the last unit took), the counters never go back, and the estimated
    end only moves earlier, until the work outlasts it (then it is estimated afresh). Work that
    starts a new count (another `what` or `total`) continues the share from where it stood, over
    what is left, and is estimated from its own start: report the whole count first to avoid it.
    """

    label: str = ""
    stale: Callable[[], bool] | None = None
    parent: Job | None = None
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    what: str = "pass"
    at_most: bool = False  # `total` is a budget the work may stop short of
    inner: tuple[int, int] = (0, 0)  # (layer, layers) of the pass now running
    passes: int = 0  # passes begun since the job started
    _reason: str | None = field(default=None, repr=False)
    _first: float | None = field(default=None, repr=False)  # when progress was first reported
    _unit_passes: int = field(default=0, repr=False)  # passes begun in the current unit
    _per_unit: int = field(default=1, repr=False)  # passes the last finished unit(s) took each
    _peak: float = field(default=0.0, repr=False)  # the largest share done so far
    _base: float = field(default=0.0, repr=False)  # the share done when this count began
    _count_start: float | None = field(default=None, repr=False)  # when this count began
    _end: float | None = field(default=None, repr=False)  # the estimated end shown
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cancel(self, reason: str = CANCELLED) -> None:
        """Ask the job to stop at its next check (the first reason given is kept)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason

    @property
    def cancelled(self) -> bool:
        return self.reason() is not None

    def reason(self) -> str | None:
        """Why the job must stop, or None; a stale client or a cancelled parent counts."""
        if self._reason is None and self.stale is not None and self.stale():
            self.cancel(GONE)
        if self._reason is None and self.parent is not None:
            parent = self.parent.reason()
            if parent is not None:
                self.cancel(parent)
        return self._reason

    def check(self) -> None:
        """Raise `Cancelled` if the job must stop."""
        reason = self.reason()
        if reason is not None:
            raise Cancelled(reason)

    def report(self, done: int, total: int, what: str = "pass", at_most: bool = False) -> None:
        """`done` of `total` units of work are finished (the next one is starting)."""
        with self._lock:
            now = time.monotonic()
            self._first = self._first or now
            if (what, total) == (self.what, self.total):
                done = max(done, self.done)  # the same count never goes back
            elif self.total or self.passes:  # a new count, after work: it goes on from here
                self._base, self._count_start, self._end = self._peak, now, None
                self.done, self._unit_passes, self._per_unit = 0, 0, 1
            if done > self.done and self._unit_passes:
                self._per_unit = max(1, math.ceil(self._unit_passes / (done - self.done)))
            self.done, self.total, self.what, self.at_most = done, total, what, at_most
            self.inner, self._unit_passes = (0, 0), 0
            self._peak = max(self._peak, self._share())

    def layer(self, layer: int, layers: int) -> None:
        """The pass now running enters block `layer` of `layers`."""
        with self._lock:
            self._first = self._first or time.monotonic()
            if not self._unit_passes or layer <= self.inner[0]:  # a pass begins
                self._unit_passes += 1
                self.passes += 1
            self.inner = (layer, layers)
            self._peak = max(self._peak, self._share())

    def _share(self) -> float:
        """The share done now: finished units, and the running unit's passes and layers."""
        layer, layers = self.inner
        begun = max(self._unit_passes, 1)
        within = (begun - 1 + (layer / layers if layers else 0.0)) / max(self._per_unit, begun)
        count = within if not self.total else min(1.0, (self.done + within) / self.total)
        return self._base + (1 - self._base) * count

    @property
    def fraction(self) -> float:
        """The share of the work done, counting the running pass's layers; it never falls."""
        return self._peak

    def remaining(self) -> float | None:
        """Seconds left, from the time so far and the share done (None until it means something,
        and for work of unknown size that runs more than one pass)."""
        if self._first is None:
            return None
        now = time.monotonic()
        elapsed = now - (self._count_start or self._first)
        share = (self._peak - self._base) / (1 - self._base) if self._base < 1 else 1.0
        if share < MIN_FRACTION or elapsed < MIN_SECONDS or (not self.total and self.passes > 1):
            return None
        end = now + elapsed * (1 - share) / share
        with self._lock:
            if self._end is None or end < self._end or now >= self._end:
                self._end = end  # earlier, or the last estimate ran out: estimated afresh
            return self._end - now

    def line(self) -> str:
        """The progress line: "Ablation scan: pass 3 of 12, about 20 s left"."""
        layer, layers = self.inner
        if self.total:
            bound = "at most " if self.at_most else ""
            where = f"{self.what} {min(self.done + 1, self.total):,} of {bound}{self.total:,}"
        elif layers:
            where = f"layer {layer + 1} of {layers}"
            if self.passes > 1:  # layers start again in each pass: the pass counts on
                where = f"pass {self.passes}, {where}"
        else:
            where = ""
        left = self.remaining()
        if left is not None:
            where += (
                (", " if where else "") + ("at most " if self.at_most else "") + time_left(left)
            )
        return ": ".join(part for part in (self.label, where) if part)


def time_left(seconds: float) -> str:
    """A rough time left: "a few seconds left", "about 20 s left", "about 3 min left"."""
    if seconds < 8:
        return "a few seconds left"
    if seconds < 90:
        return f"about {int(round(seconds / 5) * 5)} s left"
    return f"about {round(seconds / 60)} min left"


_ACTIVE: ContextVar[Job | None] = ContextVar("lmscope_job", default=None)


@contextmanager
def running(job: Job) -> Iterator[Job]:
    """Make `job` the active one in this context (a job already active becomes its parent)."""
    if job.parent is None:
        job.parent = _ACTIVE.get()
    token = _ACTIVE.set(job)
    try:
        yield job
    finally:
        _ACTIVE.reset(token)


def current() -> Job | None:
    return _ACTIVE.get()


def check() -> None:
    """Raise `Cancelled` if the active job was cancelled; nothing when no job is active."""
    job = _ACTIVE.get()
    if job is not None:
        job.check()


def report(done: int, total: int, what: str = "pass", at_most: bool = False) -> None:
    """Tell the active job `done` of `total` units are finished, then check for a cancel."""
    job = _ACTIVE.get()
    if job is not None:
        job.report(done, total, what, at_most)
        job.check()


def layer(index: int, layers: int) -> None:
    """trace.py, entering block `index` of `layers`: progress within the pass, and a cancel point."""
    job = _ACTIVE.get()
    if job is not None:
        job.layer(index, layers)
        job.check()
