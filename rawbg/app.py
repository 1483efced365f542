"""`App`: routes, and turning one request into a response plus the work left after it.

Registering a route plans its dependency graph (`rawbg.dependencies.plan_call`),
so a broken signature fails at import time. `App.handle` is what the
connection task calls for each request; it never raises. It is also the one
place where application errors become responses:

* `HTTPException` (including 404/405 from the router and 422 from the
  dependency graph) becomes ``{"detail": ...}`` with its status;
* any other exception is logged with its traceback and becomes a generic 500.

Either way the request's background tasks are discarded (the request failed,
and a warning says how many), and its generator dependencies are still
cleaned up, with the exception thrown into them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .background import AfterResponse, BackgroundTasks
from .dependencies import CallKind, CallPlan, Resolution, count_body_params, plan_call
from .errors import HTTPException, RouteDefinitionError
from .responses import JSONResponse, PlainTextResponse, Response
from .routing import Router, compile_template
from .threadpool import run_in_thread
from .types import Handler, HandlerT

if TYPE_CHECKING:
    from .requests import Request
    from .trace import RequestTrace

logger = logging.getLogger("rawbg.app")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler with its planned dependency graph, as the router stores it."""

    handler: Handler
    plan: CallPlan
    status_code: int
    label: str  # "POST /send-notification/{email}", for logs and traces
    embed_body: bool  # several body parameters: each is read from its own key


@dataclass(slots=True)
class Outcome:
    """The result of `App.handle`: the response, and what to do once it is flushed."""

    response: Response
    after: AfterResponse | None = None


class App:
    """The application: ``app = App()``, then ``@app.get("/path")`` on each handler."""

    def __init__(self) -> None:
        self.router: Router[Endpoint] = Router()

    def add_route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str],
        status_code: int | None = None,
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
        endpoint = Endpoint(
            handler, plan, status_code or 200, label, embed_body=count_body_params(plan) > 1
        )
        self.router.add(path, methods, endpoint)

    def route(
        self, path: str, *, methods: Sequence[str], status_code: int | None = None
    ) -> Callable[[HandlerT], HandlerT]:
        def register(handler: HandlerT) -> HandlerT:
            self.add_route(path, handler, methods=methods, status_code=status_code)
            return handler

        return register

    def get(self, path: str, *, status_code: int | None = None) -> Callable[[HandlerT], HandlerT]:
        return self.route(path, methods=["GET"], status_code=status_code)

    def post(self, path: str, *, status_code: int | None = None) -> Callable[[HandlerT], HandlerT]:
        return self.route(path, methods=["POST"], status_code=status_code)

    def put(self, path: str, *, status_code: int | None = None) -> Callable[[HandlerT], HandlerT]:
        return self.route(path, methods=["PUT"], status_code=status_code)

    def patch(self, path: str, *, status_code: int | None = None) -> Callable[[HandlerT], HandlerT]:
        return self.route(path, methods=["PATCH"], status_code=status_code)

    def delete(
        self, path: str, *, status_code: int | None = None
    ) -> Callable[[HandlerT], HandlerT]:
        return self.route(path, methods=["DELETE"], status_code=status_code)

    def served_methods(self) -> list[str]:
        """The methods the app serves on some path, sorted: ``Allow`` for ``OPTIONS *``."""
        return sorted(self.router.methods())

    async def handle(self, request: Request, trace: RequestTrace | None = None) -> Outcome:
        """Route `request`, resolve its dependencies, call its handler. Never raises."""
        try:
            endpoint, request.path_params = self.router.match(request.method, request.path)
        except HTTPException as exc:
            return Outcome(error_response(exc))
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
            return result
        return JSONResponse(result, status_code=endpoint.status_code)

    async def _failed(self, endpoint: Endpoint, resolution: Resolution, exc: Exception) -> Outcome:
        if isinstance(exc, HTTPException):
            response = error_response(exc)
        else:
            logger.error("handler of %s raised", endpoint.label, exc_info=exc)
            response = PlainTextResponse("Internal Server Error", status_code=500)
        if resolution.trace is not None:
            resolution.trace.event("handler raised", error=repr(exc))
        if resolution.background is not None and resolution.background.tasks:
            logger.warning(
                "discarding %d background task(s) of %s: the request failed with %d",
                len(resolution.background.tasks),
                endpoint.label,
                response.status_code,
            )
        if resolution.function_stack is not None:
            await close_with_error(resolution.function_stack, exc, endpoint.label)
        if resolution.request_stack is None:
            return Outcome(response)
        cleanup = functools.partial(close_with_error, resolution.request_stack, exc, endpoint.label)
        return Outcome(response, AfterResponse((), cleanup, endpoint.label))


def error_response(exc: HTTPException) -> Response:
    try:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    except (TypeError, ValueError):  # a detail JSON cannot encode: the app's bug, not the client's
        logger.exception("cannot encode the detail of %r", exc)
        return PlainTextResponse("Internal Server Error", status_code=500)


async def close_with_error(stack: AsyncExitStack, exc: BaseException, label: str) -> None:
    """Close `stack` with `exc` thrown into its generators; log what else they raise."""
    try:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
    except BaseException as raised:
        if raised is not exc:
            logger.exception("clean-up of the dependencies of %s failed", label)
