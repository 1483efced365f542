"""Middleware: code that wraps every request's response, in the order it was added.

Two ways to add one, both Starlette's:

* ``@app.middleware("http")`` on ``async def mw(request, call_next)``:
  ``response = await call_next(request)`` runs the rest of the stack (the
  route and its handler) and gives its `Response`, which the middleware may
  change or replace before returning it.
* ``app.add_middleware(Class, **options)``: ``Class(app, **options)`` is made
  once, when the first request arrives, where ``app`` is the rest of the
  stack, an ``async (request) -> Response`` callable; the instance is awaited
  the same way, ``await instance(request)``. `BaseHTTPMiddleware` is the
  class to subclass for a ``dispatch(request, call_next)`` method.

The last added is the outermost, as in Starlette. Middleware wraps the
*response*, never the background work: the tasks a handler queued (and its
dependency clean-up) are set aside by `MiddlewareStack` while the middleware
runs, and start only after the response the outermost middleware returned is
flushed. A response a middleware builds itself may carry its own
``background=``; those tasks run after the handler's.

This is not ASGI: a class written for Starlette's ``(scope, receive, send)``
interface does not fit here. The ones FastAPI users reach for have rawbg
equivalents in this package (``rawbg.middleware.cors.CORSMiddleware``,
``.gzip.GZipMiddleware``, ``.trustedhost.TrustedHostMiddleware``,
``.httpsredirect.HTTPSRedirectMiddleware``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ..requests import Request
    from ..responses import Response
    from ..trace import RequestTrace

#: the rest of the stack, as a middleware sees it
CallNext = Callable[["Request"], Awaitable["Response"]]
#: ``async def mw(request, call_next) -> Response``
DispatchFunction = Callable[["Request", CallNext], Awaitable["Response"]]

__all__ = [
    "BaseHTTPMiddleware",
    "CallNext",
    "DispatchFunction",
    "Middleware",
    "MiddlewareStack",
    "StackResult",
]


class BaseHTTPMiddleware:
    """A middleware defined by one ``dispatch(request, call_next)`` coroutine.

    Subclass it and override `dispatch`, or pass ``dispatch=`` (which is what
    ``@app.middleware("http")`` does).
    """

    def __init__(self, app: CallNext, dispatch: DispatchFunction | None = None) -> None:
        self.app = app
        self.dispatch_func = self.dispatch if dispatch is None else dispatch

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        raise NotImplementedError("override dispatch, or pass dispatch=")

    async def __call__(self, request: Request) -> Response:
        return await self.dispatch_func(request, self.app)

    @property
    def name(self) -> str:
        func = self.dispatch_func
        return getattr(func, "__qualname__", type(self).__qualname__)


@dataclass(frozen=True, slots=True)
class Middleware:
    """A middleware class and its options, as ``add_middleware`` records them."""

    cls: type[Any]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        dispatch = self.options.get("dispatch")
        if self.cls is BaseHTTPMiddleware and dispatch is not None:
            return str(getattr(dispatch, "__qualname__", dispatch))
        return self.cls.__qualname__


def check_middleware_class(cls: Any) -> None:
    """Refuse what cannot work here, with what to use instead."""
    if not isinstance(cls, type):
        raise TypeError(f"add_middleware takes a class, not {cls!r}")
    module = getattr(cls, "__module__", "") or ""
    if module.split(".")[0] in ("starlette", "fastapi"):
        raise TypeError(
            f"{module}.{cls.__qualname__} is an ASGI middleware, and rawbg is not ASGI; "
            f"use rawbg.middleware.{_RAWBG_EQUIVALENTS.get(cls.__name__, 'BaseHTTPMiddleware')}"
        )


_RAWBG_EQUIVALENTS = {
    "CORSMiddleware": "cors.CORSMiddleware",
    "GZipMiddleware": "gzip.GZipMiddleware",
    "TrustedHostMiddleware": "trustedhost.TrustedHostMiddleware",
    "HTTPSRedirectMiddleware": "httpsredirect.HTTPSRedirectMiddleware",
}

OutcomeT = TypeVar("OutcomeT")  # the outcome of the innermost call: App's `Outcome`


class _Run(Generic[OutcomeT]):
    """One request's pass through the stack: what the innermost call produced."""

    __slots__ = ("outcomes", "trace")

    def __init__(self, trace: RequestTrace | None) -> None:
        self.trace = trace
        self.outcomes: list[OutcomeT] = []


# The run of the request being handled. A contextvar, not an argument: the
# middleware calls call_next(request) with the request alone; the run object is
# mutated, never re-set, so a middleware that awaits call_next in a task of its
# own (which copies the context) still reports to the same run.
_current_run: contextvars.ContextVar[_Run[Any]] = contextvars.ContextVar("rawbg_middleware_run")


@dataclass(slots=True)
class StackResult(Generic[OutcomeT]):
    """What one request's pass through the stack produced."""

    #: the response the outermost middleware returned; None if one raised
    response: Response | None
    #: every outcome of the innermost call: one, none if a middleware answered
    #: by itself, or more if one called ``call_next`` again
    outcomes: list[OutcomeT]
    #: what a middleware raised, if it did
    error: Exception | None = None


class MiddlewareStack(Generic[OutcomeT]):
    """The middleware around `route`; calling it runs one request through them.

    `route` is the app's own ``(request, trace) -> outcome``; `response_of`
    takes the response out of an outcome. The outcomes are handed back with
    the final response so that their background work is kept for after the
    final response is flushed. The layers are made on first use (a traced
    server gets layers that report to the trace).
    """

    def __init__(
        self,
        route: Callable[[Request, RequestTrace | None], Awaitable[OutcomeT]],
        response_of: Callable[[OutcomeT], Response],
        layers: list[Middleware],
    ) -> None:
        self._route = route
        self._response_of = response_of
        self._layers = layers
        self.names = [layer.name for layer in layers]
        self._entry: CallNext | None = None
        self._traced_entry: CallNext | None = None

    def _build(self, *, traced: bool) -> CallNext:
        call: CallNext = self._innermost
        for layer in reversed(self._layers):  # the first added ends up innermost
            call = layer.cls(call, **layer.options)
            if traced:
                call = _Traced(layer.name, call)
        return call

    async def _innermost(self, request: Request) -> Response:
        run = _current_run.get()
        outcome = await self._route(request, run.trace)
        run.outcomes.append(outcome)
        return self._response_of(outcome)

    async def __call__(self, request: Request, trace: RequestTrace | None) -> StackResult[OutcomeT]:
        if trace is None:
            entry = self._entry
            if entry is None:
                entry = self._entry = self._build(traced=False)
        else:
            entry = self._traced_entry
            if entry is None:
                entry = self._traced_entry = self._build(traced=True)
        run: _Run[OutcomeT] = _Run(trace)
        token = _current_run.set(run)
        try:
            response = await entry(request)
        except Exception as exc:
            return StackResult(None, run.outcomes, exc)
        finally:
            _current_run.reset(token)
        return StackResult(response, run.outcomes)


class _Traced:
    """A middleware layer that reports entering and leaving it to the request's trace."""

    __slots__ = ("inner", "name")

    def __init__(self, name: str, inner: CallNext) -> None:
        self.name = name
        self.inner = inner

    async def __call__(self, request: Request) -> Response:
        trace = _current_run.get().trace
        if trace is not None:
            trace.event("middleware entered", middleware=self.name)
        response = await self.inner(request)
        if trace is not None:
            trace.event("middleware returned", middleware=self.name, status=response.status_code)
        return response
