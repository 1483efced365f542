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
interface does not fit here. The stack that runs them around the app's
routing is the app's own (`rawbg.app.middleware_stack`). The ones FastAPI users reach for have rawbg
equivalents in this package (``rawbg.middleware.cors.CORSMiddleware``,
``.gzip.GZipMiddleware``, ``.trustedhost.TrustedHostMiddleware``,
``.httpsredirect.HTTPSRedirectMiddleware``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rawbg.requests import Request
    from rawbg.responses import Response

#: the rest of the stack, as a middleware sees it
CallNext = Callable[["Request"], Awaitable["Response"]]
#: ``async def mw(request, call_next) -> Response``
DispatchFunction = Callable[["Request", CallNext], Awaitable["Response"]]

__all__ = [
    "BaseHTTPMiddleware",
    "CallNext",
    "DispatchFunction",
    "Middleware",
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
