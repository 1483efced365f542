"""The app's life around the server's: start-up before it listens, shutdown after the drain.

``App(lifespan=factory)`` takes what FastAPI takes: a function of the app that
returns an async context manager (``@asynccontextmanager async def
lifespan(app): ... yield ...``), or a bare async or sync generator function of
the app. What it yields, if anything, must be a mapping: its items become
``app.lifespan_state``, from which each request's state starts, as Starlette
does. Without a lifespan, the ``@app.on_event("startup")`` handlers run in
order before serving and the ``"shutdown"`` ones after; with one, they are
ignored, as FastAPI ignores them (a warning says so).

`run_lifespan` is what the server enters: once per process, before it listens,
and left only after every connection and every background task has finished
(`rawbg.server.server.serve`), so that a task can still use what start-up made. A
failing start-up raises `StartupFailed`, which names the function; the server
then exits without listening.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from rawbg.app.dependencies import describe

logger = logging.getLogger("rawbg.lifespan")

#: ``lifespan(app)`` -> an async context manager that may yield a state mapping
Lifespan = Callable[[Any], Any]
EventHandler = Callable[[], Any]


class HasLifespan(Protocol):
    """What `run_lifespan` reads and sets of the app: `rawbg.App` is one."""

    lifespan: Lifespan | None
    startup_handlers: list[EventHandler]
    shutdown_handlers: list[EventHandler]
    #: what the lifespan yielded; each request's state starts from it
    lifespan_state: dict[str, Any]


class StartupFailed(Exception):
    """Raised by `run_lifespan` when the app's start-up raised: the server must not serve."""


def lifespan_context(lifespan: Lifespan) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """Whatever FastAPI accepts as ``lifespan=``, as a factory of async context managers."""
    if inspect.isasyncgenfunction(lifespan):
        return contextlib.asynccontextmanager(lifespan)
    if inspect.isgeneratorfunction(lifespan):
        sync_factory = contextlib.contextmanager(lifespan)

        @contextlib.asynccontextmanager
        async def from_sync(app: Any) -> AsyncIterator[Any]:
            with sync_factory(app) as state:
                yield state

        return from_sync
    if not callable(lifespan):
        raise TypeError(f"lifespan must be callable, got {lifespan!r}")
    return lifespan


async def _call(handler: EventHandler) -> None:
    result = handler()
    if inspect.isawaitable(result):
        await result


@contextlib.asynccontextmanager
async def run_lifespan(app: HasLifespan) -> AsyncIterator[None]:
    """Start the app up, serve inside, shut it down; `StartupFailed` if start-up raised."""
    if app.lifespan is None:
        for handler in app.startup_handlers:
            try:
                await _call(handler)
            except Exception as exc:
                raise StartupFailed(f"startup handler {describe(handler)} raised {exc!r}") from exc
        try:
            yield
        finally:
            for handler in app.shutdown_handlers:
                try:
                    await _call(handler)
                except Exception:
                    logger.exception("shutdown handler %s raised", describe(handler))
        return
    where = describe(app.lifespan)
    try:
        manager = lifespan_context(app.lifespan)(app)
        state = await manager.__aenter__()
    except Exception as exc:
        raise StartupFailed(f"lifespan {where} raised {exc!r} before its yield") from exc
    if state is not None and not isinstance(state, Mapping):
        await manager.__aexit__(None, None, None)
        raise StartupFailed(
            f"lifespan {where} yielded {type(state).__name__}; yield nothing or a dict of state"
        )
    app.lifespan_state = dict(state or {})
    try:
        yield
    except BaseException as exc:
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        try:
            await manager.__aexit__(None, None, None)
        except Exception:
            logger.exception("lifespan %s raised after its yield (shutdown)", where)
