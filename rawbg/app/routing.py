"""`APIRouter`: routes declared apart from the app, then included with a prefix; `APIRoute`.

A router does not serve anything. It records each route it is given (path,
handler, methods, options) as a `RouteSpec`; ``app.include_router(router)``
replays them into the app with the prefixes joined and the dependencies
stacked, and only then are they planned (`rawbg.app.dependencies.plan_call`), so
a broken signature in a router still fails at import time, at the
``include_router`` line. Including is a snapshot, as in FastAPI: a route added
to the router afterwards is not served.

`RouteDecorators` is the one definition of ``get``/``post``/... and of
``include_router`` shared by `App` and `APIRouter`: each forwards its options
to ``add_api_route``, so an option a route accepts is declared in one place,
``App.add_route``, and an app includes a router the way a router does.

Route dependencies (``dependencies=[Depends(check)]`` on a route, a router,
an ``include_router`` call or the App) are planned as parameters of the
handler's own plan that the handler is not given (`plan_route_dependencies`),
so they are resolved before its own parameters, share its per-request cache,
report their 422 entries with its own, and their generator clean-up runs with
the others.

The options that only describe a route in the OpenAPI document (`DOCUMENTATION_OPTIONS`:
``tags``, ``summary``, ``responses``, ...) are kept on its `APIRoute`, the record
``app.routes`` lists and `rawbg.app.openapi` reads. A router's and an
``include_router`` call's ``tags``, ``responses``, ``deprecated``,
``include_in_schema``, ``callbacks`` and ``generate_unique_id_function`` are
merged into each route's as FastAPI merges them (`merge_documentation`).
"""

from __future__ import annotations

import contextvars
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rawbg.app.dependencies import (
    CallPlan,
    DependencyParam,
    Depends,
    ParamPlan,
    Resolution,
    describe,
    plan_depends,
)
from rawbg.app.paths import openapi_path
from rawbg.errors import RouteDefinitionError
from rawbg.requests import Request
from rawbg.responses import JSONResponse, Response
from rawbg.types import Handler, HandlerT

#: Route options that only shape the OpenAPI document (`rawbg.app.openapi`):
#: kept on the route's `APIRoute`, never read per request.
DOCUMENTATION_OPTIONS = frozenset(
    {
        "tags",
        "summary",
        "description",
        "response_description",
        "deprecated",
        "operation_id",
        "include_in_schema",
        "responses",
        "name",
        "openapi_extra",
        "callbacks",
        "generate_unique_id_function",
    }
)

#: the options a router or an ``include_router`` call passes down to its routes
INHERITED_OPTIONS = (
    "tags",
    "responses",
    "deprecated",
    "include_in_schema",
    "callbacks",
    "generate_unique_id_function",
)

#: the prefix of the names under which route dependencies sit in a handler's
#: plan; not an identifier, so it cannot clash with a parameter
ROUTE_DEPENDENCY_PREFIX = "dependencies["


class RouteDecorators:
    """``get``, ``post``, ... ``api_route``, ``include_router``: shared by `App` and `APIRouter`.

    Each registers through ``add_api_route``, the one method the two define
    apart (an `App` plans the route, an `APIRouter` records it).
    """

    def add_api_route(
        self, path: str, handler: Handler, *, methods: Sequence[str] | None = None, **options: Any
    ) -> None:
        raise NotImplementedError

    def api_route(
        self, path: str, *, methods: Sequence[str] | None = None, **options: Any
    ) -> Callable[[HandlerT], HandlerT]:
        """Register the decorated handler for `methods` (GET when not given) on `path`."""

        def register(handler: HandlerT) -> HandlerT:
            self.add_api_route(path, handler, methods=methods or ["GET"], **options)
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["GET"], **options)

    def post(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["POST"], **options)

    def put(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["PUT"], **options)

    def patch(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["PATCH"], **options)

    def delete(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["DELETE"], **options)

    def head(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["HEAD"], **options)

    def options(self, path: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=["OPTIONS"], **options)

    def include_router(
        self,
        router: APIRouter,
        *,
        prefix: str = "",
        tags: Sequence[Any] | None = None,
        dependencies: Sequence[Depends] | None = None,
        responses: Mapping[Any, Any] | None = None,
        max_body_size: int | None = None,
        form_limits: Mapping[str, int] | None = None,
        **documentation: Any,
    ) -> None:
        """Add `router`'s routes under `prefix`, after `dependencies`: a snapshot.

        Each route goes through ``add_api_route`` as if declared here with the
        joined path, so this object's own prefix and dependencies apply too.
        ``max_body_size`` and ``form_limits`` apply to the routes that (with
        their router) do not set their own, as in FastAPI.
        """
        if not isinstance(router, APIRouter):
            raise TypeError(f"include_router takes an APIRouter, not {type(router).__name__}")
        check_prefix(prefix)
        check_documentation_options(documentation, what="include_router()")
        extra = check_dependencies(dependencies, where="include_router(dependencies=)")
        outer = {**documentation, "tags": tags, "responses": responses}
        for spec in list(router.routes):  # a snapshot: later additions are not included
            try:
                self.add_api_route(
                    join_paths(prefix, spec.path, handler=spec.handler),
                    spec.handler,
                    methods=spec.methods,
                    dependencies=(*extra, *spec.dependencies),
                    **inherit_limits(
                        merge_documentation(outer, spec.options), max_body_size, form_limits
                    ),
                )
            except RouteDefinitionError as exc:
                if exc.site is None:  # the innermost include knows the route's own line
                    exc.site = definition_site(spec.handler)
                raise


