"""`WorkGroup`: a connection's running background work, as children of its connection task."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rawbg.tasks.after_response import AfterResponse


class WorkGroup:
    """The background work of one connection: children of its connection task.

    Like `asyncio.TaskGroup`, its owner waits for every child (`wait`), and a
    cancelled owner cancels its children and still waits for them, so no work
    outlives the connection task. Unlike a TaskGroup, a failing child does not
    cancel its siblings (failures are logged where they happen), and a child
    costs less memory for as long as it is pending, which for a background
    task can be a long time (benchmarks/README.md, memory per pending task):
    the child runs the `AfterResponse` itself, with no wrapper coroutine, and
    the done callbacks run in one shared context, where
    `Task.add_done_callback` would copy the context for each child.
    """

    __slots__ = ("_all_done", "_callback_context", "_children", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Made when the first child starts: a connection whose requests queue
        # no work (or whose one request's work runs in the connection task
        # itself) never pays for them.
        self._children: set[asyncio.Task[Any]] | None = None
        self._callback_context: contextvars.Context | None = None
        self._all_done: asyncio.Future[None] | None = None

    def start(self, work: AfterResponse) -> None:
        """Start `work` (already reserved) now, as a child of the connection task."""
        if self._children is None:
            self._children = set()
            self._callback_context = contextvars.copy_context()
        # Named after the route: asyncio would otherwise format a "Task-N"
        # string for each child, kept for as long as it is pending.
        if sys.version_info >= (3, 12):
            # Its first step runs now, not in the loop's next iteration: the
            # response is flushed already (`Connection._respond`), and the
            # child is this group's from here on, as with `create_task`.
            child = asyncio.Task(work, loop=self._loop, name=work.label, eager_start=True)
        else:
            child = self._loop.create_task(work, name=work.label)
        child.add_done_callback(self._child_done, context=self._callback_context)
        self._children.add(child)

    def _child_done(self, child: asyncio.Task[Any]) -> None:
        children = self._children
        assert children is not None  # a child was started
        children.discard(child)
        if not children and self._all_done is not None and not self._all_done.done():
            self._all_done.set_result(None)

    def cancel(self) -> None:
        for child in self._children or ():
            child.cancel()

    async def wait(self) -> None:
        """Return once every child has finished; if cancelled, cancel them first."""
        while self._children:
            self._all_done = self._loop.create_future()
            try:
                await self._all_done
            except asyncio.CancelledError:
                self.cancel()
                await asyncio.wait(set(self._children))
                raise
