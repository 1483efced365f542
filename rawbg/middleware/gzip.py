"""Compress responses with gzip for clients that accept it (Starlette's GZipMiddleware).

``app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)``: a
response whose body is at least `minimum_size` bytes, to a request whose
``Accept-Encoding`` names gzip, is sent compressed with ``Content-Encoding:
gzip`` and ``Vary: Accept-Encoding``. A response that already has a
``Content-Encoding`` is left alone, and so is a `StreamingResponse` (its
length is unknown up front; rawbg does not compress it piece by piece).
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

from rawbg.middleware.cors import add_vary, set_header
from rawbg.responses import Response, StreamingResponse

if TYPE_CHECKING:
    from rawbg.middleware import CallNext
    from rawbg.requests import Request


class GZipMiddleware:
    def __init__(self, app: CallNext, minimum_size: int = 500, compresslevel: int = 9) -> None:
        if not 1 <= compresslevel <= 9:
            raise ValueError(f"compresslevel must be between 1 and 9, got {compresslevel!r}")
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, request: Request) -> Response:
        response = await self.app(request)
        if "gzip" not in request.headers.get("accept-encoding", "").lower():
            return response
        if isinstance(response, StreamingResponse) or len(response.body) < self.minimum_size:
            return response
        if any(name.lower() == "content-encoding" for name in response.headers):
            return response
        response.body = gzip.compress(response.body, self.compresslevel, mtime=0)
        set_header(response.headers, "Content-Encoding", "gzip")
        if any(name.lower() == "content-length" for name in response.headers):
            set_header(response.headers, "Content-Length", str(len(response.body)))
        add_vary(response.headers, "Accept-Encoding")
        return response