def definition_site(handler: Handler) -> str | None:
    """``file:line`` where `handler` is defined (its first decorator's line), if known."""
    code = getattr(inspect.unwrap(handler), "__code__", None)
    return None if code is None else f"{code.co_filename}:{code.co_firstlineno}"


#: the request's dependency walk, while a custom route's handler runs
#: (`APIRoute.get_route_handler`): set by `App` around that handler only
CURRENT_RESOLUTION: contextvars.ContextVar[Resolution] = contextvars.ContextVar("rawbg_resolution")

#: what a route's handler is: ``await handler(request)`` is the response
RouteHandler = Callable[[Request], Awaitable[Response]]


class APIRoute:
    """A route, as FastAPI's ``APIRoute``: what ``app.routes`` lists and OpenAPI describes;
    subclass it to wrap each request's handling.

    Its names are FastAPI's (``path``, ``endpoint``, ``methods``, ``name``,
    ``tags``, ``unique_id``, ...), so that ``get_openapi(routes=app.routes)`` and
    a ``generate_unique_id_function(route)`` written for FastAPI work. The app
    gives it the handler's plan (`plan`, route dependencies first) when it
    registers the route; serving a request never reads it (the router holds the
    hot path's own ``Endpoint``), unless its class overrides `get_route_handler`.

    ``app.router.route_class = MyRoute`` (or ``APIRouter(route_class=MyRoute)``)
    makes every route registered after it a ``MyRoute``. Override
    `get_route_handler`: call ``super().get_route_handler()`` for the handler
    that answers a request, and return your own ``async def handler(request)``
    around it. It may hand that handler another request (a `Request`
    subclass, ``MyRequest(request.scope, request.receive)``; its ``body()``
    is what body parameters are read from), change the response, or catch what
    it raises (`RequestValidationError`, `HTTPException`). What it lets out is
    answered by the app's exception handlers.

    Without ASGI there is no ``scope``/``receive``/``send`` to take over: the
    handler gets a `Request` and returns a `Response`, the request's body is
    read before it runs, and background tasks still start only after the
    response is flushed. A route class that does not override
    `get_route_handler` changes nothing, and costs nothing per request.
    """

    #: the handler's plan, route dependencies first (`plan_route_dependencies`);
    #: set by the app that registers the route (`make_api_route`)
    plan: CallPlan
    #: several body parameters (or ``Body(embed=True)``): one JSON object of them
    embed_body: bool = False
    #: a generator handler's `rawbg.app.streaming.StreamKind`; None for any other
    stream_kind: Any = None

    def __init__(
        self,
        path: str,
        endpoint: Handler,
        *,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        status_code: int | None = None,
        response_model: Any = None,
        response_class: type[Response] = JSONResponse,
        tags: Sequence[Any] | None = None,
        summary: str | None = None,
        description: str | None = None,
        response_description: str = "Successful Response",
        responses: Mapping[Any, dict[str, Any]] | None = None,
        deprecated: bool | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
        openapi_extra: dict[str, Any] | None = None,
        callbacks: Sequence[Any] | None = None,
        generate_unique_id_function: Callable[[APIRoute], str] | None = None,
        **options: Any,
    ) -> None:
        self.path = path
        self.endpoint = endpoint
        self.methods = {method.upper() for method in methods or ["GET"]}
        #: "GET /items/{item_id}", for logs and traces
        self.label = f"{'/'.join(method.upper() for method in methods or ['GET'])} {path}"
        self.name = (
            name if name is not None else getattr(endpoint, "__name__", type(endpoint).__name__)
        )
        self.status_code = int(status_code) if status_code is not None else None
        #: the type the response is described (and, with pydantic, validated) as, or None
        self.response_model = response_model
        self.response_class = response_class
        self.tags = list(tags or ())
        self.summary = summary
        self.description = route_description(endpoint, description)
        self.response_description = response_description
        self.responses = dict(responses or {})
        self.deprecated = deprecated
        self.operation_id = operation_id
        self.include_in_schema = include_in_schema
        self.openapi_extra = openapi_extra
        #: routes of an `APIRouter` (its ``.routes``) describing requests this route makes
        self.callbacks = list(callbacks or ())
        #: the route's other options, as given (``max_body_size``, ...)
        self.options = dict(options)
        self.unique_id = operation_id or (generate_unique_id_function or generate_unique_id)(self)
        #: set by the app before it asks for the handler: answers one request
        self.handle_request: RouteHandler | None = None

    @property
    def path_format(self) -> str:
        """The template as OpenAPI writes it (``/files/{name}`` for ``/files/{name:path}``)."""
        return openapi_path(self.path)

    def get_route_handler(self) -> RouteHandler:
        """The handler of one request: its dependencies resolved, the endpoint called,
        the response made. It raises what they raise."""
        handle = self.handle_request
        if handle is None:
            raise RuntimeError(
                f"route {self.path}: get_route_handler() is answered once the route is "
                "registered on an App"
            )
        return handle

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, methods={sorted(self.methods)!r})"


