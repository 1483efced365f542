"""What a benchmarked rawbg process spends its pauses on: ``BENCH_DIAGNOSTICS=FILE``.

Loaded by apps/rawbg_app.py when the variable is set (never in the timed
runs of ``python -m benchmarks``). Once a second it rewrites FILE with JSON,
every entry stamped with `time.monotonic()` (one clock for every process of
the machine), so that the reader can keep what fell inside its measured
window and leave out start-up and warm-up:

* ``gc``: one ``[time, generation, wall ms, cpu ms]`` per collection of the
  cyclic GC, from `gc.callbacks`; the CPU time is the thread's, which a busy
  machine does not inflate by descheduling the server in mid-collection;
* ``lag``: ``[time, ms]``, how late a 5 ms repeating timer fired, i.e. how long
  the loop was busy with something else in one go;
* ``timers``, ``tasks``: ``[time, count]``, the timers scheduled on the loop
  (every sample) and the tasks alive (once a second): the timer heap and the
  pending background tasks.

``BENCH_GC`` changes the cyclic GC of the benchmarked rawbg, for diagnosis
only: ``off`` disables it (an upper bound on what any GC policy could gain),
``A,B,C`` sets its thresholds (`gc.set_threshold`), ``clock:M,F`` the GC
clock's middle collection every M-th tick and its full threshold F
(rawbg/server/gc_clock.py). Applied at start-up, before
rawbg freezes the start-up heap.

``python -m benchmarks.highload_split`` runs the comparison this was made for.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any

TICK = 0.005


class Diagnostics:
    def __init__(self, path: str) -> None:
        self.path = path
        self.gc: list[tuple[float, int, float, float]] = []
        self._gc_started = 0.0
        self._gc_cpu_started = 0.0
        self.lag: list[tuple[float, float]] = []
        self.timers: list[tuple[float, int]] = []
        self.tasks: list[tuple[float, int]] = []
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_cpu_started = time.thread_time()
            self._gc_started = time.monotonic()
            return
        now = time.monotonic()
        wall_ms = (now - self._gc_started) * 1000
        cpu_ms = (time.thread_time() - self._gc_cpu_started) * 1000
        self.gc.append((round(now, 4), info["generation"], round(wall_ms, 3), round(cpu_ms, 3)))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_dump = loop.time()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.lag.append((round(now, 4), round(max(0.0, loop.time() - due) * 1000, 3)))
            scheduled = getattr(loop, "_scheduled", None)  # asyncio's timer heap
            if scheduled is not None:
                self.timers.append((round(now, 4), len(scheduled)))
            if loop.time() - last_dump >= 1:  # all_tasks() walks every task: once a second
                last_dump = loop.time()
                self.tasks.append((round(now, 4), len(asyncio.all_tasks())))
                self.dump()

    def dump(self) -> None:
        data = {"gc": self.gc, "lag": self.lag, "timers": self.timers, "tasks": self.tasks}
        with open(self.path + ".tmp", "w") as out:
            json.dump(data, out)
        os.replace(self.path + ".tmp", self.path)


def apply_gc_setting(setting: str) -> None:
    """``BENCH_GC``: ``off``, thresholds ``A,B,C``, or ``clock:M,F`` (rawbg's GC clock)."""
    if setting == "off":
        gc.disable()
    elif setting.startswith("clock:"):
        from rawbg.server import gc_clock

        middle_every, full = (int(part) for part in setting.removeprefix("clock:").split(","))
        gc_clock.GC_MIDDLE_EVERY = middle_every
        gc_clock.GC_FULL_THRESHOLD = full
    else:
        gc.set_threshold(*(int(part) for part in setting.split(",")))


def install(path: str) -> None:
    """Start sampling in the running server's loop (called from the app's startup)."""
    diagnostics = Diagnostics(path)
    task = asyncio.get_running_loop().create_task(diagnostics.run())
    _keep.append(task)


_keep: list[asyncio.Task[None]] = []
