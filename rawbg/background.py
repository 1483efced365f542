"""Background tasks: work queued during a request, run after its response is flushed.

* `BackgroundTask` is one call: a function and its arguments.
* `BackgroundTasks` is the per-request list that handlers and dependencies add to.
* `AfterResponse` is what a request leaves behind once its response is written:
  its tasks, in order, then the clean-up of its generator dependencies.
* `WorkGroup` holds a connection's running `AfterResponse` work as children of
  the connection task, which waits for all of them before it ends.
* `PendingWork` counts queued tasks process-wide, so the server can stop
  reading new requests while too much work is pending.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ParamSpec

from .failure_log import task_failures
from .threadpool import run_in_thread

if TYPE_CHECKING:
    from .trace import RequestTrace
    from .types import Cleanup

P = ParamSpec("P")

_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})

logger = logging.getLogger("rawbg.background")


@functools.lru_cache(maxsize=1024)
def is_async_callable(func: Any) -> bool:
    """True for ``async def`` functions, and objects whose ``__call__`` is one.

    Cached: `add_task` asks for every task, and the answer for a function does
    not change (inspect's check is ~2 µs, a quarter of a task's bookkeeping).
    """
    while hasattr(func, "func") and hasattr(func, "args"):  # functools.partial
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object's __call__ method
    )


class BackgroundTask:
    """One call to make after the response: ``BackgroundTask(func, *args, **kwargs)``.

    ``async def`` functions are awaited on the event loop; plain functions run
    in the default thread pool, so a slow one never blocks the loop.
    """

    __slots__ = ("args", "func", "is_async", "kwargs")

    def __init__(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        self.func = func
        self.args = args
        # a shared empty mapping when there are no keyword arguments: 64 bytes
        # fewer for each pending task, the common case
        self.kwargs: Mapping[str, Any] = kwargs or _NO_KWARGS
        self.is_async = is_async_callable(func)

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", None) or repr(self.func)

    async def __call__(self) -> None:
        if self.is_async:
            await self.func(*self.args, **self.kwargs)
        else:
            await run_in_thread(self.func, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"BackgroundTask({self.name})"


class BackgroundTasks:
    """The tasks of one request. The handler and every dependency share one instance."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: Iterable[BackgroundTask] | None = None) -> None:
        self.tasks: list[BackgroundTask] = list(tasks or ())

    def add_task(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Queue ``func(*args, **kwargs)`` to run after the response has been sent."""
        self.tasks.append(BackgroundTask(func, *args, **kwargs))

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"BackgroundTasks({self.tasks!r})"


class PendingWork:
    """The process-wide count of queued background tasks, and the bound on it.

    The connection task reserves a request's tasks *before* writing its
    response, and each is released when it finishes. While the count is at or
    above `limit`, connection tasks wait in `wait_for_room` before reading the
    next request, so queued work is never dropped and never grows without bound.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = False

    def reserve(self, n: int) -> None:
        self.count += n
        if self.count:
            self._idle.clear()
        if self.count >= self.limit and not self._stopped:
            self._room.clear()

    def release(self, n: int = 1) -> None:
        self.count -= n
        if self.count < self.limit:
            self._room.set()
        if self.count == 0:
            self._idle.set()

    @property
    def has_room(self) -> bool:
        return self.count < self.limit or self._stopped

    def stop_waiting(self) -> None:
        """Shutdown: wake every connection waiting for room, so that it can close."""
        self._stopped = True
        self._room.set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def wait_idle(self) -> None:
        """Return once no background work is queued or running (used by tests)."""
        await self._idle.wait()


class AfterResponse:
    """What one request leaves to do once its response has been flushed.

    It keeps only the queued calls, the clean-up of its request-scoped
    generator dependencies, and a label for the log: never the request or its
    body, so a pending task costs little memory.
    """

    __slots__ = ("cleanup", "label", "tasks", "unreleased")

    def __init__(
        self,
        tasks: Iterable[BackgroundTask],
        cleanup: Cleanup | None,
        label: str,
    ) -> None:
        self.tasks = tuple(tasks)  # a tuple of one is 40 bytes smaller than a list of one
        self.cleanup = cleanup
        self.label = label
        #: units reserved in `PendingWork` for this work and not yet released
        self.unreleased = self.units

    @property
    def units(self) -> int:
        """How many units of pending work this is: one per task, one for the clean-up."""
        return len(self.tasks) + (self.cleanup is not None)

    def release_all(self, pending: PendingWork) -> None:
        """Release whatever is still reserved: the work ended early (cancelled or failed)."""
        if self.unreleased:
            pending.release(self.unreleased)
            self.unreleased = 0

    def _release_one(self, pending: PendingWork) -> None:
        self.unreleased -= 1
        pending.release()

    def direct_coroutine(self, trace: RequestTrace | None) -> Coroutine[Any, Any, Any] | None:
        """The coroutine of the only task, when awaiting it is all there is to do.

        That is the common case (one ``async def`` task, no clean-up, no trace),
        and running it without `run` saves a coroutine frame and this object
        for as long as the task is pending. Raises what calling the function
        raises (wrong arguments, say); None when `run` is needed.
        """
        tasks = self.tasks
        if trace is None and self.cleanup is None and len(tasks) == 1 and tasks[0].is_async:
            call = tasks[0]
            return call.func(*call.args, **call.kwargs)  # type: ignore[no-any-return]
        return None

    def call_failed(self, error: Exception, pending: PendingWork) -> None:
        """`direct_coroutine` raised: the only task failed before it started."""
        log_task_failure(self.tasks[0].name, self.label, error)
        self.release_all(pending)

    def discard_tasks(self) -> int:
        """Drop the tasks (the response failed); return how many were dropped."""
        dropped = len(self.tasks)
        if dropped:
            logger.warning(
                "discarding %d background task(s) of %s: its response failed", dropped, self.label
            )
        self.tasks = ()
        self.unreleased -= dropped
        return dropped

    async def run(self, pending: PendingWork, trace: RequestTrace | None) -> None:
        """Run each task in order, then the clean-up; a failure never stops the rest.

        The task's call is made here rather than through `BackgroundTask.__call__`
        or a helper coroutine: every coroutine in the chain that awaits a pending
        task is a frame kept in memory for as long as the task waits
        (benchmarks/README.md, memory per pending task).
        """
        label = self.label
        try:
            for task in self.tasks:
                started = (
                    0.0 if trace is None else trace.event("background task started", task=task.name)
                )
                try:
                    if task.is_async:
                        await task.func(*task.args, **task.kwargs)
                    else:
                        await run_in_thread(task.func, *task.args, **task.kwargs)
                except Exception as exc:
                    log_task_failure(task.name, label, exc)
                    if trace is not None:
                        trace.event(
                            "background task failed", task=task.name, error=repr(exc), since=started
                        )
                else:
                    if trace is not None:
                        trace.event("background task finished", task=task.name, since=started)
                finally:
                    self._release_one(pending)
        finally:
            # Also when cancelled (a forced shutdown): the dependencies the
            # tasks used are still closed, and nothing stays counted as pending.
            if self.cleanup is not None:
                try:
                    await self.cleanup()
                except Exception:
                    logger.exception("clean-up of the dependencies of %s failed", label)
                finally:
                    self._release_one(pending)
                if trace is not None:
                    trace.event("dependency clean-up done", route=label)
            self.release_all(pending)


class WorkGroup:
    """The background work of one connection: children of its connection task.

    Like `asyncio.TaskGroup`, its owner waits for every child (`wait`), and a
    cancelled owner cancels its children and still waits for them, so no work
    outlives the connection task. Unlike a TaskGroup, a failing child does not
    cancel its siblings (failures are logged where they happen), and a child
    costs less memory for as long as it is pending, which for a background
    task can be a long time (benchmarks/README.md, memory per pending task):

    * the done callbacks run in one shared context, where
      `Task.add_done_callback` would copy the context for each child;
    * a request whose work is a single ``async def`` task (the common case)
      runs that task's own coroutine as the child, with no wrapper coroutine.
    """

    __slots__ = ("_all_done", "_callback_context", "_children", "_loop", "_pending", "_runs")

    def __init__(self, pending: PendingWork) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending = pending
        # Made when the first child starts: a connection whose requests queue
        # no work (or whose one request's work runs in the connection task
        # itself) never pays for them.
        self._children: set[asyncio.Task[Any]] | None = None
        self._callback_context: contextvars.Context | None = None
        self._all_done: asyncio.Future[None] | None = None
        # The work of children that run `AfterResponse.run`: a child cancelled
        # before its first step never runs it, so its reservation is released here.
        self._runs: dict[asyncio.Task[Any], AfterResponse] = {}

    def start(self, work: AfterResponse, trace: RequestTrace | None) -> None:
        """Start `work` now, as a child of the connection task."""
        if self._children is None:
            self._children = set()
            self._callback_context = contextvars.copy_context()
        try:
            coroutine = work.direct_coroutine(trace)
        except Exception as exc:  # e.g. wrong arguments: fails before it could start
            work.call_failed(exc, self._pending)
            return
        if coroutine is not None:
            # Named after the route: asyncio would otherwise format a "Task-N"
            # string for each child, kept for as long as it is pending.
            child = self._loop.create_task(coroutine, name=work.label)
            child.add_done_callback(self._single_task_done, context=self._callback_context)
        else:
            child = self._loop.create_task(work.run(self._pending, trace), name=work.label)
            self._runs[child] = work
            child.add_done_callback(self._run_done, context=self._callback_context)
        self._children.add(child)

    def _single_task_done(self, child: asyncio.Task[Any]) -> None:
        self._pending.release()
        if not child.cancelled():
            error = child.exception()
            if error is not None:
                name = getattr(child.get_coro(), "__qualname__", "?")
                log_task_failure(name, child.get_name(), error)
        self._child_done(child)

    def _run_done(self, child: asyncio.Task[Any]) -> None:
        self._runs.pop(child).release_all(self._pending)
        self._child_done(child)

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


def log_task_failure(name: str, label: str, error: BaseException) -> None:
    """The one place a failed task is logged: its name, its route, its traceback.

    One traceback per failure site per minute, then a count (`rawbg.failure_log`).
    """
    task_failures.task_failed(name, label, error)
