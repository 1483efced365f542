"""Refuse requests whose ``Host`` header is not one of the app's names (Host-header attacks).

``app.add_middleware(TrustedHostMiddleware, allowed_hosts=["example.com",
"*.example.com"])``, Starlette's arguments: a pattern ``*.example.com``
matches any subdomain (not ``example.com`` itself); ``"*"`` allows any host.
Anything else gets 400 ``Invalid host header``. With ``www_redirect`` (the
default), a request for ``example.com`` when only ``www.example.com`` is
allowed is redirected there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rawbg.responses import PlainTextResponse, Response

if TYPE_CHECKING:
    from rawbg.middleware import CallNext
    from rawbg.requests import Request


class TrustedHostMiddleware:
    def __init__(
        self,
        app: CallNext,
        allowed_hosts: Sequence[str] | None = None,
        www_redirect: bool = True,
    ) -> None:
        hosts = list(allowed_hosts) if allowed_hosts is not None else ["*"]
        if isinstance(allowed_hosts, str):
            raise TypeError(f"allowed_hosts must be a list of names, not {allowed_hosts!r}")
        for pattern in hosts:
            if "*" in pattern[1:]:
                raise ValueError(f"a wildcard is only allowed as '*.' at the start: {pattern!r}")
            if pattern.startswith("*") and pattern != "*" and not pattern.startswith("*."):
                raise ValueError(f"a wildcard must be followed by '.': {pattern!r}")
        self.app = app
        self.allowed_hosts = hosts
        self.allow_any = "*" in hosts
        self.www_redirect = www_redirect

    def _matches(self, host: str) -> bool:
        return any(
            host == pattern or (pattern.startswith("*") and host.endswith(pattern[1:]))
            for pattern in self.allowed_hosts
        )

    async def __call__(self, request: Request) -> Response:
        if self.allow_any:
            return await self.app(request)
        host = request.headers.get("host", "").split(":")[0].lower()
        if self._matches(host):
            return await self.app(request)
        if self.www_redirect and ("www." + host) in self.allowed_hosts:
            port = request.headers.get("host", "").partition(":")[2]
            netloc = f"www.{host}:{port}" if port else f"www.{host}"
            target = request.root_path + request.target
            return Response(
                status_code=307, headers={"location": f"{request.scheme}://{netloc}{target}"}
            )
        return PlainTextResponse("Invalid host header", status_code=400)
