"""Middleware over a real socket: order, changed responses, and the background work after them."""

import asyncio
import logging
import re

import pytest

from rawbg import App, BackgroundTask, BackgroundTasks, Depends, PlainTextResponse, Request
from rawbg.middleware import BaseHTTPMiddleware, CallNext
from rawbg.responses import Response
from rawbg.testing import serve_app


def recording_app(events: list[str]) -> App:
    app = App()

    async def task(name: str) -> None:
        events.append(f"task {name}")

    async def resource():
        events.append("dependency open")
        yield "r"
        events.append("dependency closed")

    @app.get("/work")
    async def work(background_tasks: BackgroundTasks, r: str = Depends(resource)):
        events.append("handler")
        background_tasks.add_task(task, "of the handler")
        return {"ok": True}

    @app.middleware("http")
    async def inner(request: Request, call_next):
        events.append("inner in")
        response = await call_next(request)
        # A pause here would let a task that was started early run first.
        await asyncio.sleep(0.05)
        events.append("inner out")
        response.headers["x-inner"] = "1"
        return response

    @app.middleware("http")
    async def outer(request: Request, call_next):
        events.append("outer in")
        response = await call_next(request)
        events.append("outer out")
        response.headers["x-outer"] = response.headers["x-inner"] + "2"
        return response

    return app


async def test_middleware_run_last_added_outermost_and_tasks_start_after_the_final_response():
    events: list[str] = []
    async with serve_app(recording_app(events)) as client:
        response = await client.get("/work")
        events.append("client has the response")
        await client.wait_for_background()
    assert response.headers["x-outer"] == "12"
    assert events[:6] == [
        "outer in",
        "inner in",
        "dependency open",
        "handler",
        "inner out",
        "outer out",
    ]
    # After the final response is flushed (the client may record it before or
    # after the task starts): the task, then the dependency clean-up.
    assert sorted(events[6:]) == [
        "client has the response",
        "dependency closed",
        "task of the handler",
    ]
    assert events.index("task of the handler") < events.index("dependency closed")


async def test_a_middleware_that_replaces_the_response_keeps_the_handlers_tasks_and_adds_its_own():
    events: list[str] = []
    app = App()

    def record(what: str) -> None:
        events.append(what)

    @app.get("/")
    async def handler(background_tasks: BackgroundTasks):
        background_tasks.add_task(record, "handler task")
        return "original"

    @app.middleware("http")
    async def replace(request: Request, call_next):
        await call_next(request)
        return PlainTextResponse(
            "replaced", headers={"x-by": "mw"}, background=BackgroundTask(record, "mw task")
        )

    async with serve_app(app) as client:
        response = await client.get("/")
        await client.wait_for_background()
    assert (response.body, response.headers["x-by"]) == (b"replaced", "mw")
    assert events == ["handler task", "mw task"]


async def test_a_middleware_that_answers_itself_skips_the_handler():
    calls: list[str] = []
    app = App()

    @app.get("/")
    async def handler():
        calls.append("handler")
        return "handler"

    @app.middleware("http")
    async def gate(request: Request, call_next):
        if "x-pass" not in request.headers:
            return PlainTextResponse("no", status_code=403)
        return await call_next(request)

    async with serve_app(app) as client:
        assert (await client.get("/")).status_code == 403
        assert (await client.get("/", headers={"x-pass": "1"})).body == b'"handler"'
    assert calls == ["handler"]


async def test_a_failing_middleware_is_a_500_its_tasks_dropped_and_dependencies_cleaned_up(caplog):
    events: list[str] = []
    app = App()

    async def resource():
        yield
        events.append("cleaned up")

    @app.get("/")
    async def handler(background_tasks: BackgroundTasks, _: None = Depends(resource)):
        background_tasks.add_task(events.append, "task")
        return "ok"

    @app.middleware("http")
    async def broken(request: Request, call_next):
        await call_next(request)
        raise RuntimeError("middleware bug")

    with caplog.at_level(logging.ERROR, logger="rawbg.app"):
        async with serve_app(app) as client:
            response = await client.get("/")
            await client.wait_for_background()
    assert response.status_code == 500
    assert events == ["cleaned up"]
    assert any("middleware raised" in r.getMessage() for r in caplog.records)


class HeaderMiddleware:
    """A class middleware as add_middleware takes it: made with the app and options."""

    def __init__(self, app: CallNext, *, name: str, value: str) -> None:
        self.app = app
        self.name = name
        self.value = value

    async def __call__(self, request: Request) -> Response:
        response = await self.app(request)
        response.headers[self.name] = self.value
        return response


class Timing(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["x-seen-by"] = response.headers.get("x-class", "") + "+timing"
        return response


async def test_class_middleware_with_options_and_base_http_middleware_subclasses():
    app = App()

    @app.get("/")
    async def handler():
        return "ok"

    app.add_middleware(HeaderMiddleware, name="x-class", value="yes")
    app.add_middleware(Timing)
    async with serve_app(app) as client:
        response = await client.get("/")
    assert (response.headers["x-class"], response.headers["x-seen-by"]) == ("yes", "yes+timing")


def test_starlette_middleware_classes_are_refused_with_the_rawbg_one_named():
    from starlette.middleware.cors import CORSMiddleware

    with pytest.raises(TypeError, match=r"rawbg\.middleware\.cors\.CORSMiddleware"):
        App().add_middleware(CORSMiddleware)
    with pytest.raises(ValueError, match='only "http" middleware'):
        App().middleware("websocket")


async def test_middleware_cannot_be_added_once_serving():
    app = recording_app([])
    async with serve_app(app) as client:
        await client.get("/work")
        with pytest.raises(RuntimeError, match="after the app has started"):
            app.add_middleware(Timing)


async def test_the_trace_shows_each_middleware_around_the_handler(caplog):
    caplog.set_level(logging.INFO, logger="rawbg.trace")
    async with serve_app(recording_app([]), trace=True) as client:
        await client.get("/work")
        await client.wait_for_background()
    lines = [
        re.sub(r"^conn \d+ req \d+ \+[\d.]+ ms  ", "", r.getMessage())
        for r in caplog.records
        if r.name == "rawbg.trace" and " req " in r.getMessage()
    ]
    story = [line for line in lines if line.startswith(("middleware", "handler returned"))]
    assert story == [
        "middleware entered  middleware=recording_app.<locals>.outer",
        "middleware entered  middleware=recording_app.<locals>.inner",
        "handler returned  handler=recording_app.<locals>.work",
        "middleware returned  middleware=recording_app.<locals>.inner status=200",
        "middleware returned  middleware=recording_app.<locals>.outer status=200",
    ]
