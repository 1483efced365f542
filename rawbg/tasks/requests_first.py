"""Requests first: asyncio's loop, with background work run after the requests of each turn.

asyncio runs what is ready in the order it became ready. A server busy with
requests and with the background tasks they queued therefore makes a request
that arrives wait for every task step scheduled before it: near the server's
capacity, a second's worth of ending tasks adds its CPU to the requests'
queue, and the p99 grows with how much background work is pending
(benchmarks/README.md, "Requests first").

`RequestsFirstLoop` is asyncio's selector loop with one change: a callback
that continues a *background* task (a step or a wake-up of a task marked with
`mark_background`) does not join the ready queue. It waits in a queue of its
own, which the loop works through after the I/O of each turn (as a timer that
is already due: asyncio runs due timers after the callbacks of the turn's
I/O), for at most `SLICE` seconds a turn. So a turn's requests never wait for
more than one slice of background work, and background work is never starved:
every turn runs a slice. Everything else (I/O, timers, the server's own
callbacks, a handler's tasks) is ready as usual, in asyncio's order; the
background tasks' own steps keep their order among themselves.

The tasks marked are the children of a connection's `WorkGroup` (the work of a
keep-alive connection's requests) and a connection task once its connection is
closed (the work of its last request, which it runs itself). On another loop
(uvloop, or a loop the app's caller made: `rawbg.serving`) nothing changes;
``--no-requests-first`` gives asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
from collections.abc import Callable
from typing import Any

#: background work run in one turn of the loop, at most (seconds of the wall clock)
SLICE = 0.0005


class RequestsFirstLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose background task steps yield to the turn's requests."""

    def __init__(self) -> None:
        super().__init__()
        #: the tasks whose steps wait behind requests
        self.background: set[asyncio.Task[Any]] = set()
        self._later: collections.deque[
            tuple[asyncio.Handle, Callable[..., Any], tuple[Any, ...], contextvars.Context]
        ] = collections.deque()
        self._slice_due = False
        self._empty = contextvars.Context()

    def call_soon(  # type: ignore[override]  # the same signature, less generic
        self,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        # a task's step and wake-up are bound to it (on 3.11, 3.12 and 3.13 alike)
        owner = getattr(callback, "__self__", None)
        if not (isinstance(owner, asyncio.Task) and owner in self.background) or self.get_debug():
            return super().call_soon(callback, *args, context=context)
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        if context is None:
            context = contextvars.copy_context()
        handle = asyncio.Handle(callback, args, self, context)
        self._later.append((handle, callback, args, context))
        if not self._slice_due:
            self._slice_due = True
            self.call_at(self.time(), self._run_slice, context=self._empty)
        return handle

    def _run_slice(self) -> None:
        later = self._later
        until = time.perf_counter() + SLICE
        while later:
            handle, callback, args, context = later.popleft()
            if handle.cancelled():
                continue
            try:
                context.run(callback, *args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.call_exception_handler(
                    {
                        "message": f"Exception in callback {callback!r}",
                        "exception": exc,
                        "handle": handle,
                    }
                )
            if time.perf_counter() >= until:
                break
        if later:
            self.call_at(self.time(), self._run_slice, context=self._empty)
        else:
            self._slice_due = False


def mark_background(task: asyncio.Task[Any] | None) -> None:
    """From now on, `task`'s steps wait behind requests (on a `RequestsFirstLoop`);
    `unmark_background` when it ends."""
    if task is None:
        return
    loop = task.get_loop()
    if isinstance(loop, RequestsFirstLoop):
        loop.background.add(task)


def unmark_background(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    loop = task.get_loop()
    if isinstance(loop, RequestsFirstLoop):
        loop.background.discard(task)
