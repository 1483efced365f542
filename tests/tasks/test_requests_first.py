"""RequestsFirstLoop: background task steps run after each turn's I/O, a slice at a time.

No server here: each test makes its own loops (asyncio's plain one beside a
`RequestsFirstLoop`) and drives them with callbacks, tasks and a socket pair,
so that what it checks is the order the loop runs things in. The plain loop
shows that each check can fail.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from rawbg.tasks import requests_first
from rawbg.tasks.after_response import AfterResponse
from rawbg.tasks.calls import BackgroundTask
from rawbg.tasks.pending import PendingWork
from rawbg.tasks.requests_first import RequestsFirstLoop, mark_background, unmark_background
from rawbg.tasks.work_group import WorkGroup

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "plain": asyncio.SelectorEventLoop,
    "requests first": RequestsFirstLoop,
}


def run(make_loop: Callable[[], asyncio.AbstractEventLoop], main: Any) -> Any:
    loop = make_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def steps_before_input(make_loop: Callable[[], asyncio.AbstractEventLoop]) -> int:
    """20 background tasks woken at once, each step 2 ms of CPU; input arrives with them.

    Returns how many of their steps ran before the input's callback did.
    """

    async def main() -> int:
        loop = asyncio.get_running_loop()
        gate = asyncio.Event()
        steps = 0
        seen: list[int] = []

        async def background() -> None:
            nonlocal steps
            await gate.wait()
            busy(0.002)
            steps += 1

        tasks = [loop.create_task(background()) for _ in range(20)]
        for task in tasks:
            mark_background(task)
        await asyncio.sleep(0)  # every task waits on the gate
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        loop.add_reader(reader, lambda: (seen.append(steps), loop.remove_reader(reader)))
        writer.send(b"GET / HTTP/1.1\r\n\r\n")
        gate.set()  # their wake-ups are ready before the input is seen
        await asyncio.gather(*tasks)
        for task in tasks:
            unmark_background(task)
        reader.close()
        writer.close()
        return seen[0]

    return run(make_loop, main)


def test_input_waits_for_one_slice_of_background_work_not_all_of_it():
    assert steps_before_input(LOOPS["plain"]) == 20  # asyncio: every ready step first
    assert steps_before_input(LOOPS["requests first"]) <= 1


def record_order(make_loop: Callable[[], asyncio.AbstractEventLoop]) -> list[str]:
    """A background task and a handler's callback, each made ready in the same turn."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        async def background() -> None:
            for step in range(3):
                order.append(f"background {step}")
                await asyncio.sleep(0)

        task = loop.create_task(background())
        mark_background(task)
        await asyncio.sleep(0)  # its first step ran; its second is ready
        loop.call_soon(order.append, "request")
        await task
        unmark_background(task)
        return order

    return run(make_loop, main)


def test_a_callback_made_ready_after_a_background_step_runs_before_it():
    assert record_order(LOOPS["plain"]) == [
        "background 0",
        "background 1",
        "request",
        "background 2",
    ]
    assert record_order(LOOPS["requests first"]) == [
        "background 0",
        "request",
        "background 1",
        "background 2",
    ]


class Recorder(asyncio.Task):  # type: ignore[type-arg]
    """A task with a method to call back: a callback bound to a task, as its steps are."""

    calls: list[Any]

    def poke(self, value: Any) -> None:
        if value == "fail":
            raise ValueError("a background callback failed")
        self.calls.append(value)


def test_background_callbacks_keep_their_order_skip_cancelled_ones_and_report_failures():
    loop = RequestsFirstLoop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: failures.append(context))

    async def idle() -> None:
        await asyncio.sleep(0.05)

    task = Recorder(idle(), loop=loop)
    task.calls = []
    mark_background(task)
    handles = [loop.call_soon(task.poke, value) for value in (1, 2, "fail", 3, 4)]
    handles[3].cancel()
    loop.run_until_complete(task)
    unmark_background(task)
    loop.close()
    assert task.calls == [1, 2, 4]
    assert [str(failure["exception"]) for failure in failures] == ["a background callback failed"]
    assert failures[0]["handle"] is handles[2]


def test_a_closed_loop_refuses_background_callbacks_as_asyncio_does():
    loop = RequestsFirstLoop()

    async def idle() -> None:
        await asyncio.sleep(0)

    task = Recorder(idle(), loop=loop)
    task.calls = []
    mark_background(task)
    loop.run_until_complete(task)
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(task.poke, 1)


def test_background_work_is_not_starved_by_a_loop_that_is_never_idle(monkeypatch):
    """Input on every turn still leaves one slice per turn to background work."""
    monkeypatch.setattr(requests_first, "SLICE", 0.0)

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        turns = 0

        def readable() -> None:  # input on every turn: keep the socket readable
            nonlocal turns
            turns += 1

        writer.send(b"x")
        loop.add_reader(reader, readable)

        async def background() -> None:
            for _ in range(50):
                await asyncio.sleep(0)

        task = loop.create_task(background())
        mark_background(task)
        async with asyncio.timeout(5):
            await task
        unmark_background(task)
        loop.remove_reader(reader)
        reader.close()
        writer.close()
        return turns, 50

    turns, steps = run(RequestsFirstLoop, main)
    assert steps <= turns <= 3 * steps  # one step a turn, not one in many


async def test_a_work_groups_children_are_background_while_they_run():
    loop = asyncio.get_running_loop()
    if not isinstance(loop, RequestsFirstLoop):
        pytest.skip("the tests' loop is uvloop: nothing is marked there")
    pending = PendingWork(10)
    group = WorkGroup()
    gate = asyncio.Event()

    async def job() -> None:
        await gate.wait()

    work = AfterResponse([BackgroundTask(job)], None, "GET /route")
    work.reserve(pending, None)
    group.start(work)
    assert len(loop.background) == 1
    gate.set()
    await group.wait()
    assert loop.background == set()
