"""Path templates and the router: (method, path) to an endpoint and its path parameters.

A template is a path with ``{name}`` segments (``{name:path}`` also matches
slashes). Templates without parameters are found with one dict lookup; the
others are tried in registration order. The router does not know what an
endpoint is: `App` stores its own objects in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rawbg.errors import HTTPException

E = TypeVar("E")

_PARAMETER = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(:path)?}")


class NotFound(HTTPException):
    """Raised by `Router.match` when no template matches the path: a 404."""

    def __init__(self) -> None:
        super().__init__(404, "Not Found")


class MethodNotAllowed(HTTPException):
    """Raised by `Router.match` when the path matches but not the method: a 405 with Allow."""

    def __init__(self, allowed: Iterable[str]) -> None:
        super().__init__(405, "Method Not Allowed", {"Allow": ", ".join(sorted(allowed))})


def compile_template(template: str) -> tuple[re.Pattern[str], frozenset[str]]:
    """The regex that matches `template`, and the names of its parameters."""
    if not template.startswith("/"):
        raise ValueError(f"a route path must start with '/': {template!r}")
    names: list[str] = []
    pattern = ["^"]
    position = 0
    for match in _PARAMETER.finditer(template):
        pattern.append(re.escape(template[position : match.start()]))
        name, is_path = match.group(1), match.group(2)
        if name in names:
            raise ValueError(f"path parameter {name!r} appears twice in {template!r}")
        names.append(name)
        pattern.append(f"(?P<{name}>.+)" if is_path else f"(?P<{name}>[^/]+)")
        position = match.end()
    pattern.append(re.escape(template[position:]))
    pattern.append("$")
    return re.compile("".join(pattern)), frozenset(names)


def parameter_names(template: str) -> list[str]:
    """The ``{name}`` parameters of `template`, in order (a webhook's name has them too)."""
    return [match.group(1) for match in _PARAMETER.finditer(template)]


def openapi_path(template: str) -> str:
    """`template` as OpenAPI writes it: ``{name:path}`` is ``{name}``."""
    return _PARAMETER.sub(lambda match: "{" + match.group(1) + "}", template)


@dataclass(slots=True)
class Route(Generic[E]):
    template: str
    pattern: re.Pattern[str]
    parameters: frozenset[str]
    endpoints: dict[str, E] = field(default_factory=dict)
    #: HEAD answered by the GET endpoint, until a HEAD endpoint is registered
    implicit_head: bool = False


class Router(Generic[E]):
    def __init__(self) -> None:
        #: FastAPI's ``app.router.route_class``: the class of the routes registered
        #: from now on (read by ``App.add_route``); None is ``APIRoute``
        self.route_class: Any = None
        self._routes: dict[str, Route[E]] = {}
        self._static: dict[str, Route[E]] = {}
        self._dynamic: list[Route[E]] = []

    def add(self, template: str, methods: Iterable[str], endpoint: E) -> list[tuple[str, E]]:
        """Register `endpoint` for `methods`; return the (method, kept endpoint) already taken.

        A method already registered on the same template keeps its first
        endpoint, as in FastAPI (where the first matching route answers); the
        caller warns about the ones returned.
        """
        route = self._routes.get(template)
        if route is None:
            pattern, parameters = compile_template(template)
            route = Route(template, pattern, parameters)
            self._routes[template] = route
            if parameters:
                self._dynamic.append(route)
            else:
                self._static[template] = route
        taken: list[tuple[str, E]] = []
        for method in (m.upper() for m in methods):
            if method == "HEAD" and route.implicit_head:
                route.implicit_head = False
            elif method in route.endpoints:
                taken.append((method, route.endpoints[method]))
                continue
            route.endpoints[method] = endpoint
            if method == "GET" and "HEAD" not in route.endpoints:
                route.endpoints["HEAD"] = endpoint
                route.implicit_head = True
        return taken

    def has_path(self, path: str) -> bool:
        """Whether some route matches `path`, whatever its methods."""
        if path in self._static:
            return True
        return any(route.pattern.match(path) for route in self._dynamic)

    def templates_matching(self, path: str, methods: Iterable[str]) -> list[str]:
        """The templates with parameters that match `path` for one of `methods`.

        A path without parameters is found before them here; FastAPI, which
        tries routes in registration order, would send it to the first of them
        registered earlier (the caller warns about that).
        """
        wanted = {m.upper() for m in methods}
        return [
            route.template
            for route in self._dynamic
            if route.pattern.match(path) and wanted & route.endpoints.keys()
        ]

    def match(self, method: str, path: str) -> tuple[E, dict[str, str]]:
        """The endpoint for `method` on `path` and the path parameters, or 404/405."""
        route = self._static.get(path)
        params: dict[str, str] = {}
        if route is None:
            for candidate in self._dynamic:
                found = candidate.pattern.match(path)
                if found is not None:
                    route, params = candidate, found.groupdict()
                    break
            else:
                raise NotFound()
        endpoint = route.endpoints.get(method)
        if endpoint is None:
            raise MethodNotAllowed(route.endpoints)
        return endpoint, params

    def methods(self) -> set[str]:
        """Every method some route serves (HEAD included where GET implies it)."""
        return {method for route in self._routes.values() for method in route.endpoints}

    def __iter__(self) -> Iterator[Route[E]]:
        return iter(self._routes.values())
