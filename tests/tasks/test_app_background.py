"""BackgroundTasks as an app sees them: sharing, order, threads, failures, discarding."""

import asyncio
import logging
import threading
from typing import Annotated

import pytest

from rawbg import (
    App,
    BackgroundTask,
    BackgroundTasks,
    Depends,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
)
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes

# How long a test waits for something it expects, rather than hanging.
WAIT = 5.0


async def test_one_background_tasks_per_request_shared_by_the_handler_and_its_dependencies():
    app = App()
    events: list[str] = []
    instances: list[tuple[str, BackgroundTasks]] = []

    def record(what: str) -> None:
        events.append(what)

    async def sub_dependency(background_tasks: BackgroundTasks):
        instances.append(("sub", background_tasks))
        background_tasks.add_task(record, "from the sub-dependency")

    def dependency(background_tasks: BackgroundTasks, _: Annotated[None, Depends(sub_dependency)]):
        instances.append(("dependency", background_tasks))
        background_tasks.add_task(record, "from the dependency")

    @app.post("/")
    async def handler(
        _: Annotated[None, Depends(dependency)],
        background_tasks: BackgroundTasks,
        again: BackgroundTasks,
    ):
        instances.append(("handler", background_tasks))
        instances.append(("handler, second parameter", again))
        background_tasks.add_task(record, "from the handler")
        again.add_task(record, "from the handler, again")
        return {"queued": len(background_tasks)}

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/")
        assert response.json() == {"queued": 4}
        await client.wait_for_background()
        assert events == [
            "from the sub-dependency",
            "from the dependency",
            "from the handler",
            "from the handler, again",
        ]
        first = [tasks for _, tasks in instances]
        assert [who for who, _ in instances] == [
            "sub",
            "dependency",
            "handler",
            "handler, second parameter",
        ]
        assert len({id(tasks) for tasks in first}) == 1

        instances.clear()
        assert (await client.post("/")).json() == {"queued": 4}
        await client.wait_for_background()
        second = [tasks for _, tasks in instances]
        assert len({id(tasks) for tasks in second}) == 1
        assert second[0] is not first[0]  # a new instance for each request
    assert len(events) == 8


async def test_async_tasks_run_on_the_loop_and_sync_tasks_in_the_thread_pool():
    app = App()
    threads: dict[str, threading.Thread] = {}

    async def async_task():
        threads["async"] = threading.current_thread()

    def sync_task():
        threads["sync"] = threading.current_thread()

    @app.post("/")
    def handler(background_tasks: BackgroundTasks):
        background_tasks.add_task(async_task)
        background_tasks.add_task(sync_task)
        return "ok"

    loop_thread = threading.current_thread()  # the test and the server share one loop
    async with serve_app(app, in_memory=True) as client:
        assert (await client.post("/")).status_code == 200
        await client.wait_for_background()
    assert threads["async"] is loop_thread
    assert threads["sync"] is not loop_thread
    assert threads["sync"] is not threading.main_thread()


async def test_the_tasks_of_a_request_run_one_after_another():
    app = App()
    log: list[str] = []
    loop = asyncio.get_running_loop()
    first_started = asyncio.Event()
    release_first = threading.Event()

    def first():  # sync: it runs in a thread while the loop stays free
        log.append("start 1")
        loop.call_soon_threadsafe(first_started.set)
        assert release_first.wait(WAIT)
        log.append("end 1")

    async def second():
        log.append("start 2")
        for _ in range(3):
            await asyncio.sleep(0)  # give a concurrently started third task a chance
        log.append("end 2")

    def third():
        log.append("start 3")
        log.append("end 3")

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks):
        background_tasks.add_task(first)
        background_tasks.add_task(second)
        background_tasks.add_task(third)
        return "queued"

    @app.get("/ping")
    async def ping():
        return "pong"

    async with serve_app(app, in_memory=True) as client:
        assert (await client.post("/work")).status_code == 200
        async with asyncio.timeout(WAIT):
            await first_started.wait()
        # While the first task is blocked the server keeps serving, and the
        # next task has not started.
        assert (await client.get("/ping")).body == b'"pong"'
        assert log == ["start 1"]
        release_first.set()
        await client.wait_for_background()
    assert log == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


