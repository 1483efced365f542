"""The dependency graph: planned once per route, walked once per request.

`plan_call` inspects a handler's signature when its route is registered and
returns a `CallPlan`: for each parameter, where its value comes from (`Source`)
and how to convert it, recursing into `Depends(...)`. Mistakes surface there,
as `RouteDefinitionError` naming the function and the parameter.

At request time `Resolution` walks the plan: it converts path and query
strings, parses the JSON body once, calls each dependency at most once (its
value is cached for the rest of the request unless ``use_cache=False``), and
enters generator dependencies on one of two exit stacks: ``scope="function"``
ones are closed as soon as the handler returns, ``scope="request"`` ones (the
default) after the response is flushed and the background tasks have run.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeAlias

from rawbg.app.converters import Invalid
from rawbg.app.form_params import (
    NOT_SENT,
    FormKind,
    FormPlan,
    is_form_param,
    plan_form,
    read_form_value,
)
from rawbg.app.param_models import ABSENT, ParamModel, gather, relocate
from rawbg.app.sources import ValuePlan, located, missing, plan_value, read_body
from rawbg.culprits import Part, names_frames
from rawbg.errors import RequestValidationError, RouteDefinitionError
from rawbg.forms import DEFAULT_LIMITS, FormLimits
from rawbg.params import Param
from rawbg.requests import Request
from rawbg.responses import Response, ResponseParameter
from rawbg.security import SecurityBase, SecurityScopes
from rawbg.tasks.calls import BackgroundTasks
from rawbg.threadpool import run_in_thread
from rawbg.types import Dependency

if TYPE_CHECKING:
    from rawbg.trace import RequestTrace
    from rawbg.uploads import FormData

Scope = Literal["request", "function"]


class Depends:
    """Declare that a parameter's value is the result of calling `dependency`.

    ``q: str = Depends(get_query)`` or ``q: Annotated[str, Depends(get_query)]``.
    With ``use_cache=False`` it is called again each time it is needed in one
    request. A generator dependency's clean-up runs after the background tasks
    (``scope="request"``, the default) or as soon as the handler returns
    (``scope="function"``).
    """

    __slots__ = ("dependency", "scope", "use_cache")

    def __init__(
        self,
        dependency: Dependency | None = None,
        *,
        use_cache: bool = True,
        scope: Scope = "request",
    ) -> None:
        if scope not in ("request", "function"):
            raise ValueError(f"Depends scope must be 'request' or 'function', not {scope!r}")
        self.dependency = dependency
        self.use_cache = use_cache
        self.scope: Scope = scope

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__qualname__", self.dependency)
        return f"{type(self).__name__}({name})"


class Security(Depends):
    """`Depends` that also asks the dependency (and all below it) for OAuth2 `scopes`.

    ``user: Annotated[User, Security(get_current_user, scopes=["items"])]``: a
    dependency below it with a `SecurityScopes` parameter gets every scope
    asked on its way up, and the OpenAPI document lists them for the route's
    scheme (`security_requirements`). The same dependency asked for other
    scopes is called again, not taken from the request's cache, as in FastAPI.
    """

    __slots__ = ("scopes",)

    def __init__(
        self,
        dependency: Dependency | None = None,
        *,
        scopes: typing.Sequence[str] | None = None,
        use_cache: bool = True,
        scope: Scope = "request",
    ) -> None:
        super().__init__(dependency, use_cache=use_cache, scope=scope)
        self.scopes: tuple[str, ...] = tuple(scopes or ())


class Source(enum.Enum):
    """Where a parameter's value comes from."""

    PATH = "path"
    QUERY = "query"
    HEADER = "header"
    COOKIE = "cookie"
    BODY = "body"
    FORM = "form"
    REQUEST = "request"
    RESPONSE = "response (headers, cookies, status)"
    BACKGROUND = "background tasks"
    SECURITY_SCOPES = "security scopes"
    DEPENDENCY = "dependency"


class CallKind(enum.Enum):
    """How a handler or dependency is called."""

    COROUTINE = "async def"
    FUNCTION = "def, in the thread pool"
    ASYNC_GENERATOR = "async generator"
    GENERATOR = "generator, in the thread pool"


@dataclass(frozen=True, slots=True)
class ValueParam:
    """A value read from the request (path, query, header, cookie, body), and how."""

    name: str
    source: Source
    default: Any  # inspect.Parameter.empty when required
    annotation: Any
    value: ValuePlan

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty and self.value.default_factory is None

    def default_value(self) -> Any:
        factory = self.value.default_factory
        return factory() if factory is not None else self.default


