"""From an exception to a response: the app's exception handlers, looked up and called.

`App.handle` calls `answer_exception` for every exception a request ends
with (the router's 404/405, a 422, an `HTTPException`, anything a handler or
a dependency raised). The handler is found the way Starlette finds it:

1. for an `HTTPException`, a handler registered for its status code;
2. else the first class along the exception's MRO that has a handler
   (`HTTPException` and `RequestValidationError` always have the defaults of
   `rawbg.exception_handlers`; `Exception` may have the app's own);
3. else, for any other exception, a handler registered for 500.

An exception no handler claims is logged with its traceback and answered
with a plain 500; so is one only a catch-all handler (`Exception` or 500)
answered. A handler that raises, or returns something that is not a
`Response`, is logged and answered with a 500 too: the client never sees a
traceback, and the log says which handler failed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rawbg.errors import FileResponseError, HTTPException, InvalidResponseHead
from rawbg.responses import FileResponse, PlainTextResponse, Response
from rawbg.threadpool import run_in_thread

if TYPE_CHECKING:
    from rawbg.requests import Request
    from rawbg.trace import RequestTrace

logger = logging.getLogger("rawbg.app")

#: ``(request, exc) -> Response``, ``def`` or ``async def``
ExceptionHandler = Callable[[Any, Any], Response | Awaitable[Response]]
HandlerKey = type[BaseException] | int


def check_handler_key(key: object) -> HandlerKey:
    """An exception class or an HTTP status code (100-599); anything else is a clear error."""
    if isinstance(key, int) and not isinstance(key, bool):
        if not 100 <= key <= 599:
            raise ValueError(f"exception handler status code must be 100-599, not {key}")
        return key
    if isinstance(key, type) and issubclass(key, BaseException):
        return key
    raise TypeError(
        "an exception handler is registered for an exception class or an HTTP status "
        f"code, not {key!r}"
    )


def check_handler(key: HandlerKey, handler: object) -> None:
    """The handler must be callable as ``handler(request, exc)``."""
    name = getattr(key, "__qualname__", key)
    if not callable(handler):
        raise TypeError(f"the exception handler for {name} must be callable, not {handler!r}")
    try:
        inspect.signature(handler).bind(None, None)
    except TypeError as exc:
        raise TypeError(
            f"the exception handler for {name}, {handler!r}, must accept (request, exc): {exc}"
        ) from exc
    except ValueError:  # no signature to read (some builtins): trust it
        pass


def find_handler(
    handlers: dict[HandlerKey, ExceptionHandler], exc: BaseException
) -> tuple[HandlerKey, ExceptionHandler] | None:
    if isinstance(exc, HTTPException):
        handler = handlers.get(exc.status_code)
        if handler is not None:
            return exc.status_code, handler
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return cls, handler
    if not isinstance(exc, HTTPException):
        handler = handlers.get(500)
        if handler is not None:
            return 500, handler
    return None


async def answer_exception(
    handlers: dict[HandlerKey, ExceptionHandler],
    request: Request,
    exc: Exception,
    *,
    label: str,
    trace: RequestTrace | None,
    on_server_error: Callable[[Exception], None] | None = None,
) -> Response:
    """The response for `exc`, from the app's handlers. Never raises.

    `on_server_error` is told of every exception that is a server error: one
    no specific handler claims, and a handler's own failure.
    """
    found = find_handler(handlers, exc)
    if found is None:
        _log_unhandled(exc, label)
        if on_server_error is not None:
            on_server_error(exc)
        return internal_error()
    if found[0] in (Exception, BaseException, 500) and not isinstance(exc, HTTPException):
        _log_unhandled(exc, label)  # a catch-all answered: the error is still news
        if on_server_error is not None:
            on_server_error(exc)
    handler = found[1]
    name = getattr(handler, "__qualname__", repr(handler))
    try:
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_thread(handler, request, exc)
            if inspect.isawaitable(response):
                response = await response
        if not isinstance(response, Response):
            raise TypeError(f"it returned {response!r}, not a Response")
        if isinstance(response, FileResponse):
            await response.prepare()
    except Exception as failure:
        logger.exception(
            "exception handler %s for %s of %s failed: %s",
            name,
            type(exc).__name__,
            label,
            failure,
        )
        if on_server_error is not None:
            on_server_error(failure)
        return internal_error()
    if trace is not None:
        trace.event(
            "exception handler answered",
            handler=name,
            exception=type(exc).__name__,
            status=response.status_code,
        )
    return response


def _log_unhandled(exc: Exception, label: str) -> None:
    if isinstance(exc, FileResponseError):  # the app's path, named in one line
        logger.error("%s: %s", label, exc)
    elif isinstance(exc, InvalidResponseHead):  # a cookie attribute CPython itself refused
        logger.error("%s: its response cannot be sent, answered 500: %s", label, exc, exc_info=exc)
    else:
        logger.error("handler of %s raised", label, exc_info=exc)


def internal_error() -> Response:
    return PlainTextResponse("Internal Server Error", status_code=500)