def custom_route_class(route_class: type[APIRoute]) -> bool:
    """Whether `route_class` changes how a request is handled (it overrides the handler)."""
    if not (isinstance(route_class, type) and issubclass(route_class, APIRoute)):
        raise RouteDefinitionError(f"route_class must be an APIRoute subclass, not {route_class!r}")
    return route_class.get_route_handler is not APIRoute.get_route_handler


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """A route as a router recorded it, to be registered when the router is included."""

    path: str
    handler: Handler
    methods: tuple[str, ...]
    dependencies: tuple[Depends, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


class APIRouter(RouteDecorators):
    """Routes declared apart from the app: ``router = APIRouter(prefix="/items")``.

    ``tags``, ``responses`` (and ``deprecated``, ``include_in_schema``,
    ``callbacks``, ``generate_unique_id_function``) are merged into each of its
    routes' OpenAPI options; ``dependencies`` run before every route's
    handler, after those of the app and of the ``include_router`` call.
    """

    def __init__(
        self,
        *,
        prefix: str = "",
        tags: Sequence[Any] | None = None,
        dependencies: Sequence[Depends] | None = None,
        responses: Mapping[Any, Any] | None = None,
        route_class: type[APIRoute] = APIRoute,
        max_body_size: int | None = None,
        form_limits: Mapping[str, int] | None = None,
        **documentation: Any,
    ) -> None:
        check_prefix(prefix)
        check_documentation_options(documentation, what="APIRouter()")
        custom_route_class(route_class)  # refuses what is not an APIRoute
        #: the class of the routes declared here (`APIRoute`: FastAPI's ``route_class``)
        self.route_class = route_class
        self.prefix = prefix
        #: for its routes that set none (the route's own wins, as in FastAPI)
        self.max_body_size = max_body_size
        self.form_limits = dict(form_limits or {})
        self.tags = list(tags or [])
        self.dependencies = check_dependencies(dependencies, where="APIRouter(dependencies=)")
        self.responses = dict(responses or {})
        #: what the router passes down to its routes' documentation (`merge_documentation`)
        self.documentation: dict[str, Any] = {
            **{k: v for k, v in documentation.items() if k in INHERITED_OPTIONS},
            "tags": self.tags,
            "responses": self.responses,
        }
        self.routes: list[RouteSpec] = []

    def add_api_route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str] | None = None,
        dependencies: Sequence[Depends] | None = None,
        **options: Any,
    ) -> None:
        """Record a route (GET when `methods` is not given); it is planned when included."""
        methods = methods or ["GET"]
        if isinstance(methods, str):
            raise TypeError(f"methods must be a list of strings, not the string {methods!r}")
        full_path = join_paths(self.prefix, path, handler=handler)
        own = check_dependencies(dependencies, where=f"dependencies= of {describe(handler)}")
        options = merge_documentation(self.documentation, options)
        options = inherit_limits(options, self.max_body_size, self.form_limits)
        if self.route_class is not APIRoute:
            options.setdefault("route_class", self.route_class)
        self.routes.append(
            RouteSpec(full_path, handler, tuple(methods), (*self.dependencies, *own), options)
        )


