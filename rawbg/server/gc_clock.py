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

So while background work is pending, the server collects the young and the
middle generation together itself every `interval` (10 ms): each collection
traverses what was allocated in those 10 ms and is still alive (about 1 000
objects at 8 000 req/s, a tenth of a millisecond), and moves it to the old
generation. Collecting the middle generation only every tenth time (CPython's
ratio, what this clock did first) let it hold 100 ms of survivors, whose
collection paused the loop for 1 to 3 ms ten times a second: at 80 % of the
server's capacity every such pause left a queue that took several more
milliseconds to drain, and those pauses made the p99 with pending tasks
(benchmarks/README.md, "Where the p99 goes"). Every object is traversed once
on its way to the old generation either way; only the pauses are shorter.
The old generation's full collections stay CPython's own; they come after
`GC_FULL_THRESHOLD` (10 000) middle collections instead of CPython's 10,
which with the clock's middle collection every 10 ms is every 100 s.
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

# The middle generation is collected with the young one at every tick
# (`GC_MIDDLE_EVERY` = 1): it then holds one tick's survivors, not ten
# ticks' (a pause of 1-3 ms every 100 ms under load, which set the p99 at 80 %
# of the capacity). Full collections after 10 000 middle ones instead of
# CPython's 10, i.e. every 100 s under load: a full collection traverses every
# pending task, 18-48 ms at 6 000 pending 1 s tasks; at one every 10 s one
# fell in every 10 s run at 5 700 req/s (benchmarks/README.md, "Where the p99
# goes"). What it collects is cyclic garbage that outlived a tick, which
# rawbg's own request path does not make. With nothing pending the clock only
# checks once a second.
GC_MIDDLE_EVERY = 1
GC_FULL_THRESHOLD = 10_000
GC_IDLE_CHECK = 1.0

if TYPE_CHECKING:
    from rawbg.tasks.pending import PendingWork


class GcClock:
    """Collects the young and middle generations every `interval` while `pending` work is
    queued (the middle one every `GC_MIDDLE_EVERY`-th time)."""

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
