"""Start-up and shutdown around the server: before it listens, after every background task."""

import asyncio
import contextlib
import logging

import pytest

from rawbg import App, BackgroundTasks, Request
from rawbg.app.lifespan import StartupFailed
from rawbg.testing import serve_app

# on_event is deprecated, as in FastAPI (tested below); these tests use it on purpose
on_event_used = pytest.mark.filterwarnings("ignore:on_event is deprecated:DeprecationWarning")


def app_with_slow_task(events: list[str], app: App) -> App:
    async def slow_task() -> None:
        events.append("task started")
        await asyncio.sleep(0.2)
        events.append("task finished")

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks):
        events.append("handler")
        background_tasks.add_task(slow_task)
        return "queued"

    return app


@on_event_used
async def test_on_event_startup_runs_before_serving_and_shutdown_after_background_work():
    events: list[str] = []
    app = App()

    @app.on_event("startup")
    async def first_startup():
        events.append("startup 1")

    @app.on_event("startup")
    def second_startup():  # a plain def, as in FastAPI's tutorial
        events.append("startup 2")

    @app.on_event("shutdown")
    def shutdown():
        events.append("shutdown")

    app_with_slow_task(events, app)
    async with serve_app(app) as client:
        events.append("serving")
        assert (await client.post("/work")).status_code == 200
        events.append("leaving")
    # leaving the block shuts the server down: it drains the task, then shutdown runs
    assert events == [
        "startup 1",
        "startup 2",
        "serving",
        "handler",
        *events[4:6],  # the client and the task race; both come after the handler
        "task finished",
        "shutdown",
    ]
    assert set(events[4:6]) == {"leaving", "task started"}


async def test_lifespan_wraps_serving_and_each_request_state_starts_from_what_it_yielded():
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: App):
        events.append("lifespan start")
        yield {"model": "loaded"}
        events.append("lifespan end")

    app = app_with_slow_task(events, App(lifespan=lifespan))

    @app.get("/model")
    async def model(request: Request):
        seen = request.state.model
        request.state.model = "changed by one request"  # a copy per request, as in Starlette
        return seen

    async with serve_app(app) as client:
        assert app.lifespan_state == {"model": "loaded"}
        assert (await client.get("/model")).json() == "loaded"
        assert (await client.get("/model")).json() == "loaded"
        await client.post("/work")
    assert events[0] == "lifespan start"
    assert events[-2:] == ["task finished", "lifespan end"]


async def test_bare_generator_functions_are_lifespans_too():
    events: list[str] = []

    async def async_lifespan(app):
        events.append("async in")
        yield
        events.append("async out")

    def sync_lifespan(app):
        events.append("sync in")
        yield {"k": 1}
        events.append("sync out")

    for lifespan in (async_lifespan, sync_lifespan):
        async with serve_app(App(lifespan=lifespan)):
            pass
    assert events == ["async in", "async out", "sync in", "sync out"]


@on_event_used
async def test_on_event_handlers_are_ignored_with_a_lifespan_as_fastapi_does(caplog):
    events: list[str] = []

    async def lifespan(app):
        yield

    app = App(lifespan=lifespan)
    with caplog.at_level(logging.WARNING, logger="rawbg.app"):

        @app.on_event("startup")
        def never():
            events.append("startup")

    async with serve_app(app):
        pass
    assert events == []
    assert "is ignored" in caplog.records[0].getMessage()


@on_event_used
async def test_a_failing_startup_never_listens_and_names_the_function():
    app = App()

    @app.on_event("startup")
    def broken():
        raise RuntimeError("no database")

    with pytest.raises(
        StartupFailed, match=r"startup handler .*broken.* RuntimeError\('no database'\)"
    ):
        async with serve_app(app):
            pytest.fail("served despite a failing start-up")


async def test_a_lifespan_must_yield_nothing_or_a_mapping():
    async def lifespan(app):
        yield 42

    with pytest.raises(StartupFailed, match="yielded int"):
        async with serve_app(App(lifespan=lifespan)):
            pass


def test_on_event_takes_startup_or_shutdown_only():
    with pytest.raises(ValueError, match="'startup' or 'shutdown'"):
        App().on_event("start")


def test_on_event_warns_that_it_is_deprecated_as_fastapi_does():
    with pytest.warns(DeprecationWarning, match="use lifespan event handlers instead"):
        App().on_event("startup")
