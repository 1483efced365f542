"""CORS: answer browsers' preflight requests and label responses for cross-origin reads.

``app.add_middleware(CORSMiddleware, allow_origins=[...], ...)`` with
Starlette's arguments and behaviour (what FastAPI's
``fastapi.middleware.cors.CORSMiddleware`` is):

* A request without ``Origin`` is not a CORS request: the app answers it, and
  its response only gets ``Vary: Origin`` (a cache must not hand it to a
  cross-origin reader, who would have got the CORS headers).
* A *preflight* (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) is answered here, never routed: 200
  ``OK`` when the origin, the method and every requested header are allowed,
  else 400 ``Disallowed CORS origin, method, headers`` naming what failed. The
  browser enforces the answer; the 400 only makes the refusal readable. A
  preflight asking for the private network
  (``Access-Control-Request-Private-Network``) is allowed only with
  ``allow_private_network=True``.
* Any other request with ``Origin`` goes to the app, and its response gets
  ``Access-Control-Allow-Origin`` (the origin itself when it is allowed, or
  ``*`` for ``allow_origins=["*"]`` without credentials) and ``Vary: Origin``.

The answers are Starlette 1.10's, header for header: the same names, written
in lower case as Starlette writes them, and the same values.
"""

from __future__ import annotations

import re
from collections.abc import Collection, MutableMapping
from typing import TYPE_CHECKING

from rawbg.responses import PlainTextResponse, Response

if TYPE_CHECKING:
    from rawbg.middleware import CallNext
    from rawbg.requests import Request

#: what ``allow_methods=["*"]`` allows
ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY")
#: request headers a browser may send cross-origin without asking (the Fetch standard's safelist)
SAFELISTED_HEADERS = frozenset({"Accept", "Accept-Language", "Content-Language", "Content-Type"})
#: the request headers a preflight answer varies with
PREFLIGHT_VARY = (
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
    "Access-Control-Request-Private-Network"
)


class CORSMiddleware:
    """Cross-origin resource sharing, with Starlette's arguments and defaults."""

    def __init__(
        self,
        app: CallNext,
        allow_origins: Collection[str] = (),
        allow_methods: Collection[str] = ("GET",),
        allow_headers: Collection[str] = (),
        allow_credentials: bool = False,
        allow_origin_regex: str | None = None,
        allow_private_network: bool = False,
        expose_headers: Collection[str] = (),
        max_age: int = 600,
    ) -> None:
        for name, value in (
            ("allow_origins", allow_origins),
            ("allow_methods", allow_methods),
            ("allow_headers", allow_headers),
            ("expose_headers", expose_headers),
        ):
            if isinstance(value, str):
                raise TypeError(f"CORSMiddleware {name} must be a list of strings, not {value!r}")
        self.app = app
        self.allow_origins = frozenset(allow_origins)
        self.allow_all_origins = "*" in self.allow_origins
        self.allow_origin_regex = re.compile(allow_origin_regex) if allow_origin_regex else None
        self.allow_methods = ALL_METHODS if "*" in allow_methods else tuple(allow_methods)
        self.allow_all_headers = "*" in allow_headers
        allowed_headers = sorted(SAFELISTED_HEADERS | set(allow_headers))
        self.allow_headers = frozenset(h.lower() for h in allowed_headers)
        self.allow_credentials = allow_credentials
        self.allow_private_network = allow_private_network
        # With credentials a browser refuses "*": the origin itself must be echoed.
        self.echo_origin_in_preflight = not self.allow_all_origins or allow_credentials

        self.simple_headers: dict[str, str] = {}
        if self.allow_all_origins:
            self.simple_headers["access-control-allow-origin"] = "*"
        if allow_credentials:
            self.simple_headers["access-control-allow-credentials"] = "true"
        if expose_headers:
            self.simple_headers["access-control-expose-headers"] = ", ".join(expose_headers)

        self.preflight_headers: dict[str, str] = {"vary": PREFLIGHT_VARY}
        if not self.echo_origin_in_preflight:
            self.preflight_headers["access-control-allow-origin"] = "*"
        self.preflight_headers["access-control-allow-methods"] = ", ".join(self.allow_methods)
        self.preflight_headers["access-control-max-age"] = str(max_age)
        if not self.allow_all_headers:
            self.preflight_headers["access-control-allow-headers"] = ", ".join(allowed_headers)
        if allow_credentials:
            self.preflight_headers["access-control-allow-credentials"] = "true"

    def is_allowed_origin(self, origin: str) -> bool:
        if self.allow_all_origins or origin in self.allow_origins:
            return True
        return self.allow_origin_regex is not None and bool(
            self.allow_origin_regex.fullmatch(origin)
        )

    async def __call__(self, request: Request) -> Response:
        headers = request.headers
        origin = headers.get("origin")
        if origin is None:
            response = await self.app(request)
            add_vary(response.headers, "Origin")
            return response
        if request.method == "OPTIONS" and "access-control-request-method" in headers:
            return self.preflight(request)
        response = await self.app(request)
        self.label_simple(response, origin)
        return response

    def preflight(self, request: Request) -> Response:
        """The answer to a preflight request: which origin, methods and headers may follow."""
        headers = request.headers
        origin: str = headers["origin"]
        answer = dict(self.preflight_headers)
        failures: list[str] = []
        if not self.is_allowed_origin(origin):
            failures.append("origin")
        elif self.echo_origin_in_preflight:
            answer["access-control-allow-origin"] = origin
        if headers["access-control-request-method"] not in self.allow_methods:
            failures.append("method")
        requested: str | None = headers.get("access-control-request-headers")
        if requested is not None:
            if self.allow_all_headers:
                answer["access-control-allow-headers"] = requested
            elif any(
                name.strip().lower() not in self.allow_headers for name in requested.split(",")
            ):
                failures.append("headers")
        if "access-control-request-private-network" in headers:
            if self.allow_private_network:
                answer["access-control-allow-private-network"] = "true"
            else:
                failures.append("private-network")
        if failures:
            return PlainTextResponse(
                "Disallowed CORS " + ", ".join(failures), status_code=400, headers=answer
            )
        return PlainTextResponse("OK", status_code=200, headers=answer)

    def label_simple(self, response: Response, origin: str) -> None:
        """Add the CORS headers to the app's response to a cross-origin request."""
        out = response.headers
        for name, value in self.simple_headers.items():
            set_header(out, name, value)
        if self.allow_credentials if self.allow_all_origins else self.is_allowed_origin(origin):
            # echoed: "*" is refused by browsers with credentials, and a list names the origin
            set_header(out, "access-control-allow-origin", origin)
        add_vary(out, "Origin")


def _find(headers: MutableMapping[str, str], name: str) -> str | None:
    lower = name.lower()
    return next((key for key in headers if key.lower() == lower), None)


def set_header(headers: MutableMapping[str, str], name: str, value: str) -> None:
    """Set `name` to `value`, replacing a header of that name in any case."""
    key = _find(headers, name)
    headers[key if key is not None else name] = value


def add_vary(headers: MutableMapping[str, str], name: str) -> None:
    key = _find(headers, "vary")
    if key is None:
        headers["vary"] = name
    elif name.lower() not in (v.strip().lower() for v in headers[key].split(",")):
        headers[key] = f"{headers[key]}, {name}"
