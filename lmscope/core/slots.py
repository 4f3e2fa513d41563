"""Forward passes take turns, first come first served, and a long pass lets a waiting one in.

A pass holds one of a few slots (trace.py: cores / torch threads). Waiting passes are served in
the order they asked (FIFO tickets), and a pass that has held its slot for `QUANTUM` seconds gives
it up at the next layer boundary when another pass is waiting, then queues again behind it. So a
5-token analysis asked for during a 2,000-token scan waits about one layer of the scan, not the
scan. A pass that gives way keeps its tensors (memory grows by at most one pass per waiter).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

QUANTUM = 0.2  # seconds a pass keeps its slot before a waiting pass may have it
POLL = 0.2  # seconds between cancel checks while waiting for a slot


class FairSlots:
    """`slots` slots handed out in the order they were asked for."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def waiting(self) -> int:
        """How many passes are waiting for a slot."""
        return len(self._queue)

    def acquire(self, check: Callable[[], None] | None = None) -> None:
        """Wait for a slot, behind every earlier ask; `check` (which may raise, e.g. a cancel)
        is called while waiting, and the ask leaves the queue if it does."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (self._free and self._queue[0] is ticket):
                    self._cond.wait(POLL)
                    if check is not None:
                        check()
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._free -= 1
            if self._free:
                self._cond.notify_all()  # the next in line may take another free slot

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()

    @contextmanager
    def turn(self, check: Callable[[], None] | None = None) -> Iterator[Turn]:
        """Hold a slot for the block (see `Turn.give_way` to share it)."""
        self.acquire(check)
        turn = Turn(self, time.monotonic())
        try:
            yield turn
        finally:
            if turn.held:
                self.release()


@dataclass
class Turn:
    """One pass's hold on a slot."""

    slots: FairSlots
    since: float
    held: bool = True

    def give_way(self, check: Callable[[], None] | None = None) -> bool:
        """If another pass waits and this one has had `QUANTUM`, let it go first (queue again)."""
        if not self.held or not self.slots.waiting or time.monotonic() - self.since < QUANTUM:
            return False
        self.held = False
        self.slots.release()
        self.slots.acquire(check)
        self.held, self.since = True, time.monotonic()
        return True
