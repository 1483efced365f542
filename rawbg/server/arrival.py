"""Serving a request from ``data_received``, as its connection task: `Arrival`, and its states.

When a request's bytes arrive while the connection task waits for them, the
usual way on is a wake-up: the protocol sets the task's future, the loop runs
the task in its next iteration, and five coroutine frames resume to reach the
code that parses the request. Most requests then run to the end of their
response without waiting for anything. `Connection.serve_arrived` serves those
at once instead, inside ``data_received``: docs/ARCHITECTURE.md, "Serving a
request as it arrives". ``--no-serve-on-arrival`` turns it off (`Arrival` is
then not made, and only the task serves).

What makes that safe is that the code runs *as the connection task*: in its
context (what a handler sets in a context variable is where it would be), and
with ``asyncio.current_task()`` returning it (``asyncio.timeout`` and everything
else that looks for the current task finds the right one). This is what
Python 3.12's eager tasks do for a task's first step; here it is done for a
request. Two asyncio functions make a task current, ``_enter_task`` and
``_leave_task``; they are private, and this module is the only one that
touches them (docs/ARCHITECTURE.md, "The private attributes rawbg uses").
Where they are missing (`AVAILABLE` False) requests are served the usual way,
and tests/server/test_serve_arrived.py fails to say so.

If the request has to wait after all (a handler awaits something, the body is
still arriving, the response does not fit in the socket's buffer), its
coroutine is handed to the connection task, which continues it where it
stopped (`continue_in_task`).

The states, and who moves between them (the task, or the callback that
``data_received`` runs)::

    TASK_BUSY ──task waits for a request──▶ TASK_WAITING ──task's wait ends──▶ TASK_BUSY
                                              │     ▲
                          a request arrives:  │     │ served here, and the
                          `serve` runs it     ▼     │ connection is idle again
                                            SERVING_HERE
                       it must wait (or it  │        │ served here, but the connection
                       raised): handed over ▼        ▼ closes or its next request is here
                                  HANDED_OVER        SERVED
                     the task continues it  │        │ the task's wait sees it
                                            ▼        ▼
                                           TASK_BUSY

Any other move is a bug, and raises.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)

#: asyncio has the two private functions that make a task current
AVAILABLE = _enter_task is not None and _leave_task is not None


class State(enum.Enum):
    """Where a connection's serving-on-arrival stands."""

    TASK_BUSY = "the connection task is working, not waiting for a request"
    TASK_WAITING = "the task waits for a request: one that arrives is served where it arrives"
    SERVING_HERE = "a request is being served from data_received, as the task"
    HANDED_OVER = "a request begun where it arrived waits for the task to continue it"
    SERVED = "a request was served where it arrived; the task's wait must go on from there"

    __hash__ = object.__hash__  # a C-level hash, as `Phase`'s


# The members under their own names, as `Phase`'s: no Enum descriptor per use.
TASK_BUSY, TASK_WAITING, SERVING_HERE, HANDED_OVER, SERVED = State

#: the legal moves; any other is a bug and raises
TRANSITIONS: dict[State, frozenset[State]] = {
    TASK_BUSY: frozenset({TASK_WAITING}),
    TASK_WAITING: frozenset({TASK_BUSY, SERVING_HERE}),
    SERVING_HERE: frozenset({TASK_WAITING, HANDED_OVER, SERVED}),
    HANDED_OVER: frozenset({TASK_BUSY}),
    SERVED: frozenset({TASK_BUSY}),
}


class Arrival:
    """One connection's serving of requests where they arrive, as its connection task."""

    __slots__ = ("_context", "_handed_over", "_task", "loop", "state")

    def __init__(self, task: asyncio.Task[Any], context: contextvars.Context) -> None:
        self._task = task
        self._context = context
        self.loop = task.get_loop()
        self.state = TASK_BUSY
        #: the request that must wait, for the task to continue (HANDED_OVER)
        self._handed_over: Coroutine[Any, Any, None] | None = None

    def _move(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal arrival state change {self.state.name} -> {state.name}")
        self.state = state

    # `serve` and `finished` run for every request served here: their moves are
    # written out, each checked against where it must come from (TRANSITIONS
    # holds them too), rather than looked up: two calls less per request.

    # -- the connection task's side ------------------------------------------------

    def task_waits(self) -> None:
        """The task is about to wait for a request: one that arrives may be served here."""
        self._move(TASK_WAITING)

    def task_woke(self) -> bool:
        """The task's wait for a request has ended; True if a request arrived and was
        served (or begun) here meanwhile: the task's cycle goes on from there."""
        state = self.state
        if state is TASK_WAITING:
            self._move(TASK_BUSY)
            return False
        if state is SERVED:
            self._move(TASK_BUSY)
        return True  # SERVED, or HANDED_OVER: `take_handed_over` gives it to the cycle

    def take_handed_over(self) -> Coroutine[Any, Any, None] | None:
        """The request begun here that the task must continue, if there is one."""
        if self.state is not HANDED_OVER:
            return None
        handed_over, self._handed_over = self._handed_over, None
        self._move(TASK_BUSY)
        return handed_over

    # -- the callback's side (data_received) -------------------------------------

    def serve(self, begin: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run the request that ``begin()`` starts, here, as the task, until it ends or waits.

        True if it ended here (the caller then says `finished`). False if the
        task is not waiting for a request, or another task is running (the
        state is unchanged), or the request must wait or raised: it is then
        HANDED_OVER, and the task, woken, continues it.
        """
        if self.state is not TASK_WAITING:
            return False
        task, loop = self._task, self.loop
        if not enter_task(loop, task):
            return False
        self.state = SERVING_HERE  # from TASK_WAITING
        request = begin()
        try:
            waiting_for = self._context.run(request.send, None)
        except StopIteration:
            return True
        except BaseException as exc:  # the task raises it, as if its own
            self._handed_over = raise_in_task(exc)
            self.state = HANDED_OVER  # from SERVING_HERE
            return False
        else:
            self._handed_over = continue_in_task(request, waiting_for)
            self.state = HANDED_OVER  # from SERVING_HERE
            return False
        finally:
            leave_task(loop, task)

    def finished(self, *, task_waits_on: bool) -> None:
        """The request served here has ended. `task_waits_on`: the connection is idle,
        with nothing more buffered, so the task may go on waiting for the next one."""
        if self.state is not SERVING_HERE:
            raise RuntimeError(f"illegal arrival state change {self.state.name} -> finished")
        self.state = TASK_WAITING if task_waits_on else SERVED


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
    assert _leave_task is not None  # only called after `enter_task` succeeded
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