@dataclass(frozen=True, slots=True)
class DependencyParam:
    """The value of a dependency (``Depends``), made by walking its own plan."""

    name: str
    default: Any
    annotation: Any
    call: CallPlan
    source: ClassVar[Source] = Source.DEPENDENCY

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class InjectedParam:
    """An object of the request itself: the `Request`, its `BackgroundTasks`, its `Response`,
    or the `SecurityScopes` asked of the dependency."""

    name: str
    source: Source  # REQUEST, BACKGROUND, RESPONSE or SECURITY_SCOPES
    default: Any
    annotation: Any

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class FormParam:
    """A value read from the request's form (``Form()``, ``File()``, ``UploadFile``), and how."""

    name: str
    default: Any  # inspect.Parameter.empty when required
    annotation: Any
    form: FormPlan
    source: ClassVar[Source] = Source.FORM

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty and self.form.default_factory is None

    def default_value(self) -> Any:
        factory = self.form.default_factory
        return factory() if factory is not None else self.default


#: a parameter's plan: one variant per kind of source
ParamPlan: TypeAlias = ValueParam | FormParam | DependencyParam | InjectedParam


@dataclass(frozen=True, slots=True)
class CallPlan:
    call: Callable[..., Any]
    name: str  # the qualified name, for traces
    where: str  # "module.name (file:line)", for error messages
    kind: CallKind
    params: tuple[ParamPlan, ...]
    use_cache: bool = True
    scope: Scope = "request"
    #: the OAuth2 scopes asked of this call by every `Security` on the way to it
    security_scopes: tuple[str, ...] = ()
    #: the key of its value in a request's cache: the call, and its scopes if it uses them
    cache_key: Any = None


def _uses_scopes(call: Callable[..., Any], own: tuple[str, ...], params: tuple[Any, ...]) -> bool:
    """Whether scopes change what this call does (FastAPI's rule for its cache key)."""
    if own or isinstance(call, SecurityBase):
        return True
    for param in params:
        if isinstance(param, InjectedParam) and param.source is Source.SECURITY_SCOPES:
            return True
        if isinstance(param, DependencyParam) and param.call.cache_key is not param.call.call:
            return True
    return False


def _add_scopes(parent: tuple[str, ...], own: tuple[str, ...]) -> tuple[str, ...]:
    """`parent` then those of `own` not already in it, in order."""
    return parent + tuple(s for s in dict.fromkeys(own) if s not in parent)


def describe(call: Callable[..., Any]) -> str:
    """``module.qualname (file:line)``, to name a function in an error message."""
    name = getattr(call, "__qualname__", None) or type(call).__qualname__
    module = getattr(call, "__module__", None)
    code = getattr(inspect.unwrap(call), "__code__", None)
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{module}.{name}{where}" if module else f"{name}{where}"


def _call_kind(call: Callable[..., Any]) -> CallKind:
    target = call
    if not inspect.isfunction(call) and not inspect.ismethod(call) and not inspect.isclass(call):
        target = getattr(call, "__call__", call)  # noqa: B004 - a callable instance
    if inspect.isasyncgenfunction(target):
        return CallKind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return CallKind.GENERATOR
    if inspect.iscoroutinefunction(target):
        return CallKind.COROUTINE
    return CallKind.FUNCTION


