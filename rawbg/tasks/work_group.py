"""`WorkGroup`: a connection's running background work, as children of its connection task."""

from __future__ import annotations

import asyncio
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
    costs less, for as long as it is pending (which for a background task can
    be a long time: benchmarks/README.md, memory per pending task) and when it
    ends: the child runs the `AfterResponse` itself, with no wrapper
    coroutine, and that work tells its group it has ended (`ended`) from its
    last step, where a done callback would cost a loop callback per child.
    """

    __slots__ = ("_all_done", "_children", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Made when the first child starts: a connection whose requests queue
        # no work (or whose one request's work runs in the connection task
        # itself) never pays for it.
        self._children: dict[AfterResponse, asyncio.Task[Any]] | None = None
        self._all_done: asyncio.Future[None] | None = None

    def start(self, work: AfterResponse) -> None:
        """Start `work` (already reserved) now, as a child of the connection task."""
        if self._children is None:
            self._children = {}
        work.run_by(self)
        # Named after the route: asyncio would otherwise format a "Task-N"
        # string for each child, kept for as long as it is pending.
        if sys.version_info >= (3, 12):
            # Its first step runs now, not in the loop's next iteration: the
            # response is flushed already (`Connection._respond`), and the
            # child is this group's from here on, as with `create_task`.
            child = asyncio.Task(work, loop=self._loop, name=work.label, eager_start=True)
            if child.done():  # it ended in that first step, and told `ended` so
                return
        else:
            child = self._loop.create_task(work, name=work.label)
        self._children[work] = child

    def ended(self, work: AfterResponse) -> None:
        """`work`'s last step: its task is done once that step returns."""
        children = self._children
        assert children is not None  # a child was started
        children.pop(work, None)  # absent if it ended in its eager first step
        if not children and self._all_done is not None and not self._all_done.done():
            self._all_done.set_result(None)

    def cancel(self) -> None:
        for child in (self._children or {}).values():
            child.cancel()

    async def wait(self) -> None:
        """Return once every child has finished; if cancelled, cancel them first."""
        while self._children:
            self._all_done = self._loop.create_future()
            try:
                await self._all_done
            except asyncio.CancelledError:
                self.cancel()
                await asyncio.wait(set(self._children.values()))
                raise
