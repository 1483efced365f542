"""AfterResponse: one owner of a request's work releases its count on every path."""

import asyncio
import logging

import pytest

from rawbg.tasks.after_response import AfterResponse
from rawbg.tasks.calls import BackgroundTask
from rawbg.tasks.failure_log import task_failures
from rawbg.tasks.pending import PendingWork


async def test_a_single_task_runs_and_releases_its_count():
    pending = PendingWork(100)
    ran: list[int] = []

    async def job(n: int) -> None:
        ran.append(n)

    work = AfterResponse([BackgroundTask(job, 7)], None, "GET /")
    work.reserve(pending, None)
    assert pending.count == 1
    await work
    assert ran == [7]
    assert pending.count == 0


async def test_a_failing_task_is_logged_and_released(caplog):
    caplog.set_level(logging.ERROR, logger="rawbg.background")
    pending = PendingWork(100)

    async def broken() -> None:
        raise ValueError("smtp down")

    def also_broken() -> None:
        raise KeyError("x")

    for tasks in ([BackgroundTask(broken)], [BackgroundTask(broken), BackgroundTask(also_broken)]):
        work = AfterResponse(tasks, None, "GET /")
        work.reserve(pending, None)
        await work
        assert pending.count == 0
    # one traceback per failure site (rawbg.tasks.failure_log): the second `broken`
    # failure is counted, not logged again with its traceback
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError, KeyError]
    # write the count now, inside this test, rather than into the next test's log
    task_failures.flush()
    assert "1 more like it" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("with_cleanup", [False, True])
async def test_cancelled_before_its_first_step_releases_everything(with_cleanup):
    pending = PendingWork(100)

    async def job() -> None:
        raise AssertionError("must not run")

    async def cleanup() -> None:
        return None

    work = AfterResponse([BackgroundTask(job)], cleanup if with_cleanup else None, "GET /")
    work.reserve(pending, None)
    child = asyncio.get_running_loop().create_task(work)
    child.cancel()
    with pytest.raises(asyncio.CancelledError):
        await child
    assert pending.count == 0


async def test_cancelled_while_running_releases_everything_and_still_cleans_up():
    pending = PendingWork(100)
    events: list[str] = []
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def never() -> None:
        events.append("second task ran")

    async def cleanup() -> None:
        events.append("cleaned up")

    work = AfterResponse([BackgroundTask(slow), BackgroundTask(never)], cleanup, "GET /")
    work.reserve(pending, None)
    assert pending.count == 3
    child = asyncio.get_running_loop().create_task(work)
    await started.wait()
    child.cancel()
    with pytest.raises(asyncio.CancelledError):
        await child
    assert events == ["cleaned up"]
    assert pending.count == 0


async def test_discarded_work_releases_its_tasks_and_runs_only_the_cleanup():
    pending = PendingWork(100)
    events: list[str] = []

    async def job() -> None:
        events.append("task ran")

    async def cleanup() -> None:
        events.append("cleaned up")

    for cleanup_or_none in (None, cleanup):
        work = AfterResponse([BackgroundTask(job)], cleanup_or_none, "GET /")
        work.reserve(pending, None)
        assert work.discard() == 1
        assert pending.count == (1 if cleanup_or_none else 0)
        await work
        assert pending.count == 0
    assert events == ["cleaned up"]


async def test_a_plain_function_runs_in_the_thread_pool_through_the_same_call():
    pending = PendingWork(100)
    ran: list[str] = []
    work = AfterResponse([BackgroundTask(ran.append, "sync")], None, "GET /")
    work.reserve(pending, None)
    await work
    assert ran == ["sync"]
    assert pending.count == 0
    assert await BackgroundTask(ran.append, "direct")() is None
    assert ran == ["sync", "direct"]