def plan_call(
    call: Callable[..., Any],
    *,
    path_params: frozenset[str],
    use_cache: bool = True,
    scope: Scope = "request",
    parent_scopes: tuple[str, ...] = (),
    own_scopes: tuple[str, ...] = (),
    _stack: tuple[Callable[..., Any], ...] = (),
) -> CallPlan:
    """Inspect `call`'s signature and plan where each of its parameters comes from.

    `_stack` is the chain of calls that depend on this one; `_plan_param`
    refuses a dependency already on it (a cycle) before planning it.
    `parent_scopes` are the OAuth2 scopes asked above this call, `own_scopes`
    those its own `Security` marker asks.
    """
    scopes = _add_scopes(parent_scopes, own_scopes)
    try:
        signature = inspect.signature(call, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise RouteDefinitionError(f"cannot read the signature of {describe(call)}: {exc}") from exc
    params = tuple(
        _plan_param(call, param, path_params, (*_stack, call), scopes)
        for param in signature.parameters.values()
    )
    name = getattr(call, "__qualname__", None) or type(call).__qualname__
    uses_scopes = _uses_scopes(call, own_scopes, params)
    cache_key = (call, tuple(sorted(set(scopes)))) if uses_scopes else call
    return CallPlan(
        call,
        name,
        describe(call),
        _call_kind(call),
        params,
        use_cache,
        scope,
        security_scopes=scopes,
        cache_key=cache_key,
    )


def plan_depends(
    depends: Depends,
    *,
    path_params: frozenset[str],
    parent_scopes: tuple[str, ...] = (),
    stack: tuple[Callable[..., Any], ...] = (),
) -> CallPlan:
    """Plan what a `Depends` (or `Security`) marker calls, with its options."""
    if depends.dependency is None:
        raise RouteDefinitionError(f"{depends!r} has no callable to plan")
    return plan_call(
        depends.dependency,
        path_params=path_params,
        use_cache=depends.use_cache,
        scope=depends.scope,
        parent_scopes=parent_scopes,
        own_scopes=depends.scopes if isinstance(depends, Security) else (),
        _stack=stack,
    )


def _plan_param(
    call: Callable[..., Any],
    param: inspect.Parameter,
    path_params: frozenset[str],
    stack: tuple[Callable[..., Any], ...],
    scopes: tuple[str, ...],
) -> ParamPlan:
    where = f"parameter {param.name!r} of {describe(call)}"
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
        raise RouteDefinitionError(
            f"{where}: *args, **kwargs and positional-only parameters "
            "cannot be supplied by name; make it a keyword parameter"
        )
    annotation, default = param.annotation, param.default
    depends: Depends | None = None
    marker: Param | None = None
    metadata: list[Any] = []
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, Depends):
                depends = extra
            elif isinstance(extra, Param):
                marker = extra  # the last one wins, as in FastAPI
            else:
                metadata.append(extra)
    in_annotated = marker is not None
    if isinstance(default, Depends):
        depends, default = default, inspect.Parameter.empty
    elif isinstance(default, Param):
        if marker is not None:
            raise RouteDefinitionError(
                f"{where}: {marker!r} in Annotated and {default!r} as the default; give one"
            )
        marker, default = default, inspect.Parameter.empty
    if depends is not None:
        if marker is not None or metadata:
            raise RouteDefinitionError(
                f"{where}: Depends(...) cannot be combined with {marker or metadata[0]!r}"
            )
        dependency = depends.dependency
        if dependency is None:
            if not callable(annotation) or annotation is inspect.Parameter.empty:
                raise RouteDefinitionError(
                    f"{where}: Depends() without a callable needs a class annotation to call"
                )
            dependency = annotation
        if dependency in stack:
            chain = " -> ".join(describe(c) for c in (*stack, dependency))
            raise RouteDefinitionError(f"{where} closes a dependency cycle: {chain}")
        if depends.dependency is None:
            depends = _with_dependency(depends, dependency)
        sub = plan_depends(depends, path_params=path_params, parent_scopes=scopes, stack=stack)
        return DependencyParam(param.name, default, annotation, sub)
    if marker is None and not metadata:
        if isinstance(annotation, type) and issubclass(annotation, Request):
            return InjectedParam(param.name, Source.REQUEST, default, annotation)
        if isinstance(annotation, type) and issubclass(annotation, BackgroundTasks):
            return InjectedParam(param.name, Source.BACKGROUND, default, annotation)
        if isinstance(annotation, type) and issubclass(annotation, Response):
            return InjectedParam(param.name, Source.RESPONSE, default, annotation)
        if isinstance(annotation, type) and issubclass(annotation, SecurityScopes):
            return InjectedParam(param.name, Source.SECURITY_SCOPES, default, annotation)
    if is_form_param(marker, annotation):
        form, default = plan_form(
            where=where,
            name=param.name,
            annotation=annotation,
            default=default,
            marker=marker,
            in_annotated=in_annotated,
            metadata=metadata,
        )
        return FormParam(param.name, default, annotation, form)
    value, default = plan_value(
        where=where,
        name=param.name,
        annotation=annotation,
        default=default,
        marker=marker,
        in_annotated=in_annotated,
        metadata=metadata,
        path_params=path_params,
    )
    return ValueParam(param.name, Source(value.location), default, annotation, value)


