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
still arriving, the response does not fit in the socket's buffer), it waits
where it is when what it awaits is an asyncio future of this loop (a commit
of the task journal, a database call): it is *parked*, and the future's
callback steps it again, here and as the task, when the future is done
(`Arrival._resume`), while the task sleeps on. Anything else it waits for,
or anything that wakes the task meanwhile (input, the idle deadline, a
shutdown, a cancellation, which is thrown into the request as a Task would),
hands its coroutine to the connection task, which continues it where it
stopped (`continue_in_task`).

The states, and who moves between them (the task, or the callback that
``data_received`` runs)::

    TASK_BUSY ──task waits for a request──▶ TASK_WAITING ──task's wait ends──▶ TASK_BUSY
                                              │     ▲
                          a request arrives:  │     │ served here, and the
                          `serve` runs it     ▼     │ connection is idle again
                                            SERVING_HERE ◀──its future is done: ──┐
                       it must wait (or it  │   │    │     stepped here again     │
                       raised): handed over │   │    └──it awaits a future──▶ PARKED
                                            │   │ served here, but the           │
                                            │   │ connection closes or its       │
                                            ▼   ▼ next request is here           │
                                  HANDED_OVER   SERVED                           │
                                   ▲   │        │ the task's wait sees it        │
                                   │   ▼        ▼                                │
                                   │  TASK_BUSY                                  │
                                   └─────── the task is woken meanwhile ─────────┘

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
    PARKED = "a request begun where it arrived waits on a future, whose callback steps it on"

    __hash__ = object.__hash__  # a C-level hash, as `Phase`'s


# The members under their own names, as `Phase`'s: no Enum descriptor per use.
TASK_BUSY, TASK_WAITING, SERVING_HERE, HANDED_OVER, SERVED, PARKED = State

#: the legal moves; any other is a bug and raises
TRANSITIONS: dict[State, frozenset[State]] = {
    TASK_BUSY: frozenset({TASK_WAITING}),
    TASK_WAITING: frozenset({TASK_BUSY, SERVING_HERE}),
    SERVING_HERE: frozenset({TASK_WAITING, HANDED_OVER, SERVED, PARKED}),
    HANDED_OVER: frozenset({TASK_BUSY}),
    SERVED: frozenset({TASK_BUSY}),
    PARKED: frozenset({SERVING_HERE, HANDED_OVER}),
}

# The context the parked request's future calls back in: the step itself runs
# in the task's own context (`Arrival._context`), which must not be entered twice.
_CALLBACK_CONTEXT = contextvars.Context()