async def test_the_response_background_runs_after_the_injected_tasks():
    app = App()
    events: list[str] = []

    async def record(what: str) -> None:
        events.append(what)

    def record_sync(what: str) -> None:
        events.append(what)

    def dependency(background_tasks: BackgroundTasks):
        background_tasks.add_task(record, "dependency")

    @app.post("/one")
    async def one(background_tasks: BackgroundTasks, _: Annotated[None, Depends(dependency)]):
        background_tasks.add_task(record_sync, "handler 1")
        background_tasks.add_task(record, "handler 2")
        return JSONResponse({"ok": 1}, background=BackgroundTask(record, "response"))

    @app.post("/many")
    async def many(background_tasks: BackgroundTasks, _: Annotated[None, Depends(dependency)]):
        background_tasks.add_task(record, "handler 1")
        own = BackgroundTasks()
        own.add_task(record_sync, "response 1")
        own.add_task(record, "response 2")
        return PlainTextResponse("ok", background=own)

    @app.post("/only-own")
    async def only_own():
        return PlainTextResponse("ok", background=BackgroundTask(record_sync, "response"))

    async with serve_app(app, in_memory=True) as client:
        assert (await client.post("/one")).json() == {"ok": 1}
        await client.wait_for_background()
        assert events == ["dependency", "handler 1", "handler 2", "response"]

        events.clear()
        assert (await client.post("/many")).body == b"ok"
        await client.wait_for_background()
        assert events == ["dependency", "handler 1", "response 1", "response 2"]

        events.clear()
        assert (await client.post("/only-own")).body == b"ok"
        await client.wait_for_background()
        assert events == ["response"]


async def test_returning_the_injected_tasks_as_the_response_background_runs_each_once():
    app = App()
    events: list[str] = []

    async def record(what: str) -> None:
        events.append(what)

    @app.post("/")
    async def handler(background_tasks: BackgroundTasks):
        background_tasks.add_task(record, "first")
        background_tasks.add_task(record, "second")
        return JSONResponse({"ok": True}, background=background_tasks)

    async with serve_app(app, in_memory=True) as client:
        assert (await client.post("/")).json() == {"ok": True}
        await client.wait_for_background()
    assert events == ["first", "second"]


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rawbg.background"]


async def test_a_failing_task_is_logged_with_route_name_and_traceback_and_the_rest_run(caplog):
    app = App()
    events: list[str] = []

    def record(what: str) -> None:
        events.append(what)

    def broken_sync(job_id: int) -> None:
        raise ValueError(f"sync task of job {job_id} failed")

    async def broken_async() -> None:
        raise KeyError("async task failed")

    @app.post("/jobs/{job_id}")
    async def submit(job_id: int, background_tasks: BackgroundTasks):
        background_tasks.add_task(record, "before")
        background_tasks.add_task(broken_sync, job_id)
        background_tasks.add_task(record, "between")
        background_tasks.add_task(broken_async)
        background_tasks.add_task(record, "after")
        return {"job": job_id}

    @app.get("/health")
    async def health():
        return "ok"

    async with serve_app(app, in_memory=True) as client:
        assert (await client.post("/jobs/7")).json() == {"job": 7}
        await client.wait_for_background()
        assert events == ["before", "between", "after"]
        # the server keeps serving, and keeps running tasks
        assert (await client.get("/health")).body == b'"ok"'
        assert (await client.post("/jobs/8")).json() == {"job": 8}
        await client.wait_for_background()
    assert events == ["before", "between", "after"] * 2

    records = failures(caplog)
    sync_failed = f"background task {broken_sync.__qualname__} of POST /jobs/{{job_id}} failed"
    async_failed = f"background task {broken_async.__qualname__} of POST /jobs/{{job_id}} failed"
    # job 8 failed at the same sites within the minute: counted, and the
    # counts written when the server stopped (rawbg.tasks.failure_log)
    assert [r.getMessage() for r in records] == [
        sync_failed,
        async_failed,
        f"{sync_failed} ... and 1 more like it in the last 60 s"
        " (the last: ValueError('sync task of job 8 failed'))",
        f"{async_failed} ... and 1 more like it in the last 60 s"
        " (the last: KeyError('async task failed'))",
    ]
    assert all(r.levelno == logging.ERROR for r in records)
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ValueError
    assert str(records[0].exc_info[1]) == "sync task of job 7 failed"
    assert records[0].exc_info[2] is not None  # the traceback
    assert records[1].exc_info is not None and records[1].exc_info[0] is KeyError
    assert records[2].exc_info is None and records[3].exc_info is None
    assert "Traceback" in caplog.text and 'raise KeyError("async task failed")' in caplog.text