def _with_dependency(depends: Depends, dependency: Callable[..., Any]) -> Depends:
    """``Depends()`` with the class from the annotation filled in."""
    if isinstance(depends, Security):
        return Security(
            dependency, scopes=depends.scopes, use_cache=depends.use_cache, scope=depends.scope
        )
    return Depends(dependency, use_cache=depends.use_cache, scope=depends.scope)


class SecurityRequirement(NamedTuple):
    """A scheme a route needs, and the OAuth2 scopes asked of it (for OpenAPI)."""

    scheme: SecurityBase
    scopes: list[str]


def security_requirements(plan: CallPlan) -> list[SecurityRequirement]:
    """Every `SecurityBase` scheme the route depends on, at any depth, with its scopes.

    As FastAPI lists them for an operation's ``security``: one entry per
    scheme name, the scopes of all the places that ask for it merged in the
    order first seen. ``scheme.model`` goes under
    ``components.securitySchemes[scheme.scheme_name]``.
    """
    found: dict[str, SecurityRequirement] = {}
    for param in walk(plan):
        if isinstance(param, DependencyParam) and isinstance(param.call.call, SecurityBase):
            scheme = param.call.call
            entry = found.setdefault(scheme.scheme_name, SecurityRequirement(scheme, []))
            entry.scopes.extend(s for s in param.call.security_scopes if s not in entry.scopes)
    return list(found.values())


def walk(plan: CallPlan) -> typing.Iterator[ParamPlan]:
    """Every parameter of the plan and of its dependencies, depth first."""
    for param in plan.params:
        yield param
        if isinstance(param, DependencyParam):
            yield from walk(param.call)


def form_params(plan: CallPlan) -> list[FormParam]:
    """The plan's form parameters (its dependencies' too): a route with any reads a form."""
    return [p for p in walk(plan) if isinstance(p, FormParam)]


def count_body_params(plan: CallPlan) -> int:
    return len({p.name for p in walk(plan) if p.source is Source.BODY})


def should_embed_body(plan: CallPlan) -> bool:
    """Several body parameters (or one with ``Body(embed=True)``): each is read from its own key."""
    bodies = {
        p.name: p for p in walk(plan) if isinstance(p, ValueParam) and p.source is Source.BODY
    }
    if len(bodies) > 1:
        return True
    return any(p.value.embed for p in bodies.values())


_UNREAD: Any = object()
_INVALID: Any = object()  # the body failed to parse: reported once, by the first reader
_REPORT_ORDER = {"path": 0, "query": 1, "header": 2, "cookie": 3, "body": 4}


def _report_order(error: dict[str, Any]) -> int:
    return _REPORT_ORDER.get(error["loc"][0], 5)


def _name_dependency_frame(frame: FrameType) -> Part:
    """For the loop-block watchdog: a frame of `Resolution.call_dependency` runs a dependency,
    of the handler whose frame is further out."""
    return Part(f"the dependency {frame.f_locals['plan'].name}", inner=True)


