"""`App`: routes, and turning one request into a response plus the work left after it.

Registering a route plans its dependency graph (`rawbg.dependencies.plan_call`),
so a broken signature fails at import time. `App.handle` is what the
connection task calls for each request; it never raises. It is also the one
place where application errors become responses, through the app's exception
handlers (`rawbg.exception_handling`):

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

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .background import AfterResponse, BackgroundTasks
from .datastructures import State
from .dependencies import CallKind, CallPlan, Resolution, count_body_params, plan_call
from .encoders import jsonable_encoder
from .errors import HTTPException, RequestValidationError, RouteDefinitionError
from .exception_handlers import http_exception_handler, request_validation_exception_handler
from .exception_handling import (
    ExceptionHandler,
    HandlerKey,
    answer_exception,
    check_handler,
    check_handler_key,
)
from .responses import FileResponse, JSONResponse, Response
from .routing import Router, compile_template
from .threadpool import run_in_thread
from .types import Handler, HandlerT

if TYPE_CHECKING:
    from .requests import Request
    from .trace import RequestTrace

logger = logging.getLogger("rawbg.app")

ExceptionHandlerT = TypeVar("ExceptionHandlerT", bound=ExceptionHandler)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler with its planned dependency graph, as the router stores it."""

    handler: Handler
    plan: CallPlan
    status_code: int | None  # None: the response class's own default (200, 307...)
    label: str  # "POST /send-notification/{email}", for logs and traces
    embed_body: bool  # several body parameters: each is read from its own key
    response_class: type[Response] = JSONResponse


@dataclass(slots=True)
class Outcome:
    """The result of `App.handle`: the response, and what to do once it is flushed."""

    response: Response
    after: AfterResponse | None = None


class App:
    """The application: ``app = App()``, then ``@app.get("/path")`` on each handler."""

    def __init__(
        self,
        *,
        default_response_class: type[Response] = JSONResponse,
        exception_handlers: Mapping[HandlerKey, ExceptionHandler] | None = None,
    ) -> None:
        self.router: Router[Endpoint] = Router()
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

    def add_route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str],
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> None:
        """Register `handler` for `methods` on the `path` template; plan its dependencies."""
        if isinstance(methods, str):
            raise TypeError(f"methods must be a list of strings, not the string {methods!r}")
        _, path_params = compile_template(path)
        plan = plan_call(handler, path_params=path_params)
        if plan.kind in (CallKind.GENERATOR, CallKind.ASYNC_GENERATOR):
            raise RouteDefinitionError(
                f"handler {plan.where} is a generator; return a "
                "StreamingResponse to send a body in pieces"
            )
        label = f"{'/'.join(m.upper() for m in methods)} {path}"
        if response_class is None:
            response_class = self.default_response_class
        else:
            _check_response_class(response_class, f"response_class of {label}")
        endpoint = Endpoint(
            handler,
            plan,
            status_code,
            label,
            embed_body=count_body_params(plan) > 1,
            response_class=response_class,
        )
        self.router.add(path, methods, endpoint)

    def route(
        self,
        path: str,
        *,
        methods: Sequence[str],
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        def register(handler: HandlerT) -> HandlerT:
            self.add_route(
                path,
                handler,
                methods=methods,
                status_code=status_code,
                response_class=response_class,
            )
            return handler

        return register

    def get(
        self,
        path: str,
        *,
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        return self.route(
            path, methods=["GET"], status_code=status_code, response_class=response_class
        )

    def post(
        self,
        path: str,
        *,
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        return self.route(
            path, methods=["POST"], status_code=status_code, response_class=response_class
        )

    def put(
        self,
        path: str,
        *,
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        return self.route(
            path, methods=["PUT"], status_code=status_code, response_class=response_class
        )

    def patch(
        self,
        path: str,
        *,
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        return self.route(
            path, methods=["PATCH"], status_code=status_code, response_class=response_class
        )

    def delete(
        self,
        path: str,
        *,
        status_code: int | None = None,
        response_class: type[Response] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        return self.route(
            path, methods=["DELETE"], status_code=status_code, response_class=response_class
        )

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
        """Route `request`, resolve its dependencies, call its handler. Never raises."""
        request.app = self
        try:
            endpoint, request.path_params = self.router.match(request.method, request.path)
        except HTTPException as exc:
            label = f"{request.method} {request.path}"
            return error_outcome(await self._answer(request, exc, label, trace), label)
        resolution = Resolution(request, embed_body=endpoint.embed_body, trace=trace)
        try:
            response = await self._call_endpoint(endpoint, resolution)
        except Exception as exc:
            return await self._failed(endpoint, resolution, exc)
        tasks = resolution.background.tasks if resolution.background is not None else []
        own = response.background
        if own is not None and own is not resolution.background:  # not the injected ones again
            tasks = [*tasks, *(own.tasks if isinstance(own, BackgroundTasks) else [own])]
        stack = resolution.request_stack
        if not tasks and stack is None:
            return Outcome(response)
        cleanup = stack.aclose if stack is not None else None
        return Outcome(response, AfterResponse(tasks, cleanup, endpoint.label))

    async def _call_endpoint(self, endpoint: Endpoint, resolution: Resolution) -> Response:
        plan = endpoint.plan
        kwargs = await resolution.arguments(plan)
        if plan.kind is CallKind.COROUTINE:
            result = await plan.call(**kwargs)
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

    async def _failed(self, endpoint: Endpoint, resolution: Resolution, exc: Exception) -> Outcome:
        if resolution.trace is not None:
            resolution.trace.event("handler raised", error=repr(exc))
        label = endpoint.label
        # Unwind the dependencies first: one may answer with another exception.
        exc = await unwind(resolution.function_stack, exc, label)
        exc = await unwind(resolution.request_stack, exc, label)
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
            self.exception_handlers, request, exc, label=label, trace=trace
        )


def error_outcome(response: Response, label: str) -> Outcome:
    """An error response, with the tasks its exception handler attached to it, if any."""
    own = response.background
    if own is None:
        return Outcome(response)
    tasks = own.tasks if isinstance(own, BackgroundTasks) else [own]
    return Outcome(response, AfterResponse(tasks, None, label))


class DependencySwallowedError(RuntimeError):
    """A generator dependency caught the request's exception and did not re-raise it.

    Nothing is left to answer with (the handler never returned), so the client
    gets a 500, as in FastAPI; the log names the route and the exception.
    """


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
        f"a generator dependency of {label} caught {exc!r} and did not re-raise it; "
        "re-raise it (or raise an HTTPException) in its except block"
    )
