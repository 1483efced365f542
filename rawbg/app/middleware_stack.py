"""`MiddlewareStack`: the app's middleware around its routing, one request at a time.

The middleware themselves (``@app.middleware("http")``, ``add_middleware``,
`BaseHTTPMiddleware`, CORS, GZip...) are public, in `rawbg.middleware`. This is
how the app runs them: the last added outermost, each given the rest of the
stack as ``call_next``, and the innermost call's outcome (the response *and*
its background work) set aside while the middleware see only the response.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rawbg.middleware import CallNext, Middleware

if TYPE_CHECKING:
    from rawbg.requests import Request
    from rawbg.responses import Response
    from rawbg.trace import RequestTrace

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