class Resolution:
    """The per-request state of walking a plan: the cache, the exit stacks, the tasks."""

    __slots__ = (
        "_body",
        "background",
        "cache",
        "embed_body",
        "form",
        "form_limits",
        "function_stack",
        "raw_body",
        "request",
        "request_stack",
        "response",
        "strict_content_type",
        "trace",
    )

    def __init__(
        self,
        request: Request,
        *,
        embed_body: bool,
        trace: RequestTrace | None,
        strict_content_type: bool = True,
        form_limits: FormLimits = DEFAULT_LIMITS,
    ) -> None:
        self.request = request
        self.embed_body = embed_body
        #: the route's limits on its form, and the form once parsed
        self.form_limits = form_limits
        self.form: FormData | None = None
        self.trace = trace
        self.strict_content_type = strict_content_type
        #: the body as a `Request` subclass's own ``body()`` read it (a custom route's)
        self.raw_body: bytes | None = None
        #: a dependency's value by `CallPlan.cache_key`
        self.cache: dict[Any, Any] = {}
        self.background: BackgroundTasks | None = None
        self.request_stack: AsyncExitStack | None = None
        self.function_stack: AsyncExitStack | None = None
        #: the `response: Response` parameter's object, once something asks for it
        self.response: ResponseParameter | None = None
        self._body: Any = _UNREAD

    async def arguments(self, plan: CallPlan) -> dict[str, Any]:
        """The keyword arguments to call `plan.call` with; 422 if any cannot be made."""
        kwargs: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        sub_errors: list[Any] | None = None  # the dependencies': reported first, as FastAPI
        request = self.request
        for param in plan.params:
            # The whole dispatch: how each kind of parameter gets its value.
            match param:
                case ValueParam(source=Source.PATH):
                    value_plan = param.value
                    raw = request.path_params[value_plan.key]
                    if value_plan.as_is:
                        kwargs[param.name] = raw
                        continue
                    try:
                        kwargs[param.name] = value_plan.validate(raw)
                    except Invalid as exc:
                        errors.extend(located(["path", value_plan.key], exc.errors))
                case ValueParam(source=Source.BODY):
                    self._body_value(param, kwargs, errors)
                case ValueParam():  # query, header, cookie
                    self._request_value(param, kwargs, errors)
                case FormParam():
                    await self._form_value(param, kwargs, errors)
                case DependencyParam():
                    try:
                        kwargs[param.name] = await self.call_dependency(param.call)
                    except RequestValidationError as exc:
                        sub_errors = [*(sub_errors or ()), *exc.errors()]
                case InjectedParam(source=Source.BACKGROUND):
                    if self.background is None:
                        self.background = BackgroundTasks()
                    kwargs[param.name] = self.background
                case InjectedParam(source=Source.RESPONSE):
                    if self.response is None:
                        self.response = ResponseParameter()
                    kwargs[param.name] = self.response
                case InjectedParam(source=Source.SECURITY_SCOPES):
                    kwargs[param.name] = SecurityScopes(list(plan.security_scopes))
                case InjectedParam():  # the Request
                    kwargs[param.name] = request
        if errors or sub_errors:
            errors.sort(key=_report_order)  # FastAPI: path, query, header, cookie, then body
            raise RequestValidationError([*(sub_errors or ()), *errors], body=self.received_body())
        return kwargs

    def received_body(self) -> Any:
        """The body as read for body parameters, for `RequestValidationError.body`."""
        body = self._body
        if body is _UNREAD or body is _INVALID:
            return None
        if isinstance(body, bytes):  # not JSON: its text, as FastAPI keeps it
            return body.decode("utf-8", "replace")
        return body

    def _request_value(
        self, param: ValueParam, kwargs: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        """A query, header or cookie parameter: missing, its default, or validated."""
        plan = param.value
        if plan.model is not None:
            self._model_value(param, plan.model, kwargs, errors)
            return
        key = plan.key
        source = param.source
        raw: Any
        if source is Source.QUERY:
            query = self.request.query_params
            raw = query.getlist(key) if plan.many else query.get(key)
        elif source is Source.HEADER:
            headers = self.request.headers
            raw = headers.getlist(key) if plan.many else headers.get(key)
        else:  # the request's one reading of its cookies: the last of a repeated name
            raw = self.request.cookies.get(key)
        if plan.many and not raw:
            raw = None
        _place(param, raw, [plan.location, key], kwargs, errors)

    def _model_value(
        self,
        param: ValueParam,
        model: ParamModel,
        kwargs: dict[str, Any],
        errors: list[dict[str, Any]],
    ) -> None:
        """A parameter model: its fields gathered from the request, validated at once."""
        values = gather(model, self.request)
        loc = [model.location]
        if values is ABSENT:
            _default_or_missing(param, loc, kwargs, errors)
            return
        try:
            kwargs[param.name] = param.value.validate(values)
        except Invalid as exc:
            errors.extend(located(loc, relocate(model, exc.errors)))

    def _body_value(
        self, param: ValueParam, kwargs: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        plan = param.value
        if self._body is _UNREAD:
            self._body = _INVALID
            # raises for invalid JSON, a 422 of its own
            self._body = read_body(
                self.request, strict_content_type=self.strict_content_type, raw=self.raw_body
            )
        document = self._body
        if document is _INVALID:  # already reported, by another body parameter
            return
        loc: list[Any] = ["body"]
        value = document
        if self.embed_body:
            loc = ["body", plan.key]
            if isinstance(document, dict):
                value = document.get(plan.key)
            elif document is None or isinstance(document, bytes):
                value = None
            else:  # a JSON list or number where an object with keys was due
                errors.append(missing(loc))
                return
        _place(param, value, loc, kwargs, errors)

    async def _form_value(
        self, param: FormParam, kwargs: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        """A form parameter: the form is parsed once, at the first of them."""
        form = self.form
        if form is None:
            form = self.form = await self.request.read_form(self.form_limits)
        plan = param.form
        raw = await read_form_value(plan, form)
        loc: list[Any] = ["body"] if plan.kind is FormKind.MODEL else ["body", plan.key]
        if raw is NOT_SENT:
            _default_or_missing(param, loc, kwargs, errors)
            return
        try:
            kwargs[param.name] = plan.validate(raw)
        except Invalid as exc:
            errors.extend(located(loc, exc.errors))

    @names_frames(_name_dependency_frame)
    async def call_dependency(self, plan: CallPlan) -> Any:
        cache = self.cache
        if plan.use_cache and plan.cache_key in cache:
            if self.trace is not None:
                self.trace.event("dependency resolved", name=plan.name, cached="yes")
            return cache[plan.cache_key]
        overrides = getattr(self.request.app, "dependency_overrides", None)
        run = plan
        if overrides:
            replacement = overrides.get(plan.call)
            if replacement is not None:
                run = override_plan(plan, replacement, frozenset(self.request.path_params))
        kwargs = await self.arguments(run)
        kind = run.kind
        if kind is CallKind.COROUTINE:
            value = await run.call(**kwargs)
        elif kind is CallKind.FUNCTION:
            value = await run_in_thread(run.call, **kwargs)
        else:
            value = await self._enter_generator(run, kwargs)
        cache[plan.cache_key] = value
        if self.trace is not None:
            self.trace.event("dependency resolved", name=plan.name, cached="no")
        return value

    async def _enter_generator(self, plan: CallPlan, kwargs: dict[str, Any]) -> Any:
        if plan.scope == "function":
            if self.function_stack is None:
                self.function_stack = AsyncExitStack()
            stack = self.function_stack
        else:
            if self.request_stack is None:
                self.request_stack = AsyncExitStack()
            stack = self.request_stack
        if plan.kind is CallKind.ASYNC_GENERATOR:
            return await stack.enter_async_context(asynccontextmanager(plan.call)(**kwargs))
        sync_manager = contextmanager(plan.call)(**kwargs)
        return await stack.enter_async_context(_in_thread_pool(sync_manager))


def override_plan(
    plan: CallPlan, replacement: Callable[..., Any], path_params: frozenset[str]
) -> CallPlan:
    """The plan of what ``app.dependency_overrides`` puts in place of `plan`'s call.

    Planned at the first request that needs it, as FastAPI does (an override
    is set by a test after the routes are registered), then kept: its own
    parameters are read from the request like any dependency's. It keeps the
    original's ``use_cache`` and ``scope``; its value is cached under the
    original, so every use of the original in the request gets it.
    """
    return _override_plan(
        replacement, path_params, plan.use_cache, plan.scope, plan.security_scopes
    )


@functools.lru_cache(maxsize=256)
def _override_plan(
    replacement: Callable[..., Any],
    path_params: frozenset[str],
    use_cache: bool,
    scope: Scope,
    scopes: tuple[str, ...],
) -> CallPlan:
    # the scopes asked of the original are asked of what replaces it (its SecurityScopes)
    return plan_call(
        replacement,
        path_params=path_params,
        use_cache=use_cache,
        scope=scope,
        parent_scopes=scopes,
    )


def _default_or_missing(
    param: ValueParam | FormParam, loc: list[Any], kwargs: dict[str, Any], errors: list[Any]
) -> None:
    """A value the request does not carry: `param`'s default, or a 422 ``missing``."""
    if param.required:
        errors.append(missing(loc))
    else:
        kwargs[param.name] = param.default_value()


def _place(
    param: ValueParam, raw: Any, loc: list[Any], kwargs: dict[str, Any], errors: list[Any]
) -> None:
    """`param`'s value into `kwargs`: its default if `raw` is None, else `raw` checked; or a 422."""
    if raw is None:
        _default_or_missing(param, loc, kwargs, errors)
    elif param.value.as_is:  # a str as it arrived (never a body: `sources.plan_value`)
        kwargs[param.name] = raw
    else:
        try:
            kwargs[param.name] = param.value.validate(raw)
        except Invalid as exc:
            errors.extend(located(loc, exc.errors))


@asynccontextmanager
async def _in_thread_pool(manager: AbstractContextManager[Any]) -> AsyncIterator[Any]:
    """Run a sync generator dependency's set-up and clean-up in the thread pool."""
    value = await run_in_thread(manager.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await run_in_thread(manager.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await run_in_thread(manager.__exit__, None, None, None)