@pytest.mark.parametrize("keep_alive", [False, True], ids=["connection-close", "keep-alive"])
async def test_a_lone_failing_async_task_is_logged_the_same_way(keep_alive, caplog):
    """A request whose only work is one async task takes a shorter path through the server."""
    app = App()

    async def lonely(n: int) -> None:
        raise RuntimeError(f"lonely {n} failed")

    @app.post("/lonely/{n}")
    async def handler(n: int, background_tasks: BackgroundTasks):
        background_tasks.add_task(lonely, n)
        return n

    async with serve_app(app) as client:
        raw = await RawClient.connect(client.port)
        try:
            headers = {"content-length": "0"}
            if not keep_alive:
                headers["connection"] = "close"
            await raw.send(request_bytes("POST", "/lonely/1", headers=headers))
            response = await raw.read_response(method=b"POST")
            assert (response.status_code, response.body) == (200, b"1")
            await client.wait_for_background()
            if keep_alive:  # the same connection still serves
                await raw.send(request_bytes("POST", "/lonely/2", headers=headers))
                response = await raw.read_response(method=b"POST")
                assert (response.status_code, response.body) == (200, b"2")
                await client.wait_for_background()
        finally:
            await raw.close()
    records = failures(caplog)
    failed = f"background task {lonely.__qualname__} of POST /lonely/{{n}} failed"
    expected = [failed]
    if keep_alive:  # the same failure again within the minute: counted, written at shutdown
        expected.append(
            f"{failed} ... and 1 more like it in the last 60 s"
            " (the last: RuntimeError('lonely 2 failed'))"
        )
    assert [r.getMessage() for r in records] == expected
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "lonely 1 failed"


async def test_a_task_called_with_wrong_arguments_is_logged_and_the_server_keeps_serving(caplog):
    app = App()
    events: list[str] = []

    async def needs_two(a: str, b: str) -> None:
        events.append(a + b)

    @app.post("/wrong")
    async def wrong(background_tasks: BackgroundTasks):
        background_tasks.add_task(needs_two, "only one")
        return "queued"

    @app.post("/right")
    async def right(background_tasks: BackgroundTasks):
        background_tasks.add_task(needs_two, "a", "b")
        return "queued"

    async with serve_app(app, in_memory=True) as client:
        assert (await client.post("/wrong")).status_code == 200
        await client.wait_for_background()
        assert (await client.post("/right")).status_code == 200
        await client.wait_for_background()
    assert events == ["ab"]
    records = failures(caplog)
    assert [r.getMessage() for r in records] == [
        f"background task {needs_two.__qualname__} of POST /wrong failed"
    ]
    assert records[0].exc_info is not None and records[0].exc_info[0] is TypeError


def discarding_app(events: list[str]) -> App:
    app = App()

    def record(what: str) -> None:
        events.append(what)

    def adds_a_task(background_tasks: BackgroundTasks):
        background_tasks.add_task(record, "from the dependency")

    def refuses():
        raise HTTPException(403, "go away")

    @app.post("/crash")
    async def crash(background_tasks: BackgroundTasks, _: Annotated[None, Depends(adds_a_task)]):
        background_tasks.add_task(record, "from the handler")
        raise RuntimeError("handler failed")

    @app.post("/refuse")
    def refuse(background_tasks: BackgroundTasks, _: Annotated[None, Depends(adds_a_task)]):
        background_tasks.add_task(record, "from the handler")
        raise HTTPException(409, "conflict")

    @app.post("/dependency-refuses")
    async def dependency_refuses(
        _: Annotated[None, Depends(adds_a_task)], __: Annotated[None, Depends(refuses)]
    ):
        return "unreachable"

    @app.post("/invalid")
    async def invalid(_: Annotated[None, Depends(adds_a_task)], count: int):
        return count

    @app.post("/fine")
    async def fine(background_tasks: BackgroundTasks):
        background_tasks.add_task(record, "fine")
        return "ok"

    return app


@pytest.mark.parametrize(
    ("path", "status", "discarded", "route"),
    [
        ("/crash", 500, 2, "POST /crash"),
        ("/refuse", 409, 2, "POST /refuse"),
        ("/dependency-refuses", 403, 1, "POST /dependency-refuses"),
        ("/invalid?count=many", 422, 1, "POST /invalid"),
    ],
)
async def test_the_tasks_of_a_failed_request_are_discarded_with_a_warning(
    path, status, discarded, route, caplog
):
    events: list[str] = []
    async with serve_app(discarding_app(events), in_memory=True) as client:
        response = await client.post(path)
        assert response.status_code == status
        await client.wait_for_background()
        assert events == []
        # the next request's tasks run as usual
        assert (await client.post("/fine")).status_code == 200
        await client.wait_for_background()
    assert events == ["fine"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.name, r.getMessage()) for r in warnings] == [
        (
            "rawbg.app",
            f"discarding {discarded} background task(s) of {route}: "
            f"the request failed with {status}",
        )
    ]


async def test_a_failed_request_without_tasks_discards_nothing_and_warns_nothing(caplog):
    app = App()

    @app.get("/")
    async def index(background_tasks: BackgroundTasks):
        raise HTTPException(404, "nothing here")

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/")).status_code == 404
        await client.wait_for_background()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
