"""The thread pool that runs plain ``def`` handlers, dependencies and background tasks.

Why not `asyncio.to_thread`? Under load the event loop's thread is the
bottleneck, and `to_thread` costs it about 32 µs of CPU per call
(`python -m benchmarks.threadpool_cost`): `ThreadPoolExecutor.submit` (a lock,
a `concurrent.futures` future, its condition variable), `wrap_future`'s
callbacks, and one `call_soon_threadsafe` (a write to the loop's self-pipe,
and a wake-up) for every result. This pool costs it about 7 µs:

* the loop hands a job to the workers with one `queue.SimpleQueue.put`;
* a worker posts the result to its loop's `_Inbox` and wakes the loop only if
  no wake-up is already pending, so under load one wake-up delivers a batch.

Workers are started on demand up to `MAX_WORKERS` and exit after `IDLE_SECONDS`
without work. They are daemon threads: a plain function that never returns
cannot keep the process alive after the server has shut down. As with any
thread, a call whose awaiting coroutine is cancelled still runs to completion;
only its result is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# asyncio's own default executor size: enough threads to overlap blocking I/O,
# few enough that on a small machine they do not fight over the GIL.
MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)

# A burst of work starts threads; they go away after this long without any.
IDLE_SECONDS = 10.0

_Job = tuple[
    "_Inbox",
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]


class _Inbox:
    """Results on their way back to one event loop, delivered in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.results: collections.deque[tuple[asyncio.Future[Any], Any, BaseException | None]]
        self.results = collections.deque()
        self.wakeup_pending = False

    def post(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """Called on a worker thread."""
        self.results.append((future, result, error))
        if not self.wakeup_pending:
            self.wakeup_pending = True
            # a closed loop raises RuntimeError: nobody is waiting any more
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.deliver)

    def deliver(self) -> None:
        """Called on the loop. The flag is cleared first, so a result posted
        while we drain either is drained here or schedules another delivery."""
        self.wakeup_pending = False
        results = self.results
        while results:
            future, result, error = results.popleft()
            if future.done():  # the awaiting coroutine was cancelled
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


class ThreadPool:
    """Worker threads fed from one queue."""

    def __init__(self, *, max_workers: int = MAX_WORKERS, idle_seconds: float = IDLE_SECONDS):
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.idle_seconds = idle_seconds
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox]
        self._inboxes = weakref.WeakKeyDictionary()

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func(*args, **kwargs)`` on a worker thread, in a copy of this context."""
        loop = asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes[loop] = _Inbox(loop)
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((inbox, future, contextvars.copy_context(), func, args, kwargs))
        # Read after the put: a worker that is timing out checks the queue after
        # giving up its idle slot, so one of the two always sees the other.
        if self._idle == 0 and self._threads < self.max_workers:
            self._start_worker()
        return await future

    def _start_worker(self) -> None:
        with self._lock:
            if self._threads >= self.max_workers:
                return
            self._threads += 1
        threading.Thread(target=self._work, name="rawbg-worker", daemon=True).start()

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            with lock:
                self._idle += 1
            try:
                job = jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with lock:
                    self._idle -= 1
                    if jobs.empty():
                        self._threads -= 1
                        return
                continue
            with lock:
                self._idle -= 1
            inbox, future, context, func, args, kwargs = job
            try:
                result = context.run(func, *args, **kwargs)
            except BaseException as exc:
                inbox.post(future, None, exc)
            else:
                inbox.post(future, result, None)
            del job, inbox, future, context, func, args, kwargs  # do not pin them while idle


_pool = ThreadPool()


async def run_in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a plain function in rawbg's shared thread pool and await its result."""
    return await _pool.run(func, *args, **kwargs)
