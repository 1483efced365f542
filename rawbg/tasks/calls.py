"""The calls a request queues: `BackgroundTask` and `BackgroundTasks`.

* `BackgroundTask` is one call: a function and its arguments, and the policy
  its function carries (`rawbg.task`: retries, backoff, durable).
* `BackgroundTasks` is the per-request list that handlers and dependencies add to.

What happens to them after the response is `rawbg.tasks.after_response`.
Public as `rawbg.BackgroundTask` / `rawbg.BackgroundTasks` (and
`rawbg.background`, FastAPI's module name).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ParamSpec

from rawbg.tasks.journal.writer import ACTIVE_JOURNAL
from rawbg.tasks.policy import journal_record, policy_of
from rawbg.threadpool import run_in_thread

P = ParamSpec("P")

_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


@functools.lru_cache(maxsize=1024)
def is_async_callable(func: Any) -> bool:
    """True for ``async def`` functions, and objects whose ``__call__`` is one.

    Cached: `add_task` asks for every task, and the answer for a function does
    not change (docs/ARCHITECTURE.md, "The request path, line by line").
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

    Its policy (retries, backoff, durable) comes from the function
    (`rawbg.task`). While a server with a task journal is handling a request,
    a durable task is turned into its journal record here, so that one that
    cannot be journaled raises `TypeError` at ``add_task``, saying why.
    """

    __slots__ = ("args", "attempts", "func", "is_async", "kwargs", "policy", "record")

    def __init__(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        self.func = func
        self.args = args
        # shared when empty: docs/ARCHITECTURE.md, "A pending task keeps little"
        self.kwargs: Mapping[str, Any] = kwargs or _NO_KWARGS
        self.is_async = is_async_callable(func)
        self.policy = policy_of(func)
        #: attempts made before this process (a journal entry run again)
        self.attempts = 0
        #: (function name, JSON arguments) until journaled
        self.record: tuple[str, str] | None = None
        if self.policy.durable and ACTIVE_JOURNAL.get() is not None:
            self.record = journal_record(func, args, self.kwargs)

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", None) or repr(self.func)

    def start(self) -> Awaitable[Any]:
        """The one way a task is invoked: its coroutine, or its call in the thread pool.

        Calling the function happens here, so wrong arguments raise here.
        """
        if self.is_async:
            return self.func(*self.args, **self.kwargs)  # type: ignore[no-any-return]
        return run_in_thread(self.func, *self.args, **self.kwargs)

    def __call__(self) -> Awaitable[Any]:
        """``await task()``, as with Starlette's BackgroundTask: the same as `start`."""
        return self.start()

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
