"""The default exception handlers, reusable from an app's own.

Every `App` starts with these two registered; ``@app.exception_handler(...)``
replaces one for a class or a status code. A handler of the app's may log
something and then hand over to the default:

    @app.exception_handler(HTTPException)
    async def log_then_answer(request, exc):
        logger.info("HTTP error: %r", exc)
        return await http_exception_handler(request, exc)
"""

from __future__ import annotations

from rawbg.encoders import jsonable_encoder
from rawbg.errors import HTTPException, RequestValidationError
from rawbg.requests import Request
from rawbg.responses import JSONResponse, Response


def body_allowed(status_code: int) -> bool:
    """Whether a response with this status may carry a body (RFC 9110 6.4.1)."""
    return status_code >= 200 and status_code not in (204, 304)


async def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    """``{"detail": exc.detail}`` with the exception's status and headers."""
    headers = getattr(exc, "headers", None)
    if not body_allowed(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    try:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    except (TypeError, ValueError) as failure:  # the app's bug, not the client's: a 500
        raise TypeError(f"cannot encode the detail of {exc!r}: {failure}") from failure


async def request_validation_exception_handler(
    request: Request, exc: RequestValidationError
) -> Response:
    """422 with ``{"detail": exc.errors()}``."""
    return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
