"""WorkGroup: a connection task's background work, owned until it is done."""

import asyncio
import logging

import pytest

from rawbg.tasks.after_response import AfterResponse
from rawbg.tasks.calls import BackgroundTask
from rawbg.tasks.pending import PendingWork
from rawbg.tasks.work_group import WorkGroup


def one_task(func, *args) -> AfterResponse:
    return AfterResponse([BackgroundTask(func, *args)], None, "GET /route")


async def start(group: WorkGroup, pending: PendingWork, work: AfterResponse) -> None:
    work.reserve(pending, None)
    group.start(work)


async def test_wait_returns_only_after_every_child_has_finished():
    pending = PendingWork(100)
    group = WorkGroup()
    events: list[str] = []
    gate = asyncio.Event()

    async def job(name: str) -> None:
        await gate.wait()
        events.append(name)

    await start(group, pending, one_task(job, "a"))
    await start(
        group,
        pending,
        AfterResponse([BackgroundTask(job, "b"), BackgroundTask(job, "c")], None, "GET /route"),
    )
    waiter = asyncio.create_task(group.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    gate.set()
    async with asyncio.timeout(2):
        await waiter
    assert sorted(events) == ["a", "b", "c"]
    assert pending.count == 0


async def test_a_failing_child_is_logged_and_does_not_cancel_its_siblings(caplog):
    caplog.set_level(logging.ERROR, logger="rawbg.background")
    pending = PendingWork(100)
    group = WorkGroup()
    finished = asyncio.Event()

    async def broken() -> None:
        raise ValueError("smtp down")

    async def slow() -> None:
        await asyncio.sleep(0.05)
        finished.set()

    await start(group, pending, one_task(broken))
    await start(group, pending, one_task(slow))
    async with asyncio.timeout(2):
        await group.wait()
    assert finished.is_set()
    assert pending.count == 0
    [record] = caplog.records
    assert (
        "test_a_failing_child_is_logged_and_does_not_cancel_its_siblings.<locals>.broken"
        in record.getMessage()
    )
    assert "GET /route" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


async def test_a_task_called_with_wrong_arguments_is_logged_not_raised(caplog):
    caplog.set_level(logging.ERROR, logger="rawbg.background")
    pending = PendingWork(100)
    group = WorkGroup()

    async def needs_two(a: int, b: int) -> None:
        return None

    await start(group, pending, one_task(needs_two, 1))
    async with asyncio.timeout(2):
        await group.wait()
    assert pending.count == 0
    assert "needs_two" in caplog.records[0].getMessage()


async def test_cancelling_the_owner_cancels_the_children_and_still_waits_for_them():
    pending = PendingWork(100)
    group = WorkGroup()
    events: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # clean-up that takes a moment
            events.append("child cancelled")
            raise

    await start(group, pending, one_task(forever))
    owner = asyncio.create_task(group.wait())
    await asyncio.sleep(0.01)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await owner
    assert events == ["child cancelled"]
    assert pending.count == 0


async def test_a_group_that_started_nothing_is_done_at_once():
    group = WorkGroup()
    async with asyncio.timeout(1):
        await group.wait()
