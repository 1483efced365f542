"""``app.mount(path, app, name)``: what serves the paths under a prefix, and naming paths.

A mount is a rawbg `App` (it handles the request as seen from under the
prefix) or any object answering ``await app(request) -> Response``, such as
`rawbg.staticfiles.StaticFiles`. `fill_template` and `NoMatchFound` serve
``app.url_path_for`` and ``request.url_for``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rawbg.errors import RouteDefinitionError


@dataclass(frozen=True, slots=True)
class Mount:
    """``app.mount(prefix, app, name)``: what serves the paths under `prefix`."""

    prefix: str  # "/static"; "" for everything
    app: Any  # an App, or ``await app(request) -> Response`` (StaticFiles)
    name: str | None


class NoMatchFound(LookupError):
    """Raised by `App.url_path_for` (and ``request.url_for``) for a name it does not know."""

    def __init__(self, name: str, path_params: Mapping[str, Any]) -> None:
        given = ", ".join(sorted(path_params))
        super().__init__(f'No route exists for name "{name}" and params "{given}".')


def check_mount_path(path: str) -> str:
    if path and not path.startswith("/"):
        raise RouteDefinitionError(f"a mount path must start with '/', got {path!r}")
    return path.rstrip("/")


def check_mountable(app: Any, *, is_app: bool) -> Any:
    """`app` if it can be mounted (a rawbg App, or an async callable of a request)."""
    if is_app:
        return app
    call = getattr(app, "__call__", None)  # noqa: B004 - an object's __call__ method
    if call is None or not inspect.iscoroutinefunction(call):
        raise RouteDefinitionError(
            f"cannot mount {app!r}: mount an App, StaticFiles, or an object with "
            "async def __call__(self, request) -> Response"
        )
    if len(inspect.signature(call).parameters) == 3:  # (scope, receive, send)
        raise RouteDefinitionError(
            f"cannot mount {type(app).__name__}: it looks like an ASGI app, and rawbg is not "
            "ASGI. Mount a rawbg App (or StaticFiles), or include its routes with "
            "include_router"
        )
    return app


_TEMPLATE_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def fill_template(template: str, params: Mapping[str, Any], name: str) -> str:
    """``/items/{id}`` with ``id=3`` -> ``/items/3``; every parameter must be given, no other."""
    wanted = {m.group(1) for m in _TEMPLATE_PARAM.finditer(template)}
    if wanted != set(params):
        raise NoMatchFound(name, params)

    def value(match: re.Match[str]) -> str:
        safe = "/" if match.group(2) == "path" else ""
        return quote(str(params[match.group(1)]), safe=safe)

    return _TEMPLATE_PARAM.sub(value, template)
