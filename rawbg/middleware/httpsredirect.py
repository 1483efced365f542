"""Redirect every plain-HTTP request to the same URL over HTTPS, with a 307 (Starlette's).

rawbg itself serves plain HTTP: behind a TLS-terminating proxy, the request's
scheme is what the trusted proxy says (``--proxy-headers``); without one,
every request is plain HTTP and is redirected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rawbg.responses import Response

if TYPE_CHECKING:
    from rawbg.middleware import CallNext
    from rawbg.requests import Request


class HTTPSRedirectMiddleware:
    def __init__(self, app: CallNext) -> None:
        self.app = app

    async def __call__(self, request: Request) -> Response:
        if request.scheme == "https":
            return await self.app(request)
        host = request.headers.get("host", "")
        name, _, port = host.partition(":")
        netloc = name if port in ("", "80", "443") else host
        target = request.target if request.target.startswith("/") else request.path
        target = request.root_path + target
        return Response(status_code=307, headers={"location": f"https://{netloc}{target}"})
