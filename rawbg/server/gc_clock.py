"""`GcClock`: the cyclic GC's young collections on a clock, while background work is pending.

CPython (3.11, where this was measured) starts a young collection when the
GC-tracked objects allocated since the last one, minus those freed, pass
700, and a freed object counts whatever generation it was in. A server in a steady state with
pending tasks (1 s tasks at 4 000 req/s) allocates about 12 tracked objects
per request that live as long as the request's task, and frees as many as
older tasks end: the count stays near zero, no young collection comes, and
the young generation fills up with every pending task (52 000 objects at
4 000 pending). The collection that a burst of requests sets off at last then
traverses all of them in one pause that lands on the requests in flight: 4 to
5 ms of CPU at 4 000 pending, more with more (benchmarks/README.md, "Where
the p99 goes").

So while background work is pending, the server collects the young
generation itself every `interval` (10 ms: a fraction of a millisecond for
what a busy server allocates in that time), and the middle one every
`GC_MIDDLE_EVERY`-th time, which then holds about 100 ms of survivors (1 to
3 ms of pause). What outlives that (most of a 1 s task) moves to the old
generation, whose full collections stay CPython's own; they come after
`GC_FULL_THRESHOLD` (1 000) middle collections instead of CPython's 10, which
with the clock's middle collection every 100 ms would allow one a second.
With nothing pending, CPython's own count works (what is allocated is freed
soon, or the count grows), and the clock only looks every `GC_IDLE_CHECK`.

It is one timer on the loop; ``interval=0`` (``--gc-interval 0``) leaves
the GC, and its thresholds, entirely to CPython, and an app that disabled
the GC (`gc.disable`) is left alone.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING

# The GC clock (rawbg/server/gc_clock.py): a middle collection every 10th young one,
# CPython's own ratio (its second threshold), so the middle generation holds
# about 100 ms of survivors. Full collections after 1 000 middle ones instead
# of CPython's 10, which at a middle collection every 100 ms would be every
# second: a full collection traverses every pending task, 18-48 ms at 6 000
# pending 1 s tasks, and at 100 (every 10 s) one fell in every 10 s run at
# 5 700 req/s; at 1 000 it comes every 100 s under such a load, and none fell
# in the same runs (benchmarks/README.md, "Where the p99 goes"). What it
# collects is cyclic garbage that outlived a middle collection, which rawbg's
# own request path does not make. With nothing pending the clock only checks
# once a second.
GC_MIDDLE_EVERY = 10
GC_FULL_THRESHOLD = 1000
GC_IDLE_CHECK = 1.0

if TYPE_CHECKING:
    from rawbg.tasks.pending import PendingWork


class GcClock:
    """Collects the young (and every `GC_MIDDLE_EVERY`-th time the middle) generation while
    `pending` work is queued."""

    def __init__(self, *, interval: float, pending: PendingWork) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.interval = interval
        self._pending = pending
        #: collections the clock ran itself
        self.collections = 0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        young, middle, full = gc.get_threshold()
        gc.set_threshold(young, middle, max(full, GC_FULL_THRESHOLD))
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        delay = GC_IDLE_CHECK
        if self._pending.count and gc.isenabled():
            self.collections += 1
            gc.collect(1 if self.collections % GC_MIDDLE_EVERY == 0 else 0)
            delay = self.interval
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)