def merge_documentation(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> dict[str, Any]:
    """A route's options (`inner`) with those its router or include call passes down (`outer`).

    As FastAPI: tags and callbacks are joined (the outer first), responses
    merged (the route's win), ``deprecated`` if either says so,
    ``include_in_schema`` only if both do, the route's own
    ``generate_unique_id_function`` before the outer one.
    """
    merged = dict(inner)
    if outer.get("tags") or inner.get("tags"):
        merged["tags"] = [*(outer.get("tags") or ()), *(inner.get("tags") or ())]
    if outer.get("responses"):
        merged["responses"] = {**outer["responses"], **(inner.get("responses") or {})}
    if outer.get("callbacks"):
        merged["callbacks"] = [*outer["callbacks"], *(inner.get("callbacks") or ())]
    if outer.get("deprecated"):
        merged["deprecated"] = True
    if outer.get("include_in_schema") is False:
        merged["include_in_schema"] = False
    if "generate_unique_id_function" not in inner and "generate_unique_id_function" in outer:
        merged["generate_unique_id_function"] = outer["generate_unique_id_function"]
    return merged


def make_api_route(
    route_class: type[APIRoute],
    path: str,
    handler: Handler,
    *,
    methods: Sequence[str],
    plan: CallPlan,
    embed_body: bool,
    status_code: int | None,
    response_class: type[Response],
    response_model: Any,
    documentation: Mapping[str, Any],
) -> APIRoute:
    """The `APIRoute` (of `route_class`) of a planned route, as the app registers it."""
    route = route_class(
        path,
        handler,
        methods=methods,
        status_code=status_code,
        response_class=response_class,
        response_model=response_model,
        **documentation,
    )
    route.plan = plan
    route.embed_body = embed_body
    return route


def generate_unique_id(route: APIRoute) -> str:
    """FastAPI's operationId: the name and path, non-word characters as ``_``, the method."""
    operation_id = re.sub(r"\W", "_", f"{route.name}{route.path_format}")
    return f"{operation_id}_{sorted(route.methods)[0].lower()}"


def route_description(handler: Handler, description: str | None) -> str:
    """FastAPI's: the given text, or the handler's docstring, up to a form feed."""
    text = description or inspect.cleandoc(handler.__doc__ or "")
    return text.split("\f")[0].strip()


def inherit_limits(
    options: Mapping[str, Any],
    max_body_size: int | None,
    form_limits: Mapping[str, int] | None,
) -> dict[str, Any]:
    """A route's options with a router's limits under its own: its ``max_body_size`` if it
    has one, else the router's; the router's ``form_limits`` updated with its own."""
    inherited = dict(options)
    if inherited.get("max_body_size") is None and max_body_size is not None:
        inherited["max_body_size"] = max_body_size
    if form_limits:
        inherited["form_limits"] = {**form_limits, **(options.get("form_limits") or {})}
    return inherited


def check_prefix(prefix: str) -> None:
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"a router prefix must start with '/': {prefix!r}")
    if prefix.endswith("/"):
        raise ValueError(
            f"a router prefix must not end with '/', the routes' paths start with one: {prefix!r}"
        )


def join_paths(prefix: str, path: str, *, handler: Handler) -> str:
    if not prefix and not path:
        raise RouteDefinitionError(
            f"route of {describe(handler)}: the path and the router prefix cannot both be empty"
        )
    return prefix + path


def check_documentation_options(
    options: Mapping[str, Any], *, what: str, accepted: frozenset[str] = DOCUMENTATION_OPTIONS
) -> None:
    """Refuse a keyword that is not one of the `accepted` OpenAPI-only options, as Python would."""
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{what} got unexpected keyword argument(s): {', '.join(unknown)}")


def check_dependencies(
    dependencies: Sequence[Depends] | None, *, where: str
) -> tuple[Depends, ...]:
    """The `dependencies=` list as a tuple; anything but ``Depends(callable)`` is an error."""
    if dependencies is None:
        return ()
    if isinstance(dependencies, Depends) or not isinstance(dependencies, Sequence):
        raise RouteDefinitionError(f"{where} must be a list of Depends(...), got {dependencies!r}")
    for item in dependencies:
        if not isinstance(item, Depends) or item.dependency is None:
            raise RouteDefinitionError(
                f"{where}: each item must be Depends(a_callable), got {item!r}"
            )
    return tuple(dependencies)


def plan_route_dependencies(
    dependencies: Sequence[Depends], *, path_params: frozenset[str]
) -> tuple[ParamPlan, ...]:
    """Plan route dependencies as parameters the handler is not given.

    Each is named ``dependencies[i]`` in the handler's plan (and in
    ``--routes``); `App` drops those names from the arguments before the call.
    """
    plans = []
    for index, depends in enumerate(dependencies):
        sub = plan_depends(depends, path_params=path_params)
        name = f"{ROUTE_DEPENDENCY_PREFIX}{index}]"
        empty = inspect.Parameter.empty  # required, and no annotation to show
        plans.append(DependencyParam(name, empty, empty, sub))
    return tuple(plans)
