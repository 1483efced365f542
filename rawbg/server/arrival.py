"""Running a step of the connection task's work from ``data_received``, as that task.

When a request's bytes arrive while the connection task waits for them, the
usual way on is a wake-up: the protocol sets the task's future, the loop runs
the task in its next iteration, and five coroutine frames resume to reach the
code that parses the request. Most requests then run to the end of their
response without waiting for anything. `Connection.serve_arrived` serves those
at once instead, inside ``data_received``: docs/ARCHITECTURE.md, "Serving a
request as it arrives".

What makes that safe is that the code runs *as the connection task*: in its
context (what a handler sets in a context variable is where it would be), and
with ``asyncio.current_task()`` returning it (``asyncio.timeout`` and everything
else that looks for the current task finds the right one). This is what
Python 3.12's eager tasks do for a task's first step; here it is done for a
request. Two asyncio functions make a task current, ``_enter_task`` and
``_leave_task``; they are private, and this module is the only one that
touches them. Where they are missing (`AVAILABLE` False) requests are served
the usual way, and tests/test_serve_arrived.py fails to say so.

If the request has to wait after all (a handler awaits something, the body is
still arriving, the response does not fit in the socket's buffer), its
coroutine is handed to the connection task, which continues it where it
stopped (`continue_in_task`).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)

AVAILABLE = _enter_task is not None and _leave_task is not None


def enter_task(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> bool:
    """Make `task` the current task of `loop`; False if another one is running.

    (A task calls ``data_received`` itself only where a test feeds an
    in-memory transport; a socket transport calls it from a loop callback.)
    """
    if _enter_task is None:
        return False
    try:
        _enter_task(loop, task)
    except RuntimeError:
        return False
    return True


def leave_task(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    assert _leave_task is not None
    _leave_task(loop, task)


@types.coroutine
def continue_in_task(
    coroutine: Coroutine[Any, Any, None], waiting_for: Any
) -> Generator[Any, Any, None]:
    """Await `coroutine`, which was started elsewhere and then yielded `waiting_for`.

    What ``await`` does with a fresh coroutine, from the point where it
    stopped: what it waits for goes to the task, and what the task sends or
    throws back goes to the coroutine, until it returns.
    """
    while True:
        try:
            value = yield waiting_for
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # a cancellation: passed on, as await would
            try:
                waiting_for = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_for = coroutine.send(value)
            except StopIteration:
                return


@types.coroutine
def hand_over() -> Generator[None, None, None]:
    """Suspend once: from here on, the connection task runs the request."""
    yield


async def raise_in_task(error: BaseException) -> None:
    """What the connection task awaits for a request that failed where it arrived."""
    raise error
