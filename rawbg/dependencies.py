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
import inspect
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from .background import BackgroundTasks
from .errors import RequestValidationError, RouteDefinitionError
from .params import (
    Body,
    BodyValueError,
    ConversionError,
    Scalar,
    classify_annotation,
    error_entry,
    load_body_value,
)
from .requests import Request, decode_json
from .responses import Response, ResponseParameter
from .threadpool import run_in_thread

if TYPE_CHECKING:
    from .trace import RequestTrace

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
        dependency: Callable[..., Any] | None = None,
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
        return f"Depends({name})"


class Source(enum.Enum):
    """Where a parameter's value comes from."""

    PATH = "path"
    QUERY = "query"
    BODY = "body"
    REQUEST = "request"
    RESPONSE = "response (headers, cookies, status)"
    BACKGROUND = "background tasks"
    DEPENDENCY = "dependency"


class CallKind(enum.Enum):
    """How a handler or dependency is called."""

    COROUTINE = "async def"
    FUNCTION = "def, in the thread pool"
    ASYNC_GENERATOR = "async generator"
    GENERATOR = "generator, in the thread pool"


@dataclass(frozen=True, slots=True)
class ParamPlan:
    name: str
    source: Source
    default: Any  # inspect.Parameter.empty when required
    annotation: Any
    scalar: Scalar | None = None
    body: Body | None = None
    call: CallPlan | None = None

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class CallPlan:
    call: Callable[..., Any]
    name: str  # the qualified name, for traces
    where: str  # "module.name (file:line)", for error messages
    kind: CallKind
    params: tuple[ParamPlan, ...]
    use_cache: bool = True
    scope: Scope = "request"


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
    _stack: tuple[Callable[..., Any], ...] = (),
) -> CallPlan:
    """Inspect `call`'s signature and plan where each of its parameters comes from.

    `_stack` is the chain of calls that depend on this one; `_plan_param`
    refuses a dependency already on it (a cycle) before planning it.
    """
    try:
        signature = inspect.signature(call, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise RouteDefinitionError(f"cannot read the signature of {describe(call)}: {exc}") from exc
    params = tuple(
        _plan_param(call, param, path_params, (*_stack, call))
        for param in signature.parameters.values()
    )
    name = getattr(call, "__qualname__", None) or type(call).__qualname__
    return CallPlan(call, name, describe(call), _call_kind(call), params, use_cache, scope)


def _plan_param(
    call: Callable[..., Any],
    param: inspect.Parameter,
    path_params: frozenset[str],
    stack: tuple[Callable[..., Any], ...],
) -> ParamPlan:
    where = f"parameter {param.name!r} of {describe(call)}"
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
        raise RouteDefinitionError(
            f"{where}: *args, **kwargs and positional-only parameters "
            "cannot be supplied by name; make it a keyword parameter"
        )
    annotation, default = param.annotation, param.default
    depends: Depends | None = None
    if typing.get_origin(annotation) is Annotated:
        annotation, *metadata = typing.get_args(annotation)
        depends = next((m for m in metadata if isinstance(m, Depends)), None)
    if isinstance(default, Depends):
        depends, default = default, inspect.Parameter.empty
    if depends is not None:
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
        sub = plan_call(
            dependency,
            path_params=path_params,
            use_cache=depends.use_cache,
            scope=depends.scope,
            _stack=stack,
        )
        return ParamPlan(param.name, Source.DEPENDENCY, default, annotation, call=sub)
    if isinstance(annotation, type) and issubclass(annotation, Request):
        return ParamPlan(param.name, Source.REQUEST, default, annotation)
    if isinstance(annotation, type) and issubclass(annotation, BackgroundTasks):
        return ParamPlan(param.name, Source.BACKGROUND, default, annotation)
    if isinstance(annotation, type) and issubclass(annotation, Response):
        return ParamPlan(param.name, Source.RESPONSE, default, annotation)
    if annotation is inspect.Parameter.empty:
        annotation = str
    kind = classify_annotation(annotation)
    if param.name in path_params:
        if not isinstance(kind, Scalar) or kind.many:
            raise RouteDefinitionError(
                f"{where} is a path parameter: annotate it as str, int, "
                f"float, bool, uuid.UUID or an Enum, not {annotation!r}"
            )
        return ParamPlan(param.name, Source.PATH, default, annotation, scalar=kind)
    if isinstance(kind, Scalar):
        return ParamPlan(param.name, Source.QUERY, default, annotation, scalar=kind)
    if isinstance(kind, Body):
        return ParamPlan(param.name, Source.BODY, default, annotation, body=kind)
    raise RouteDefinitionError(
        f"{where}: nothing can supply a value of type {annotation!r}. Path and query parameters "
        "may be str, int, float, bool, uuid.UUID, an Enum or list[...] of those; a JSON body "
        "parameter a dict, list or dataclass; anything else needs Depends(...)"
    )


def walk(plan: CallPlan) -> typing.Iterator[ParamPlan]:
    """Every parameter of the plan and of its dependencies, depth first."""
    for param in plan.params:
        yield param
        if param.call is not None:
            yield from walk(param.call)


def count_body_params(plan: CallPlan) -> int:
    return len({p.name for p in walk(plan) if p.source is Source.BODY})


_NO_BODY = object()
_INVALID_BODY = object()  # parsed once, reported once, however many body parameters


class Resolution:
    """The per-request state of walking a plan: the cache, the exit stacks, the tasks."""

    __slots__ = (
        "_json",
        "background",
        "cache",
        "embed_body",
        "function_stack",
        "request",
        "request_stack",
        "response",
        "trace",
    )

    def __init__(self, request: Request, *, embed_body: bool, trace: RequestTrace | None) -> None:
        self.request = request
        self.embed_body = embed_body
        self.trace = trace
        self.cache: dict[Callable[..., Any], Any] = {}
        self.background: BackgroundTasks | None = None
        self.request_stack: AsyncExitStack | None = None
        self.function_stack: AsyncExitStack | None = None
        #: the `response: Response` parameter's object, once something asks for it
        self.response: ResponseParameter | None = None
        self._json: Any = _NO_BODY

    async def arguments(self, plan: CallPlan) -> dict[str, Any]:
        """The keyword arguments to call `plan.call` with; 422 if any cannot be made."""
        kwargs: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        request = self.request
        for param in plan.params:
            source = param.source
            name = param.name
            if source is Source.PATH:
                raw = request.path_params[name]
                try:
                    kwargs[name] = param.scalar.convert(raw)  # type: ignore[union-attr]
                except ConversionError as exc:
                    errors.append(error_entry(["path", name], exc.type, exc.msg, raw))
            elif source is Source.BACKGROUND:
                if self.background is None:
                    self.background = BackgroundTasks()
                kwargs[name] = self.background
            elif source is Source.QUERY:
                self._query_value(param, kwargs, errors)
            elif source is Source.DEPENDENCY:
                try:
                    kwargs[name] = await self.call_dependency(param.call)  # type: ignore[arg-type]
                except RequestValidationError as exc:
                    errors.extend(exc.errors())
            elif source is Source.REQUEST:
                kwargs[name] = request
            elif source is Source.RESPONSE:
                if self.response is None:
                    self.response = ResponseParameter()
                kwargs[name] = self.response
            else:
                self._body_value(param, kwargs, errors)
        if errors:
            raise RequestValidationError(errors, body=self.received_body())
        return kwargs

    def received_body(self) -> Any:
        """The body as parsed, for `RequestValidationError.body`: its text if not JSON."""
        if self._json is _INVALID_BODY:
            return self.request._body.decode("utf-8", "replace")
        return None if self._json is _NO_BODY else self._json

    def _query_value(
        self, param: ParamPlan, kwargs: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        scalar = param.scalar
        assert scalar is not None  # planned as Source.QUERY
        query = self.request.query_params
        name = param.name
        raws = query.getlist(name) if scalar.many else ([query[name]] if name in query else [])
        if not raws:
            if param.required:
                errors.append(error_entry(["query", name], "missing", "Field required"))
            else:
                kwargs[name] = param.default
            return
        values = []
        for raw in raws:
            try:
                values.append(scalar.convert(raw))
            except ConversionError as exc:
                errors.append(error_entry(["query", name], exc.type, exc.msg, raw))
                return
        kwargs[name] = values if scalar.many else values[0]

    def _body_value(
        self, param: ParamPlan, kwargs: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        body = param.body
        assert body is not None  # planned as Source.BODY
        document = self._parsed_body(errors)
        if document is _NO_BODY:
            return
        loc: list[Any] = ["body"]
        value = document
        if self.embed_body:
            loc = ["body", param.name]
            value = document.get(param.name) if isinstance(document, dict) else None
        if value is None and not param.required:
            kwargs[param.name] = param.default
            return
        if value is None and not body.optional:
            errors.append(error_entry(loc, "missing", "Field required"))
            return
        try:
            kwargs[param.name] = load_body_value(body.annotation, value, loc)
        except BodyValueError as exc:
            errors.extend(exc.errors)

    def _parsed_body(self, errors: list[dict[str, Any]]) -> Any:
        if self._json is _INVALID_BODY:  # already reported
            return _NO_BODY
        if self._json is _NO_BODY:
            raw = self.request._body
            if not raw.strip():
                self._json = None
            else:
                try:
                    self._json = decode_json(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    errors.append(
                        error_entry(["body"], "json_invalid", f"JSON decode error: {exc}")
                    )
                    self._json = _INVALID_BODY
                    return _NO_BODY
        return self._json

    async def call_dependency(self, plan: CallPlan) -> Any:
        cache = self.cache
        if plan.use_cache and plan.call in cache:
            if self.trace is not None:
                self.trace.event("dependency resolved", name=plan.name, cached="yes")
            return cache[plan.call]
        kwargs = await self.arguments(plan)
        kind = plan.kind
        if kind is CallKind.COROUTINE:
            value = await plan.call(**kwargs)
        elif kind is CallKind.FUNCTION:
            value = await run_in_thread(plan.call, **kwargs)
        else:
            value = await self._enter_generator(plan, kwargs)
        cache[plan.call] = value
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
