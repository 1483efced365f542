"""The exceptions rawbg raises, each with the one place that turns it into a response.

Two families:

* `RequestRejected` and its subclasses describe a request the *server* refuses
  before any handler sees it (malformed, too large, too slow). They are raised
  inside the connection task and converted to a status code in exactly one
  place, `Connection._reject`, which answers and then closes the connection.
* `HTTPException` and `RequestValidationError` are raised by user code or by the
  dependency graph while a request is handled. `App.handle` converts them (and
  any other exception) into a response through the app's exception handlers
  (a 500 for an exception no handler claims); the connection stays open.

`RouteDefinitionError` is raised at import time, when a route is registered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rawbg.reason_phrases import reason_phrase


class HTTPException(Exception):
    """Raised by a handler or a dependency to answer with an error status.

    The response is ``{"detail": detail}`` with `status_code` and `headers`
    (`rawbg.exception_handlers.http_exception_handler`, unless the app
    registered its own handler for the class or the status code). Background
    tasks queued by the request are not run: the request failed.
    """

    def __init__(
        self,
        status_code: int,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if detail is None:
            detail = reason_phrase(status_code, unknown="Error")
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class RequestValidationError(Exception):
    """Raised while resolving a handler's parameters when some cannot be converted.

    `errors()` gives the pydantic-shaped entries (``type``, ``loc``, ``msg``,
    ``input``), all of them, for every parameter; `body` is the request body
    as parsed (None if there was none). The default handler answers 422 with
    ``{"detail": errors}``
    (`rawbg.exception_handlers.request_validation_exception_handler`). Not an
    `HTTPException`, as in FastAPI: a handler registered for `HTTPException`
    does not receive it.
    """

    def __init__(self, errors: Sequence[Any], *, body: Any = None) -> None:
        # `loc` a tuple, as pydantic (and so FastAPI) gives it; JSON shows a list
        self._errors = [
            {**error, "loc": tuple(error["loc"])}
            if isinstance(error, dict) and isinstance(error.get("loc"), list)
            else error
            for error in errors
        ]
        super().__init__(self._errors)
        self.body = body

    def errors(self) -> list[Any]:
        return self._errors

    def __str__(self) -> str:
        lines = [f"{len(self._errors)} validation error(s):"]
        lines.extend(f"  {error!r}" for error in self._errors)
        return "\n".join(lines)


class DependencySwallowedError(RuntimeError):
    """Raised (to the exception handlers) when a generator dependency swallowed an exception.

    The handler raised, a dependency with ``yield`` caught the exception in
    its ``except`` block and did not re-raise it: nothing is left to answer
    with, so the client gets a 500 (as in FastAPI) and the log names the route
    and the exception.
    """


class FileResponseError(RuntimeError):
    """Raised when a `FileResponse`'s file is missing, not a regular file, or unreadable.

    It is the app's mistake (it chose the path), so the client gets a 500 and
    the log says which route and which file, in one line.
    """


class FastAPIDeprecationWarning(UserWarning):
    """Warned for an option FastAPI deprecates that rawbg honours the same way.

    ``App(root_path=...)``: configure the server's root path instead
    (``python -m rawbg --root-path``). FastAPI's class, under FastAPI's name,
    so that a warnings filter written for FastAPI applies here too.
    """


class InvalidResponseHead(ValueError):
    """Raised when a response's head cannot be sent as the app made it.

    A header name that is not a token, a value HTTP cannot carry (CR, LF or
    another control character, a character beyond latin-1), a status outside
    200-999, a ``content-length`` that is not the body's
    (`rawbg.datastructures.header_field`, the one rule). `App.handle` checks
    the head of every response before a byte of it is sent: the client gets a
    500 instead, and the log names the route and the header.
    """


class RouteDefinitionError(TypeError):
    """Raised when a route is registered whose handler or dependencies cannot work.

    The message names the function and the parameter: a parameter nothing can
    supply, a dependency cycle, a path parameter of a type a path segment
    cannot hold. (A path segment no parameter asks for is allowed, as in
    FastAPI: the route matches it and nothing reads it.)

    `site` is ``file:line`` of the route's own definition when the route came
    from an ``APIRouter`` (it is registered at ``include_router``, whose line
    would otherwise be the one blamed), else None.
    """

    site: str | None = None


class OpenAPIError(RouteDefinitionError):
    """Raised when the OpenAPI document is built (``app.openapi()``, the first
    ``GET /openapi.json``, ``python -m rawbg APP --openapi``) and a route's type
    cannot be described as JSON Schema. The message names the route, the
    parameter (or the response) and the function's file:line.
    """


class RequestRejected(Exception):
    """Raised inside the connection task when the server refuses a request.

    `status_code` is what the client is told; the connection is closed after
    the response, because the rest of its input cannot be trusted.
    """

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequest(RequestRejected):
    """Raised when h11 cannot parse the request, or it breaks a rule of RFC 9112.

    `rawbg.wire.conformance.parse_error_rejection` is the one translation of h11's
    errors into this (and its 431/501 siblings); `rawbg.wire.conformance` also
    raises it for what h11 lets through (an invalid Host, say).
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


class RequestTimeout(RequestRejected):
    """Raised when a request head (or body) did not arrive within the timeout."""

    status_code = 408


class BodyTooLarge(RequestRejected):
    """Raised when ``Content-Length`` or a chunked body exceeds ``max_body_size``."""

    status_code = 413


class HeadTooLarge(RequestRejected):
    """Raised when a request line plus headers exceed ``max_head_size``."""

    status_code = 431


class UnsupportedTransferCoding(RequestRejected):
    """Raised for a well-formed ``Transfer-Encoding`` naming a coding other than ``chunked``.

    A value that cannot frame a body (``chunked`` not last, twice, an empty
    element) is a `MalformedRequest` instead (RFC 9112 6.3).
    """

    status_code = 501


class MethodNotImplemented(RequestRejected):
    """Raised for ``CONNECT``: rawbg is an origin server and opens no tunnels."""

    status_code = 501


class ServerBusy(RequestRejected):
    """Raised for a connection beyond ``limit_concurrency``: 503, then close."""

    status_code = 503


class VersionNotSupported(RequestRejected):
    """Raised for an HTTP major version other than 1 (``HTTP/2.0`` on an HTTP/1 connection)."""

    status_code = 505


class ClientDisconnected(ConnectionError):
    """Raised when reading from or writing to a connection whose client has gone away.

    The connection task catches it (`Connection.serve`): nothing is left to
    answer, the connection closes, its background work still runs.
    """
