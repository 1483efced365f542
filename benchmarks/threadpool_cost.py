"""What a call into a thread costs the loop's thread: ``python -m benchmarks.threadpool_cost``.

Under load the loop's thread is rawbg's bottleneck, so what matters about a
thread pool is how much of *that* thread's CPU one call takes: handing the
job over, and taking the result back. This runs N calls of a function that
does nothing, 32 in flight at a time, once through `asyncio.to_thread` and
once through `rawbg.threadpool.run_in_thread`, alternating several rounds,
and reports the loop thread's CPU time per call (`time.thread_time`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from rawbg.threadpool import run_in_thread

IN_FLIGHT = 32


def nothing() -> None:
    return None


async def loop_cpu_per_call(submit: Callable[[], Awaitable[None]], calls: int) -> float:
    """Loop-thread CPU microseconds per call, `IN_FLIGHT` calls at a time."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await submit()

    started = time.thread_time()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return (time.thread_time() - started) / calls * 1e6


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "asyncio.to_thread": lambda: asyncio.to_thread(nothing),
        "rawbg run_in_thread": lambda: run_in_thread(nothing),
    }
    for submit in ways.values():  # warm up: threads started, code paths hot
        await loop_cpu_per_call(submit, 1000)
    results: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, submit in ways.items():
            results[name].append(await loop_cpu_per_call(submit, calls))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threadpool_cost")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.calls, args.rounds))
    print(f"loop-thread CPU per call, {args.calls} calls x {args.rounds} rounds, median:")
    for name, values in results.items():
        print(f"  {name:20} {statistics.median(values):6.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