class Arrival:
    """One connection's serving of requests where they arrive, as its connection task."""

    __slots__ = (
        "_context",
        "_handed_over",
        "_parked",
        "_parked_on",
        "_resumed",
        "_task",
        "loop",
        "state",
    )

    def __init__(self, task: asyncio.Task[Any], context: contextvars.Context) -> None:
        self._task = task
        self._context = context
        self.loop = task.get_loop()
        self.state = TASK_BUSY
        #: the request that must wait, for the task to continue (HANDED_OVER)
        self._handed_over: Coroutine[Any, Any, None] | None = None
        #: the request that waits on a future here (PARKED), that future, and what
        #: to call after its next step here, with whether it ended (else it is
        #: PARKED again, or HANDED_OVER: the task must be woken). Held only while
        #: PARKED: the connection is not kept alive by this object otherwise.
        self._parked: Coroutine[Any, Any, None] | None = None
        self._parked_on: asyncio.Future[Any] | None = None
        self._resumed: Callable[[bool], None] | None = None

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
        elif state is PARKED:  # the task takes it, and goes on waiting with it
            self.unpark(None)
        return True  # SERVED, or HANDED_OVER: `take_handed_over` gives it to the cycle

    def unpark(self, error: BaseException | None) -> None:
        """The task was woken while a request is PARKED: it continues the request from
        here (HANDED_OVER). `error`, a cancellation of the task, is thrown into the
        request, as a Task throws it into what it awaits (and cancels that future)."""
        request, future = self._parked, self._parked_on
        assert request is not None and future is not None
        self._parked = self._parked_on = self._resumed = None
        future._asyncio_future_blocking = True  # awaited by the task now, as if yielded to it
        if error is not None:
            future.cancel()
        self._handed_over = continue_in_task(request, future, error)
        self._move(HANDED_OVER)

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
        try:  # `_step`, written out: the common case, a request that ends here, pays no call
            waiting_for = self._context.run(request.send, None)
        except StopIteration:
            return True
        except BaseException as exc:  # the task raises it, as if its own
            self._handed_over = raise_in_task(exc)
            self.state = HANDED_OVER  # from SERVING_HERE
            return False
        else:
            self._wait(request, waiting_for, None)  # the caller says `then` if it parked
            return False
        finally:
            leave_task(loop, task)

    def then(self, resumed: Callable[[bool], None]) -> None:
        """For the request `serve` just PARKED: what to call after its next step here,
        with whether it ended (else it is PARKED again, or HANDED_OVER: wake the task)."""
        self._resumed = resumed

    def _step(
        self,
        request: Coroutine[Any, Any, None],
        step: Callable[[Any], Any],
        value: Any,
        resumed: Callable[[bool], None],
    ) -> bool:
        """One step of the request, as the task (which is current): True if it ended;
        else it is PARKED on the future it awaits, or HANDED_OVER to the task."""
        try:
            waiting_for = self._context.run(step, value)
        except StopIteration:
            return True
        except BaseException as exc:  # the task raises it, as if its own
            self._handed_over = raise_in_task(exc)
            self.state = HANDED_OVER  # from SERVING_HERE
            return False
        self._wait(request, waiting_for, resumed)
        return False

    def _wait(
        self,
        request: Coroutine[Any, Any, None],
        waiting_for: Any,
        resumed: Callable[[bool], None] | None,
    ) -> None:
        """The request yielded `waiting_for`: PARKED on it if it is a future of this
        loop, else HANDED_OVER to the task, which passes it on to asyncio."""
        get_loop = getattr(waiting_for, "get_loop", None)
        if (
            getattr(waiting_for, "_asyncio_future_blocking", False)
            and get_loop is not None
            and get_loop() is self.loop
        ):
            # what a Task does with a future its coroutine yields, but the
            # callback is this object's: the task is not woken for it
            waiting_for._asyncio_future_blocking = False
            self._parked, self._parked_on, self._resumed = request, waiting_for, resumed
            self.state = PARKED  # from SERVING_HERE
            waiting_for.add_done_callback(self._resume, context=_CALLBACK_CONTEXT)
            return
        self._handed_over = continue_in_task(request, waiting_for)
        self.state = HANDED_OVER  # from SERVING_HERE

    def _resume(self, future: asyncio.Future[Any]) -> None:
        """The parked request's future is done: step the request here, as the task."""
        if self.state is not PARKED or future is not self._parked_on:
            return  # the task took it meanwhile (`unpark`)
        request, resumed = self._parked, self._resumed
        assert request is not None and resumed is not None
        task, loop = self._task, self.loop
        if not enter_task(loop, task):  # another task is running: let the task go on
            self.unpark(None)
            resumed(False)
            return
        self._parked = self._parked_on = self._resumed = None
        self.state = SERVING_HERE  # from PARKED
        error: BaseException | None = None
        try:
            future.result()
        except BaseException as exc:  # thrown into the request, as a Task does
            error = exc
        try:  # (outside that `except`: the request must not see it as being handled)
            if error is None:
                ended = self._step(request, request.send, None, resumed)
            else:
                ended = self._step(request, request.throw, error, resumed)
        finally:
            leave_task(loop, task)
        resumed(ended)

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
    coroutine: Coroutine[Any, Any, None], waiting_for: Any, error: BaseException | None = None
) -> Generator[Any, Any, None]:
    """Await `coroutine`, which was started elsewhere and then yielded `waiting_for`.

    What ``await`` does with a fresh coroutine, from the point where it
    stopped: what it waits for goes to the task, and what the task sends or
    throws back goes to the coroutine, until it returns. `error` (a
    cancellation that reached the task first) is thrown into it before that.
    """
    if error is not None:
        try:
            waiting_for = coroutine.throw(error)
        except StopIteration:
            return
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
