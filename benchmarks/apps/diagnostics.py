"""What a benchmarked rawbg process spends its pauses on: ``BENCH_DIAGNOSTICS=FILE``.

Loaded by apps/rawbg_app.py when the variable is set (never in the timed
runs of ``python -m benchmarks``). Once a second it rewrites FILE with JSON:

* ``gc``: per generation, how many collections ran, their total and longest
  pause (ms), from `gc.callbacks`;
* ``lag``: how late a 5 ms repeating timer fired (ms: p50, p99, max), i.e. how
  long the loop was busy with something else in one go;
* ``max_timers``, ``max_tasks``: the most timers scheduled on the loop and
  tasks alive at a sample (the timer heap and the pending background tasks).

``python -m benchmarks.highload_split`` runs the comparison this was made for.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import time
from typing import Any

TICK = 0.005


class Diagnostics:
    def __init__(self, path: str) -> None:
        self.path = path
        self.gc: dict[int, dict[str, float]] = {
            g: {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "collected": 0} for g in range(3)
        }
        self._gc_started = 0.0
        self.lags: list[float] = []
        self.max_timers = 0
        self.max_tasks = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._gc_started) * 1000
        entry = self.gc[info["generation"]]
        entry["count"] += 1
        entry["total_ms"] += pause
        entry["max_ms"] = max(entry["max_ms"], pause)
        entry["collected"] += info["collected"]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_dump = loop.time()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.lags.append(max(0.0, loop.time() - due) * 1000)
            scheduled = getattr(loop, "_scheduled", None)  # asyncio's timer heap
            if scheduled is not None:
                self.max_timers = max(self.max_timers, len(scheduled))
            if loop.time() - last_dump >= 1:  # all_tasks() walks every task: once a second
                last_dump = loop.time()
                self.max_tasks = max(self.max_tasks, len(asyncio.all_tasks()))
                self.dump()

    def dump(self) -> None:
        ordered = sorted(self.lags)

        def rank(p: float) -> float:
            return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)

        data = {
            "gc": {
                str(g): {k: round(v, 3) for k, v in entry.items()} for g, entry in self.gc.items()
            },
            "lag_ms": {"p50": rank(50), "p99": rank(99), "max": rank(100)} if ordered else None,
            "samples": len(ordered),
            "max_timers": self.max_timers,
            "max_tasks": self.max_tasks,
        }
        with open(self.path + ".tmp", "w") as out:
            json.dump(data, out)
        os.replace(self.path + ".tmp", self.path)


def install(path: str) -> None:
    """Start sampling in the running server's loop (called from the app's startup)."""
    diagnostics = Diagnostics(path)
    task = asyncio.get_running_loop().create_task(diagnostics.run())
    _keep.append(task)


_keep: list[asyncio.Task[None]] = []
