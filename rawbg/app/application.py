"""`App`: routes, and turning one request into a response plus the work left after it.

Registering a route plans its dependency graph (`rawbg.app.dependencies.plan_call`),
so a broken signature fails at import time. `App.handle` is what the
connection task calls for each request; it never raises. It is also the one
place where application errors become responses, through the app's exception
handlers (`rawbg.app.error_responses`):

* `HTTPException` (including 404/405 from the router) becomes
  ``{"detail": ...}`` with its status, `RequestValidationError` a 422;
* an exception class (or status code) the app registered a handler for gets
  that handler's response;
* any other exception is logged with its traceback and becomes a generic 500.

Before the response is chosen, the request's generator dependencies are
unwound with the exception thrown into them, so that one of them may turn it
into another (an `HTTPException` raised in its ``except`` block is what the
client gets, as in FastAPI). The request's background tasks are discarded
(the request failed, and a warning says how many).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rawbg.app.dependencies import (
    CallKind,
    CallPlan,
    Depends,
    Resolution,
    Source,
    form_params,
    plan_call,
    should_embed_body,
    walk,
)
from rawbg.app.error_responses import (
    ExceptionHandler,
    HandlerKey,
    answer_exception,
    check_handler,
    check_handler_key,
    internal_error,
)
from rawbg.app.lifespan import EventHandler, Lifespan
from rawbg.app.middleware_stack import MiddlewareStack
from rawbg.app.mounts import Mount, NoMatchFound, check_mount_path, check_mountable, fill_template
from rawbg.app.openapi.settings import OpenAPISettings
from rawbg.app.paths import NotFound, Router, compile_template
from rawbg.app.pydantic_support import ResponseOptions, ResponseSerializer
from rawbg.app.response_models import DEFAULT, plan_response_model, resolve_response_model
from rawbg.app.routing import (
    CURRENT_RESOLUTION,
    INHERITED_OPTIONS,
    APIRoute,
    RouteDecorators,
    RouteHandler,
    check_dependencies,
    check_documentation_options,
    custom_route_class,
    make_api_route,
    merge_documentation,
    plan_route_dependencies,
)
from rawbg.app.streaming import StreamPlan, plan_stream, run_tasks_added_while_streaming
from rawbg.culprits import Part, names_frames
from rawbg.datastructures import State
from rawbg.encoders import jsonable_encoder
from rawbg.errors import (
    BodyTooLarge,
    ClientDisconnected,
    DependencySwallowedError,
    FastAPIDeprecationWarning,
    HTTPException,
    InvalidResponseHead,
    RequestRejected,
    RequestValidationError,
    RouteDefinitionError,
)
from rawbg.exception_handlers import http_exception_handler, request_validation_exception_handler
from rawbg.forms import DEFAULT_LIMITS, FormLimits
from rawbg.middleware import BaseHTTPMiddleware, Middleware, check_middleware_class
from rawbg.requests import Request
from rawbg.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from rawbg.tasks.after_response import AfterResponse
from rawbg.tasks.calls import BackgroundTask, BackgroundTasks
from rawbg.threadpool import run_in_thread
from rawbg.types import Handler, HandlerT

if TYPE_CHECKING:
    from rawbg.trace import RequestTrace

logger = logging.getLogger("rawbg.app")

ExceptionHandlerT = TypeVar("ExceptionHandlerT", bound=ExceptionHandler)


def _name_endpoint_frame(frame: FrameType) -> Part:
    """For the loop-block watchdog: a frame of `App._call_endpoint` runs its route's handler."""
    endpoint, resolution = frame.f_locals["endpoint"], frame.f_locals["resolution"]
    return Part(f"the handler {endpoint.plan.name}", of=endpoint.label, trace=resolution.trace)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler with its planned dependency graph, as the router stores it."""

    handler: Handler
    plan: CallPlan
    status_code: int | None  # None: the response class's own default (200, 307...)
    label: str  # "POST /send-notification/{email}", for logs and traces
    embed_body: bool  # several body parameters: each is read from its own key
    response_class: type[Response] = JSONResponse
    #: names of the route dependencies in `plan`, resolved but not passed to the handler
    route_dependencies: tuple[str, ...] = ()
    #: validates and dumps what the handler returns (``response_model=``), or None
    serialize: ResponseSerializer | None = None
    #: a generator handler: how its items are streamed (`rawbg.app.streaming`)
    stream: StreamPlan | None = None
    #: the limits on the route's form (``form_limits=``), if it reads one
    form_limits: FormLimits = DEFAULT_LIMITS
    #: the most bytes its body may have (``max_body_size=``); None: the server's
    max_body_size: int | None = None
    #: its handler reads the body piece by piece (a form, an upload, the `Request`);
    #: otherwise the body is read whole before the handler runs
    streams_body: bool = False
    #: False: a body with no ``Content-Type`` is read as JSON (``strict_content_type``)
    strict_content_type: bool = True
    #: a custom `APIRoute` (``route_class``) and the handler it made; None: the plain path
    route: APIRoute | None = None
    route_handler: RouteHandler | None = None


@dataclass(slots=True)
class Outcome:
    """The result of `App.handle`: the response, and what to do once it is flushed."""

    response: Response
    after: AfterResponse | None = None
    #: the response's head fields, checked (`Response.head_fields`), once it leaves the app
    fields: list[tuple[bytes, bytes]] | None = None


class App(RouteDecorators, OpenAPISettings):
    """The application: ``app = App()``, then ``@app.get("/path")`` on each handler.

    ``dependencies`` run before every route's handler; ``redirect_slashes``
    answers a path that only matches with (or without) a trailing slash with a
    307 to that form, as FastAPI does; ``lifespan`` is the start-up and
    shutdown context (`rawbg.app.lifespan`). The OpenAPI options (``title``,
    ``version``, ``docs_url``, ...) are FastAPI's, with its defaults
    (`rawbg.app.openapi.settings.OpenAPISettings`): ``/openapi.json``, ``/docs``
    and ``/redoc`` are registered first, each turned off by its URL set to None.
    ``responses``, ``callbacks``, ``deprecated``, ``include_in_schema`` and
    ``generate_unique_id_function`` apply to every route, as in FastAPI.
    """

    def __init__(
        self,
        *,
        dependencies: Sequence[Depends] | None = None,
        redirect_slashes: bool = True,
        lifespan: Lifespan | None = None,
        default_response_class: type[Response] = JSONResponse,
        exception_handlers: Mapping[HandlerKey, ExceptionHandler] | None = None,
        max_body_size: int | None = None,
        form_limits: Mapping[str, int] | None = None,
        root_path: str = "",
        root_path_in_servers: bool = True,
        strict_content_type: bool = True,
        **documentation: Any,
    ) -> None:
        #: what every route inherits of the OpenAPI options (`merge_documentation`)
        self.route_documentation = {
            key: documentation.pop(key) for key in INHERITED_OPTIONS if key in documentation
        }
        self.configure_openapi(**documentation)
        #: every route's body limit, unless a router or the route sets one; None:
        #: the server's (``--max-body-size``)
        self.max_body_size = check_max_body_size(max_body_size, where="App(max_body_size=)")
        #: the largest limit a route of this app (or the app) sets (`largest_max_body_size`)
        self._largest_own_body_size = self.max_body_size or 0
        #: every route's form limits, unless a router or the route changes some
        self.form_limits = DEFAULT_LIMITS.merged(form_limits)
        if root_path:
            warnings.warn(
                "The `root_path` parameter is deprecated. Configure the server's root path "
                "instead, for example with `python -m rawbg --root-path /api/v1` (FastAPI: "
                "`fastapi run --root-path /api/v1`).",
                FastAPIDeprecationWarning,
                stacklevel=2,
            )
        #: every request's root path (``request.scope["root_path"]``), in place of the
        #: server's ``--root-path``: FastAPI's deprecated ``FastAPI(root_path=...)``
        self.root_path = root_path
        #: the OpenAPI document's ``servers`` start with the request's root path
        #: (FastAPI's option, for the OpenAPI document)
        self.root_path_in_servers = root_path_in_servers
        #: False: a body without a JSON ``Content-Type`` (none at all) is parsed as JSON
        #: too, as FastAPI's ``strict_content_type=False``; another type still is not
        self.strict_content_type = strict_content_type
        #: ``app.dependency_overrides[original] = replacement``: each request calls the
        #: replacement wherever the original is a dependency (FastAPI's, for tests)
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        self.router: Router[Endpoint] = Router()
        #: every route in registration order, as FastAPI's ``app.routes`` (what OpenAPI reads)
        self.routes: list[APIRoute] = []
        self.dependencies = check_dependencies(dependencies, where="App(dependencies=)")
        self.redirect_slashes = redirect_slashes
        # Lifecycle (rawbg.app.lifespan)
        self.lifespan = lifespan
        self.startup_handlers: list[EventHandler] = []
        self.shutdown_handlers: list[EventHandler] = []
        #: what the lifespan yielded; each request's state starts from it
        self.lifespan_state: dict[str, Any] = {}
        # Middleware (rawbg.middleware), the first added innermost
        self.user_middleware: list[Middleware] = []
        self._middleware_stack: MiddlewareStack[Outcome] | None = None
        # Responses and errors
        _check_response_class(default_response_class, "App(default_response_class=...)")
        #: what a handler's return value becomes, unless its route says otherwise
        self.default_response_class = default_response_class
        #: exception class or status code -> ``handler(request, exc)``
        self.exception_handlers: dict[HandlerKey, ExceptionHandler] = {
            HTTPException: http_exception_handler,
            RequestValidationError: request_validation_exception_handler,
        }
        for key, handler in (exception_handlers or {}).items():
            self.add_exception_handler(key, handler)
        #: attributes the app keeps for the whole process: ``app.state.db = ...``
        self.state = State()
        #: ``app.mount(path, ...)``: asked, in order, for a path no route matches
        self.mounts: list[Mount] = []
        #: a route's name (``name=``, else its function's) -> its path template
        self.route_paths: dict[str, str] = {}
        #: called with each exception that ends in a 500 (after it is logged): no
        #: handler claimed it, a catch-all did, or a handler failed. A test client
        #: re-raises them in the test, as Starlette's ``raise_server_exceptions``
        self.server_error_hooks: list[Callable[[Exception], None]] = []
        self.add_docs_routes()  # first, as FastAPI: a catch-all route cannot hide them

    def add_route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str],
        status_code: int | None = None,
        dependencies: Sequence[Depends] | None = None,
        response_class: type[Response] | None = None,
        response_model: Any = DEFAULT,
        response_model_include: Any = None,
        response_model_exclude: Any = None,
        response_model_by_alias: bool = True,
        response_model_exclude_unset: bool = False,
        response_model_exclude_defaults: bool = False,
        response_model_exclude_none: bool = False,
        max_body_size: int | None = None,
        form_limits: Mapping[str, int] | None = None,
        strict_content_type: bool | None = None,
        route_class: type[APIRoute] | None = None,
        app_dependencies: bool = True,
        **documentation: Any,
    ) -> None:
        """Register `handler` for `methods` on the `path` template; plan its dependencies.

        The app's `dependencies` (unless ``app_dependencies=False``, as for the
        docs pages, which FastAPI serves outside its dependencies), then the
        route's own, are resolved before the handler's parameters.
        `documentation` takes the OpenAPI-only options FastAPI routes accept
        (``tags``, ``summary``, ...), kept on the route's `APIRoute`.
        ``response_model`` (by default the handler's return annotation) and its
        ``response_model_*`` options: see `rawbg.app.response_models`.
        ``max_body_size`` is the most bytes this route's body may have (FastAPI's
        option; by default the app's, else the server's ``--max-body-size``).
        ``form_limits`` changes some of the app's `FormLimits` for this route
        (FastAPI's dict: ``{"max_fields": 5}``).
        """
        if isinstance(methods, str):
            raise TypeError(f"methods must be a list of strings, not the string {methods!r}")
        label = f"{'/'.join(m.upper() for m in methods)} {path}"
        check_documentation_options(documentation, what=f"route {label}")
        documentation = merge_documentation(self.route_documentation, documentation)
        _, path_params = compile_template(path)
        response_options = ResponseOptions(
            include=response_model_include,
            exclude=response_model_exclude,
            by_alias=response_model_by_alias,
            exclude_unset=response_model_exclude_unset,
            exclude_defaults=response_model_exclude_defaults,
            exclude_none=response_model_exclude_none,
        )
        stream: StreamPlan | None = None
        serialize: ResponseSerializer | None = None
        model: Any = None  # what the OpenAPI document describes the response as
        try:
            plan = plan_call(handler, path_params=path_params)
            if plan.kind in (CallKind.GENERATOR, CallKind.ASYNC_GENERATOR):
                if response_class is not None:
                    _check_response_class(response_class, f"response_class of {label}")
                stream = plan_stream(
                    handler,
                    response_class=response_class,
                    response_model_given=response_model is not DEFAULT,
                    options=response_options,
                    where=plan.where,
                )
            else:
                serialize = plan_response_model(handler, response_model, options=response_options)
                model = resolve_response_model(handler, response_model)
        except RouteDefinitionError as exc:
            raise RouteDefinitionError(f"{exc} [route {label}]") from None
        _check_one_body_kind(plan, label)
        limits = self.form_limits.merged(form_limits)
        body_limit = check_max_body_size(max_body_size, where=f"max_body_size of {label}")
        if body_limit is None:
            body_limit = self.max_body_size
        self._largest_own_body_size = max(self._largest_own_body_size, body_limit or 0)
        route_dependencies = (
            *(self.dependencies if app_dependencies else ()),
            *check_dependencies(dependencies, where=f"dependencies= of {plan.where}"),
        )
        hidden: tuple[str, ...] = ()
        if route_dependencies:
            try:
                planned = plan_route_dependencies(route_dependencies, path_params=path_params)
            except RouteDefinitionError as exc:
                raise RouteDefinitionError(f"{exc} [route {label}]") from None
            plan = dataclasses.replace(plan, params=(*planned, *plan.params))
            hidden = tuple(p.name for p in planned)
        if response_class is None:
            response_class = self.default_response_class
        else:
            _check_response_class(response_class, f"response_class of {label}")
        endpoint = Endpoint(
            handler,
            plan,
            status_code,
            label,
            embed_body=should_embed_body(plan),
            response_class=response_class,
            route_dependencies=hidden,
            serialize=serialize,
            stream=stream,
            form_limits=limits,
            max_body_size=body_limit,
            streams_body=streams_body(plan),
            strict_content_type=(
                self.strict_content_type if strict_content_type is None else strict_content_type
            ),
        )
        route_class = route_class or self.router.route_class or APIRoute
        custom = custom_route_class(route_class)  # refuses what is not an APIRoute
        route = make_api_route(
            route_class,
            path,
            handler,
            methods=methods,
            plan=plan,
            embed_body=endpoint.embed_body,
            status_code=status_code,
            response_class=response_class,
            response_model=model,
            documentation=documentation,
        )
        route.stream_kind = stream.kind if stream is not None else None
        self.routes.append(route)
        if custom:
            route.handle_request = self._request_handler(endpoint)
            endpoint = dataclasses.replace(
                endpoint, route=route, route_handler=route.get_route_handler()
            )
        if not path_params:
            for template in self.router.templates_matching(path, methods):
                logger.warning(
                    "%s is registered after %s, which also matches it: rawbg answers %s "
                    "with %s, FastAPI (first registered wins) would not; register %s first",
                    path,
                    template,
                    path,
                    plan.where,
                    path,
                )
        name = documentation.get("name") or getattr(handler, "__name__", None)
        if isinstance(name, str):
            self.route_paths.setdefault(name, path)  # the first wins, as Starlette's lookup
        for method, kept in self.router.add(path, methods, endpoint):
            logger.warning(
                "%s %s is already registered by %s; %s is ignored (the first route wins, "
                "as in FastAPI)",
                method,
                path,
                kept.plan.where,
                plan.where,
            )

    def add_api_route(
        self, path: str, handler: Handler, *, methods: Sequence[str] | None = None, **options: Any
    ) -> None:
        """FastAPI's spelling of `add_route`; GET when `methods` is not given."""
        self.add_route(path, handler, methods=methods or ["GET"], **options)

    def route(
        self, path: str, *, methods: Sequence[str], **options: Any
    ) -> Callable[[HandlerT], HandlerT]:
        return self.api_route(path, methods=methods, **options)

    def mount(self, path: str, app: Any, name: str | None = None) -> None:
        """Serve every path under `path` with `app`: another `App`, or `StaticFiles`.

        A mounted app sees the request with `path` moved from its ``path`` to
        its ``root_path``; mounts are asked, in the order mounted, for a path
        no route of this app matches. `app` may be any object that answers
        ``await app(request) -> Response``; an ASGI app cannot be mounted
        (rawbg is not ASGI).
        """
        self.mounts.append(
            Mount(check_mount_path(path), check_mountable(app, is_app=isinstance(app, App)), name)
        )

    @property
    def largest_max_body_size(self) -> int:
        """The largest limit a route (or the app) sets, a mounted App's routes included: the
        server refuses a declared Content-Length over it, and over its own, before routing."""
        mounted = [m.app.largest_max_body_size for m in self.mounts if isinstance(m.app, App)]
        return max([self._largest_own_body_size, *mounted])

    def url_path_for(self, name: str, /, **path_params: Any) -> str:
        """The path of the route (or mount) called `name`, with `path_params` filled in.

        A route's name is its ``name=``, else its function's name; a mount's
        is the ``name=`` it was mounted with, and takes ``path=`` (the file's
        path under it); ``"mount:route"`` names a route of a mounted `App`.
        """
        template = self.route_paths.get(name)
        if template is not None:
            return fill_template(template, path_params, name)
        for mount in self.mounts:
            if mount.name == name and set(path_params) <= {"path"}:
                return mount.prefix + "/" + str(path_params.get("path", "")).lstrip("/")
            if (
                mount.name is not None
                and name.startswith(mount.name + ":")
                and isinstance(mount.app, App)
            ):
                inner = name.removeprefix(mount.name + ":")
                return mount.prefix + mount.app.url_path_for(inner, **path_params)
        raise NoMatchFound(name, path_params)

    # -- lifecycle and middleware --------------------------------------------------

    def on_event(self, event: Literal["startup", "shutdown"]) -> Callable[[HandlerT], HandlerT]:
        """``@app.on_event("startup")``: run the handler before serving (or after, "shutdown").

        Deprecated, with the warning FastAPI gives: ``lifespan=`` does both in one place.
        """
        if event not in ("startup", "shutdown"):
            raise ValueError(f"on_event takes 'startup' or 'shutdown', not {event!r}")
        warnings.warn(
            "on_event is deprecated, use lifespan event handlers instead",
            DeprecationWarning,
            stacklevel=2,
        )

        def register(handler: HandlerT) -> HandlerT:
            self.add_event_handler(event, handler)
            return handler

        return register

    def add_event_handler(self, event: str, handler: EventHandler) -> None:
        if event not in ("startup", "shutdown"):
            raise ValueError(f"add_event_handler takes 'startup' or 'shutdown', not {event!r}")
        if self.lifespan is not None:
            logger.warning(
                "the %s handler %s is ignored: the app has a lifespan, which FastAPI "
                "runs instead of on_event handlers",
                event,
                getattr(handler, "__qualname__", handler),
            )
        handlers = self.startup_handlers if event == "startup" else self.shutdown_handlers
        handlers.append(handler)

    def add_middleware(self, middleware_class: type[Any], **options: Any) -> None:
        """Wrap the app in ``middleware_class(app, **options)``; the last added is outermost."""
        if self._middleware_stack is not None:
            raise RuntimeError("cannot add middleware after the app has started serving")
        check_middleware_class(middleware_class)
        self.user_middleware.insert(0, Middleware(middleware_class, options))

    def middleware(self, middleware_type: str) -> Callable[[HandlerT], HandlerT]:
        """``@app.middleware("http")`` on ``async def mw(request, call_next)``."""
        if middleware_type != "http":
            raise ValueError(f'rawbg has only "http" middleware, not {middleware_type!r}')

        def register(dispatch: HandlerT) -> HandlerT:
            self.add_middleware(BaseHTTPMiddleware, dispatch=dispatch)
            return dispatch

        return register

    def served_methods(self) -> list[str]:
        """The methods the app serves on some path, sorted: ``Allow`` for ``OPTIONS *``."""
        return sorted(self.router.methods())

    # -- errors --------------------------------------------------------------------

    def exception_handler(
        self, key: HandlerKey
    ) -> Callable[[ExceptionHandlerT], ExceptionHandlerT]:
        """``@app.exception_handler(SomeError)`` (or a status code): answer it with this."""
        check_handler_key(key)

        def register(handler: ExceptionHandlerT) -> ExceptionHandlerT:
            self.add_exception_handler(key, handler)
            return handler

        return register

    def add_exception_handler(self, key: HandlerKey, handler: ExceptionHandler) -> None:
        """Answer an exception class (and its subclasses), or a status code, with `handler`."""
        key = check_handler_key(key)
        check_handler(key, handler)
        self.exception_handlers[key] = handler

    async def handle(self, request: Request, trace: RequestTrace | None = None) -> Outcome:
        """Route `request`, resolve its dependencies, call its handler.

        Every error of the app becomes a response. What it raises is the
        server's to answer: a body the request could not deliver
        (`RequestRejected`: too large, too slow, malformed) or a client gone
        (`ClientDisconnected`). The response that leaves the app (through its
        middleware) has its head made and checked here, before a byte of it
        is sent: one the app made that HTTP cannot carry becomes a 500
        (`_unsendable`).
        """
        if self.root_path:
            request.root_path = self.root_path
        if self.user_middleware:
            outcome = await self._handle_with_middleware(request, trace)
        else:
            outcome = await self._handle_here(request, trace)
        try:
            outcome.fields = outcome.response.head_fields()
        except InvalidResponseHead as exc:
            return self._unsendable(request, outcome, exc)
        return outcome

    async def _handle_here(self, request: Request, trace: RequestTrace | None) -> Outcome:
        """`handle`, without the middleware and without checking the head."""
        request.app = self
        try:
            endpoint, request.path_params = self.router.match(request.method, request.path)
        except HTTPException as exc:
            if self.mounts and isinstance(exc, NotFound):
                mount = self._mount_for(request.path)
                if mount is not None:  # its body unread: what is mounted reads it
                    if self.max_body_size is not None:
                        limit_body(request, self.max_body_size)
                    return await self._handle_mounted(mount, request, trace)
            if self.max_body_size is not None or request.body_pending:
                await read_whole(request, self.max_body_size)
            redirect = (
                isinstance(exc, NotFound)
                and self.redirect_slashes
                and self._slash_redirect(request)
            )
            if redirect:
                return Outcome(redirect)
            label = f"{request.method} {request.path}"
            return error_outcome(await self._answer(request, exc, label, trace), label)
        request.route = endpoint if endpoint.route is None else endpoint.route
        if endpoint.max_body_size is not None or request.body_pending:
            await self._take_body(request, endpoint)
        resolution = Resolution(
            request,
            embed_body=endpoint.embed_body,
            trace=trace,
            strict_content_type=endpoint.strict_content_type,
            form_limits=endpoint.form_limits,
        )
        try:
            if endpoint.route_handler is None:
                response = await self._call_endpoint(endpoint, resolution)
            else:
                response = await self._call_route_handler(endpoint, resolution)
        except (RequestRejected, ClientDisconnected) as exc:
            await self._abandon(endpoint, resolution, exc)
            raise
        except Exception as exc:
            return await self._failed(endpoint, resolution, exc)
        tasks = resolution.background.tasks if resolution.background is not None else []
        if endpoint.stream is not None and resolution.background is not None:
            late = BackgroundTask(
                run_tasks_added_while_streaming, resolution.background, len(tasks), endpoint.label
            )
            tasks = [*tasks, late]
        own = response.background
        if own is not None and own is not resolution.background:  # not the injected ones again
            tasks = [*tasks, *(own.tasks if isinstance(own, BackgroundTasks) else [own])]
        stack = resolution.request_stack
        form = request.parsed_form
        if not tasks and stack is None and form is None:
            return Outcome(response)
        cleanup = stack.aclose if stack is not None else None
        if form is not None:  # its files outlive the response for the tasks, then close
            cleanup = _chain([form.close] if cleanup is None else [cleanup, form.close])
        return Outcome(response, AfterResponse(tasks, cleanup, endpoint.label))

    def _mount_for(self, path: str) -> Mount | None:
        for mount in self.mounts:
            prefix = mount.prefix
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return mount
        return None

    async def _handle_mounted(
        self, mount: Mount, request: Request, trace: RequestTrace | None
    ) -> Outcome:
        """Hand `request` to what is mounted, as seen from under its prefix."""
        inner = request.mounted_at(mount.prefix)
        if isinstance(mount.app, App):
            return await mount.app.handle(inner, trace)
        label = f"{request.method} {mount.prefix}/..."
        inner.app = self
        try:
            response = await mount.app(inner)
            if isinstance(response, FileResponse):
                await response.prepare()
        except Exception as exc:
            return error_outcome(await self._answer(request, exc, label, trace), label)
        return Outcome(response)

    def _slash_redirect(self, request: Request) -> Response | None:
        """A 307 to the path with (or without) its trailing slash, if a route has that form."""
        path = request.path
        if path == "/":
            return None
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        if not other or other.startswith("//") or not self.router.has_path(other):
            return None  # "//x" would be a protocol-relative Location: another host
        raw_path = request.target.partition("?")[0]
        if raw_path.startswith("/"):  # keep the client's percent-encoding
            target = raw_path.rstrip("/") if raw_path.endswith("/") else raw_path + "/"
        else:
            target = other
        target = request.root_path + target  # the prefix a proxy stripped, if any
        if request.query_string:
            target += "?" + request.query_string
        host = request.headers.get("host")
        if host is not None and _HOST.fullmatch(host):
            target = f"{request.scheme}://{host}{target}"  # scheme: from a trusted proxy
        return Response(status_code=307, headers={"location": target})

    async def _handle_with_middleware(
        self, request: Request, trace: RequestTrace | None
    ) -> Outcome:
        """Run the middleware around `handle`; keep the handler's work for after the response."""
        stack = self._middleware_stack
        if stack is None:
            stack = self._middleware_stack = MiddlewareStack(
                self._handle_here,
                _response_of,
                self.user_middleware,
            )
        result = await stack(request, trace)
        afters = [o.after for o in result.outcomes if o.after is not None]
        response = result.response
        if isinstance(result.error, (RequestRejected, ClientDisconnected)):
            for after in afters:  # the server answers: nothing of the app's runs
                after.discard("the request's body failed")
            raise result.error
        if response is None:  # a middleware raised
            logger.error(
                "middleware raised while handling %s", request.target, exc_info=result.error
            )
            response = PlainTextResponse("Internal Server Error", status_code=500)
            if isinstance(result.error, Exception):
                self._server_error(result.error)
            for after in afters:
                after.discard("a middleware raised")
            tasks: list[BackgroundTask] = []
        else:
            tasks = [task for after in afters for task in after.tasks]
            own = response.background
            if own is not None and all(own is not o.response.background for o in result.outcomes):
                tasks.extend(own.tasks if isinstance(own, BackgroundTasks) else [own])
        cleanups = [after.cleanup for after in afters if after.cleanup is not None]
        form = request.parsed_form
        if form is not None:  # parsed by a middleware, say: closing twice is harmless
            cleanups.append(form.close)
        if not tasks and not cleanups:
            return Outcome(response)
        label = afters[0].label if afters else f"{request.method} {request.path}"
        return Outcome(response, AfterResponse(tasks, _chain(cleanups), label))

    def _unsendable(self, request: Request, outcome: Outcome, exc: InvalidResponseHead) -> Outcome:
        """A 500 in place of a response whose head HTTP cannot carry; the log says why.

        The request's tasks are dropped (the request failed, as for any 500);
        the clean-up of its dependencies still runs.
        """
        route = request.route
        label = route.label if route is not None else f"{request.method} {request.path}"
        logger.error(
            "%s: its response cannot be sent, answered 500 instead: %s", label, exc, exc_info=exc
        )
        self._server_error(exc)
        after = outcome.after
        if after is not None:
            if after.tasks:
                logger.warning(
                    "discarding %d background task(s) of %s: its response could not be sent",
                    len(after.tasks),
                    after.label,
                )
            after = None if after.cleanup is None else AfterResponse((), after.cleanup, label)
        response = internal_error()
        return Outcome(response, after, response.head_fields())

    async def _call_route_handler(self, endpoint: Endpoint, resolution: Resolution) -> Response:
        """A custom route's handler (`APIRoute.get_route_handler`), given the request."""
        assert endpoint.route_handler is not None
        token = CURRENT_RESOLUTION.set(resolution)
        try:
            response = await endpoint.route_handler(resolution.request)
        finally:
            CURRENT_RESOLUTION.reset(token)
        if not isinstance(response, Response):
            raise TypeError(
                f"the route handler of {endpoint.label} returned {response!r}, not a Response"
            )
        return response

    def _request_handler(self, endpoint: Endpoint) -> RouteHandler:
        """What `APIRoute.get_route_handler` gives: one request, dependencies to response.

        It works on the request's `Resolution`, which the app puts in
        `CURRENT_RESOLUTION` while the custom handler runs. The request it is
        given may be another (a `Request` subclass made from the first): the
        parameters are read from that one, and the body through its ``body()``.
        """

        async def handle_request(request: Request) -> Response:
            resolution = CURRENT_RESOLUTION.get()
            if request is not resolution.request:  # another, made from it: read through it
                resolution.request = request
                resolution.raw_body = await request.body()
            return await self._call_endpoint(endpoint, resolution)

        return handle_request

    @names_frames(_name_endpoint_frame)
    async def _call_endpoint(self, endpoint: Endpoint, resolution: Resolution) -> Response:
        plan = endpoint.plan
        kwargs = await resolution.arguments(plan)
        if endpoint.route_dependencies:
            for name in endpoint.route_dependencies:
                del kwargs[name]
        if plan.kind is CallKind.COROUTINE:
            result = await plan.call(**kwargs)
        elif endpoint.stream is not None:  # made here, advanced as the body is sent
            result = endpoint.stream.response(plan.call(**kwargs), status_code=endpoint.status_code)
            if resolution.response is not None:
                resolution.response.apply_to(result)
        else:
            result = await run_in_thread(plan.call, **kwargs)
        if resolution.trace is not None:
            resolution.trace.event("handler returned", handler=plan.name)
        if resolution.function_stack is not None:
            await resolution.function_stack.aclose()
            if resolution.trace is not None:
                resolution.trace.event("dependency clean-up done", scope="function")
        if isinstance(result, Response):
            response = result
        else:
            response = self._make_response(endpoint, result, resolution)
        if isinstance(response, FileResponse):
            await response.prepare()
        return response

    @staticmethod
    def _make_response(endpoint: Endpoint, result: Any, resolution: Resolution) -> Response:
        """The handler's return value in the route's response class, as FastAPI does."""
        if endpoint.serialize is not None:
            result = endpoint.serialize(result)
        response_class = endpoint.response_class
        if response_class is not JSONResponse:  # JSONResponse encodes the same types itself
            result = jsonable_encoder(result)
        status_code = endpoint.status_code
        if status_code is None:
            response = response_class(result)
        else:
            response = response_class(result, status_code=status_code)
        if resolution.response is not None:  # a `response: Response` parameter was used
            resolution.response.apply_to(response)
        return response

    @staticmethod
    async def _take_body(request: Request, endpoint: Endpoint) -> None:
        """The route's body limit applied; the body read whole unless the route streams it."""
        if endpoint.streams_body:
            if endpoint.max_body_size is not None:
                limit_body(request, endpoint.max_body_size)
        else:
            await read_whole(request, endpoint.max_body_size)

    async def _abandon(self, endpoint: Endpoint, resolution: Resolution, exc: Exception) -> None:
        """The request's body failed (the server answers that): unwind, close, drop the tasks."""
        if resolution.trace is not None:
            resolution.trace.event("handler raised", error=repr(exc))
        await unwind(resolution.function_stack, exc, endpoint.label)
        await unwind(resolution.request_stack, exc, endpoint.label)
        form = resolution.request.parsed_form
        if form is not None:
            await form.close()

    async def _failed(self, endpoint: Endpoint, resolution: Resolution, exc: Exception) -> Outcome:
        if resolution.trace is not None:
            resolution.trace.event("handler raised", error=repr(exc))
        label = endpoint.label
        # Unwind the dependencies first: one may answer with another exception.
        exc = await unwind(resolution.function_stack, exc, label)
        exc = await unwind(resolution.request_stack, exc, label)
        form = resolution.request.parsed_form
        if form is not None:  # no task will read its files: close them now
            await form.close()
        response = await self._answer(resolution.request, exc, label, resolution.trace)
        if resolution.background is not None and resolution.background.tasks:
            logger.warning(
                "discarding %d background task(s) of %s: the request failed with %d",
                len(resolution.background.tasks),
                label,
                response.status_code,
            )
        return error_outcome(response, label)

    async def _answer(
        self, request: Request, exc: Exception, label: str, trace: RequestTrace | None
    ) -> Response:
        return await answer_exception(
            self.exception_handlers,
            request,
            exc,
            label=label,
            trace=trace,
            on_server_error=self._server_error if self.server_error_hooks else None,
        )

    def _server_error(self, exc: Exception) -> None:
        for hook in self.server_error_hooks:
            try:
                hook(exc)
            except Exception:
                logger.exception("server error hook %r failed", hook)


def error_outcome(response: Response, label: str) -> Outcome:
    """An error response, with the tasks its exception handler attached to it, if any."""
    own = response.background
    if own is None:
        return Outcome(response)
    tasks = own.tasks if isinstance(own, BackgroundTasks) else [own]
    return Outcome(response, AfterResponse(tasks, None, label))


# A Host header we may put in a Location: a name or address and a port, nothing else
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _response_of(outcome: Outcome) -> Response:
    return outcome.response


def _chain(cleanups: list[Callable[[], Any]]) -> Callable[[], Any] | None:
    """One clean-up that runs `cleanups` in order (one per call of the handler)."""
    if not cleanups:
        return None
    if len(cleanups) == 1:
        return cleanups[0]

    async def run_all() -> None:
        failed: Exception | None = None
        for cleanup in cleanups:  # each runs, whatever an earlier one did
            try:
                await cleanup()
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    return run_all


def limit_body(request: Request, max_size: int) -> None:
    """The body may have at most `max_size` bytes: 413 (the server's refusal) if the part
    already received is over it, else the limit goes to the reader of the rest."""
    if request.body_pending:
        request.limit_body(max_size)
    elif request.body_received > max_size:
        raise BodyTooLarge(f"body of {request.body_received} bytes exceeds {max_size}")


async def read_whole(request: Request, max_size: int | None) -> None:
    """The body read whole now (within `max_size`, if given), as a route that does not
    stream it has it before its handler."""
    if max_size is not None:
        limit_body(request, max_size)
    if request.body_pending:
        await request.body()


def streams_body(plan: CallPlan) -> bool:
    """Whether the handler reads its body itself, as it arrives: a form (its files spooled
    to disk as they come), or the `Request` (``request.stream()``, ``request.form()``)."""
    return any(p.source in (Source.FORM, Source.REQUEST) for p in walk(plan))


def check_max_body_size(value: int | None, *, where: str) -> int | None:
    """A body limit as given: a non-negative int, or None (the next one out decides)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{where} must be a non-negative int or None, got {value!r}")
    return value


def _check_one_body_kind(plan: CallPlan, label: str) -> None:
    """A body is a JSON document or a form, not both: refuse a route that asks for both."""
    forms = form_params(plan)
    bodies = [p for p in walk(plan) if p.source is Source.BODY]
    if forms and bodies:
        raise RouteDefinitionError(
            f"route {label}: {bodies[0].name!r} is read from a JSON body and {forms[0].name!r} "
            "from a form; a body is one or the other (make both Form() fields, or both Body())"
        )


def _check_response_class(response_class: object, where: str) -> None:
    if not (isinstance(response_class, type) and issubclass(response_class, Response)):
        raise RouteDefinitionError(
            f"{where} must be a Response subclass (JSONResponse, HTMLResponse, ...), "
            f"not {response_class!r}"
        )
    response_class.check_usable()


async def unwind(stack: AsyncExitStack | None, exc: Exception, label: str) -> Exception:
    """Close `stack` with `exc` thrown into its generators; return what the request ends with.

    That is `exc` if they re-raise it, the exception one of them raised
    instead (an `HTTPException` becomes the response), or, if one swallowed
    it, a `DependencySwallowedError`.
    """
    if stack is None:
        return exc
    try:
        swallowed = await stack.__aexit__(type(exc), exc, exc.__traceback__)
    except Exception as raised:
        return raised
    if not swallowed:
        return exc
    return DependencySwallowedError(
        f"{label} has no response: its handler was raising an exception and a dependency "
        f"with yield caught it ({exc!r}) without re-raising it; re-raise it (or raise an "
        "HTTPException) in the dependency's except block"
    )
