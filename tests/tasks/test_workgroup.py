"""WorkGroup: a connection task's background work, owned until it is done."""

import asyncio
import contextvars
import logging
import sys

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


# -- a child tells its group it has ended, from its last step (no done callback) --------------


async def test_children_that_end_in_their_first_step_leave_nothing_to_wait_for():
    # On 3.12+ such a child ends inside `start` (its eager first step), before
    # `start` could record it: it must not stay recorded as running.
    pending = PendingWork(100)
    group = WorkGroup()
    ran: list[int] = []

    async def at_once(number: int) -> None:
        ran.append(number)

    for number in range(3):
        await start(group, pending, one_task(at_once, number))
    async with asyncio.timeout(1):
        await group.wait()
    assert ran == [0, 1, 2]
    assert pending.count == 0


async def test_a_child_cancelled_whether_or_not_it_has_started_is_not_waited_for():
    # On 3.11 the cancellation reaches the child before its first step, on
    # 3.12+ in its first await: either way its work ends and tells the group.
    pending = PendingWork(100)
    group = WorkGroup()
    gate = asyncio.Event()
    ran: list[str] = []

    async def job() -> None:
        ran.append("started")
        await gate.wait()
        ran.append("finished")

    await start(group, pending, one_task(job))
    await start(group, pending, one_task(job))
    group.cancel()
    async with asyncio.timeout(1):
        await group.wait()
    assert "finished" not in ran
    assert ran == ([] if sys.version_info < (3, 12) else ["started", "started"])
    assert pending.count == 0


# -- the first step: taken in `start` on Python 3.12+ (an eager task), in the loop's next
# iteration on 3.11; either way as the child, in the child's context -------------------------


async def test_a_childs_first_step_runs_as_its_own_task_in_its_own_context():
    pending = PendingWork(100)
    group = WorkGroup()
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")
    seen: list[object] = []

    async def job() -> None:
        seen.append(asyncio.current_task())
        variable.set("set by the task")
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        seen.append(variable.get())

    owner = asyncio.current_task()
    await start(group, pending, one_task(job))
    async with asyncio.timeout(2):
        await group.wait()
    first, later, value = seen
    assert first is later, "the first step ran as another task than the rest"
    assert first is not owner
    assert value == "set by the task"
    assert variable.get() == "unset", "the task's first step wrote into its owner's context"
    assert asyncio.current_task() is owner


async def test_a_timeout_entered_in_a_childs_first_step_cancels_the_child_not_its_owner():
    pending = PendingWork(100)
    group = WorkGroup()
    events: list[str] = []

    async def job() -> None:
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(3600)
        except TimeoutError:
            events.append("timed out")

    await start(group, pending, one_task(job))
    await asyncio.sleep(0.1)  # raises CancelledError here if the timeout hit the owner
    async with asyncio.timeout(2):
        await group.wait()
    assert events == ["timed out"]
    assert pending.count == 0


@pytest.mark.skipif(sys.version_info < (3, 12), reason="a child starts eagerly on Python 3.12+")
async def test_cancelling_a_child_before_the_loop_ran_it_cancels_what_its_first_step_awaits():
    pending = PendingWork(100)
    group = WorkGroup()
    awaited: list[asyncio.Task[None]] = []
    events: list[str] = []

    async def job() -> None:
        inner = asyncio.create_task(asyncio.sleep(3600))
        awaited.append(inner)
        try:
            await inner
        except asyncio.CancelledError:
            events.append("job cancelled")
            raise

    await start(group, pending, one_task(job))
    assert awaited, "the child's first step was not taken when it started"
    group.cancel()  # the loop has not run the child since its first step
    async with asyncio.timeout(2):
        await group.wait()
    assert events == ["job cancelled"]
    assert awaited[0].cancelled(), "the task the child awaited was left running"
    assert pending.count == 0
