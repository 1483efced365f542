"""The lifecycle trace (--trace) tells the story of a request, in order."""

import json
import logging
import re
from typing import Annotated

import pytest

from rawbg import App, BackgroundTasks, Depends
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes

LINE = re.compile(r"^(conn \d+(?: req \d+)?) \+(\d+\.\d+) ms  (.+?)(?:  (.*))?$")


def build_app(events: list[str]) -> App:
    app = App()

    async def first(name: str) -> None:
        events.append(f"first {name}")

    def second(name: str) -> None:
        events.append(f"second {name}")

    async def who(background_tasks: BackgroundTasks, name: str = "anon") -> str:
        background_tasks.add_task(first, name)
        return name

    @app.post("/greet")
    async def greet(background_tasks: BackgroundTasks, name: Annotated[str, Depends(who)]):
        background_tasks.add_task(second, name)
        return {"hello": name}

    return app


def trace_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float, str, str]]:
    parsed = []
    for record in caplog.records:
        if record.name == "rawbg.trace":
            match = LINE.match(record.getMessage())
            assert match, record.getMessage()
            label, ms, event, details = match.groups()
            parsed.append((label, float(ms), event, details or ""))
    return parsed


async def test_trace_of_a_request_with_a_dependency_and_two_tasks_is_in_lifecycle_order(caplog):
    caplog.set_level(logging.INFO, logger="rawbg.trace")
    events: list[str] = []
    async with serve_app(build_app(events), trace=True) as client:
        response = await client.post("/greet?name=ada")
        assert response.json() == {"hello": "ada"}
        await client.wait_for_background()
        await client.server.shutdown()
    assert events == ["first ada", "second ada"]
    lines = trace_lines(caplog)
    assert [event for _, _, event, _ in lines] == [
        "connection accepted",
        "request head parsed",
        "dependency resolved",
        "handler returned",
        "response started",
        "response flushed",
        "background work scheduled",
        # the client asked for Connection: close, so the socket closes at once,
        # while the connection task stays to run the request's tasks
        "connection closed",
        "background task started",
        "background task finished",
        "background task started",
        "background task finished",
        "connection task done",
    ]
    details = [d for _, _, _, d in lines]
    assert "method=POST target=/greet?name=ada" in details[1]
    assert "name=build_app.<locals>.who cached=no" in details[2]
    assert "status=200" in details[5] and "bytes=" in details[5]
    assert "tasks=2" in details[6]
    assert "why=no keep-alive" in details[7]
    assert "task=build_app.<locals>.first" in details[8]
    assert "task=build_app.<locals>.second" in details[10] and "duration_ms=" in details[11]
    # timestamps are relative to the connection's start and never go backwards
    times = [ms for _, ms, _, _ in lines]
    assert times == sorted(times)
    # every request event names the request; connection events do not
    request_lines = lines[1:7] + lines[8:12]
    assert all(label.endswith("req 1") for label, _, _, _ in request_lines)
    assert "req" not in lines[7][0]
    assert lines[0][0] == lines[-1][0] and "req" not in lines[0][0]


async def test_trace_keeps_naming_a_request_whose_tasks_run_during_the_next_one(serve, caplog):
    caplog.set_level(logging.INFO, logger="rawbg.trace")
    import asyncio

    release = asyncio.Event()
    app = App()

    async def slow() -> None:
        await release.wait()

    @app.get("/")
    async def index(background_tasks: BackgroundTasks):
        background_tasks.add_task(slow)
        return "ok"

    async with serve(app, trace=True) as server:
        client = await RawClient.connect(server.port)
        await client.send(request_bytes("GET", "/"))
        assert (await client.read_response()).status_code == 200
        await client.send(request_bytes("GET", "/"))
        assert (await client.read_response()).status_code == 200
        release.set()
        await server.wait_background_idle()
        await client.close()
    finished = [
        label for label, _, event, _ in trace_lines(caplog) if event == "background task finished"
    ]
    assert sorted(finished) == [
        finished[0].replace("req 2", "req 1"),
        finished[0].replace("req 1", "req 2"),
    ]


async def test_tracing_off_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="rawbg.trace")
    async with serve_app(build_app([])) as client:
        assert (await client.post("/greet")).status_code == 200
        await client.wait_for_background()
    assert [r for r in caplog.records if r.name == "rawbg.trace"] == []


async def test_trace_file_draws_the_promise_tasks_start_after_the_response_is_flushed(tmp_path):
    path = tmp_path / "trace.json"
    events: list[str] = []
    async with serve_app(build_app(events), trace_file=str(path)) as client:
        assert (await client.post("/greet?name=ada")).status_code == 200
        await client.wait_for_background()
        await client.server.shutdown()
    trace = json.loads(path.read_text())  # Chrome trace-event JSON, array form
    tracks = {e["tid"]: e["args"]["name"] for e in trace if e.get("name") == "thread_name"}
    connection_track = next(t for t, name in tracks.items() if "req" not in name)
    task_tracks = {t for t, name in tracks.items() if "req 1" in name}
    assert len(task_tracks) == 2  # one track per background task

    def spans(track: int) -> list[tuple[str, str, float]]:
        return [
            (e["ph"], e["name"], e["ts"])
            for e in trace
            if e.get("tid") == track and e["ph"] in "BE"
        ]

    on_connection = spans(connection_track)
    assert [(ph, name) for ph, name, _ in on_connection] == [
        ("B", "connection"),
        ("B", "POST /greet?name=ada"),
        ("E", "request"),
        ("E", "connection"),
    ]
    flushed = on_connection[2][2]
    task_spans = sorted(spans(track) for track in task_tracks)
    for begin, end in task_spans:
        assert begin[0] == "B" and end[0] == "E" and flushed <= begin[2] <= end[2]
    assert {begin[1] for begin, _ in task_spans} == {
        "build_app.<locals>.first",
        "build_app.<locals>.second",
    }


async def test_trace_file_alone_logs_no_trace_lines(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="rawbg.trace")
    path = tmp_path / "trace.json"
    async with serve_app(build_app([]), trace_file=str(path)) as client:
        assert (await client.post("/greet")).status_code == 200
        await client.wait_for_background()
    assert [r for r in caplog.records if r.name == "rawbg.trace"] == []
    assert any(e["ph"] == "B" for e in json.loads(path.read_text()))
