"""GcClock: young collections on a clock while background work is pending (no socket: not wire)."""

import asyncio
import collections
import gc
from collections.abc import Iterator

import pytest

from rawbg.server.gc_clock import GC_FULL_THRESHOLD, GC_MIDDLE_EVERY, GcClock
from rawbg.tasks.pending import PendingWork

INTERVAL = 0.005


@pytest.fixture(autouse=True)
def gc_settings() -> Iterator[None]:
    """The clock changes process-wide GC settings: every test gets the ones it found back."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()
    else:
        gc.disable()


async def wait_until(condition, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(INTERVAL)


def started(pending: PendingWork) -> GcClock:
    clock = GcClock(interval=INTERVAL, pending=pending)
    clock.start()
    return clock


async def test_collects_the_young_and_middle_generations_at_every_tick_while_work_is_pending():
    seen: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    pending = PendingWork(100)
    pending.reserve(1)
    gc.callbacks.append(record)
    clock = started(pending)
    try:
        await wait_until(lambda: clock.collections >= 10)
    finally:
        clock.stop()
        gc.callbacks.remove(record)
    # the middle generation then holds one tick's survivors, never ten ticks'
    assert GC_MIDDLE_EVERY == 1
    assert seen.count(1) >= 10


async def test_collects_nothing_while_nothing_is_pending_and_stops_when_work_ends():
    pending = PendingWork(100)
    clock = started(pending)
    try:
        await asyncio.sleep(20 * INTERVAL)
        assert clock.collections == 0
        pending.reserve(1)
        await wait_until(lambda: clock.collections >= 3)
        pending.release(1)
        await asyncio.sleep(2 * INTERVAL)  # a tick already due may still run
        after = clock.collections
        await asyncio.sleep(20 * INTERVAL)
        assert clock.collections == after
    finally:
        clock.stop()


async def test_leaves_a_disabled_gc_alone():
    pending = PendingWork(100)
    pending.reserve(1)
    gc.disable()
    clock = started(pending)
    try:
        await asyncio.sleep(20 * INTERVAL)
    finally:
        clock.stop()
    assert clock.collections == 0
    assert not gc.isenabled()


async def test_raises_the_full_collection_threshold_and_never_lowers_it():
    gc.set_threshold(700, 10, 10)
    clock = started(PendingWork(100))
    clock.stop()
    assert gc.get_threshold() == (700, 10, GC_FULL_THRESHOLD)
    gc.set_threshold(500, 5, 10 * GC_FULL_THRESHOLD)
    clock = started(PendingWork(100))
    clock.stop()
    assert gc.get_threshold() == (500, 5, 10 * GC_FULL_THRESHOLD)


async def churn(seconds: float, alive: int, per_step: int) -> None:
    """What pending tasks do to the GC in a steady state: as many objects made as freed.

    `alive` lists stay alive, the oldest freed as new ones are made, so the
    count of allocations minus deallocations CPython starts a young
    collection on stays flat while the young generation fills with them.
    """
    live: collections.deque[list[int]] = collections.deque([i] for i in range(alive))
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for _ in range(per_step):
            live.append([0])
            live.popleft()
        await asyncio.sleep(0.001)


async def test_long_lived_objects_of_pending_work_do_not_pile_up_in_the_young_generation():
    # CPython's own trigger out of the way: whether it fires in such a steady
    # state depends on the order of allocations and frees (in a server with
    # pending tasks it mostly does not: rawbg/server/gc_clock.py)
    gc.set_threshold(1_000_000, 10, 10)
    gc.collect()
    pending = PendingWork(100)
    pending.reserve(1)
    clock = started(pending)
    try:
        await churn(seconds=0.5, alive=20_000, per_step=100)
    finally:
        clock.stop()
    # without the clock every one of the 20 000 would be young by now
    assert clock.collections > 0
    assert len(gc.get_objects(generation=0)) < 5_000
