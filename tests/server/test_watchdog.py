"""The loop-block warning, over a real socket.

docs/server-behavior.md (logging): when the event loop is blocked for
`loop_block_warning` seconds or more, one warning names how long and what was
running (the handler, dependency or background task, with its route); with
``trace`` it is also on the request's trace.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

import pytest

from rawbg import App, BackgroundTasks, Depends
from tests.support.wire import RawClient, request_bytes

THRESHOLD = 0.1
BLOCK = 0.5  # certainly seen: over 1.5 x the threshold


def blocking_app() -> App:
    app = App()

    @app.get("/fast")
    async def fast():
        return {"fast": True}

    @app.get("/block")
    async def block():
        time.sleep(BLOCK)  # blocks the event loop, on purpose
        return {"blocked": True}

    async def slow_dependency():
        time.sleep(BLOCK)
        return 1

    @app.get("/dependency")
    async def uses_dependency(value: int = Depends(slow_dependency)):
        return {"value": value}

    async def slow_task():
        time.sleep(BLOCK)

    @app.get("/task")
    async def queues_a_task(background_tasks: BackgroundTasks):
        background_tasks.add_task(slow_task)
        return {"queued": True}

    return app


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rawbg.watchdog"]


async def wait_for_warning(caplog: pytest.LogCaptureFixture) -> str:
    async with asyncio.timeout(5):
        while not warnings_of(caplog):
            await asyncio.sleep(0.02)
    await asyncio.sleep(4 * THRESHOLD)  # time enough for a second warning, if there were one
    [warning] = warnings_of(caplog)
    return warning


def blocked_seconds(warning: str) -> float:
    match = re.search(r"blocked for ([\d.]+) s", warning)
    assert match is not None, warning
    return float(match.group(1))


async def get(port: int, path: str, *, close: bool = False) -> int:
    client = await RawClient.connect(port)
    try:
        headers = {"connection": "close"} if close else None
        await client.send(request_bytes("GET", path, headers=headers))
        return (await client.read_response()).status_code
    finally:
        await client.close()


async def test_a_handler_that_blocks_the_loop_is_named_in_one_warning(serve, caplog):
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    async with serve(blocking_app(), loop_block_warning=THRESHOLD) as server:
        assert await get(server.port, "/fast") == 200
        await asyncio.sleep(3 * THRESHOLD)
        assert warnings_of(caplog) == []  # a healthy loop says nothing
        assert await get(server.port, "/block") == 200
        warning = await wait_for_warning(caplog)
    assert "the handler " in warning
    assert "block of GET /block" in warning
    assert "test_watchdog.py" in warning  # where it blocked
    assert BLOCK <= blocked_seconds(warning) < BLOCK + 1.0


async def test_a_dependency_that_blocks_the_loop_is_named_with_its_route(serve, caplog):
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    async with serve(blocking_app(), loop_block_warning=THRESHOLD) as server:
        assert await get(server.port, "/dependency") == 200
        warning = await wait_for_warning(caplog)
    assert "the dependency " in warning
    assert "slow_dependency of GET /dependency" in warning


async def test_a_background_task_that_blocks_the_loop_is_named_with_its_route(serve, caplog):
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    async with serve(blocking_app(), loop_block_warning=THRESHOLD) as server:
        assert await get(server.port, "/task", close=True) == 200
        warning = await wait_for_warning(caplog)
    assert "the background task " in warning
    assert "slow_task of GET /task" in warning


async def test_a_blocked_loop_is_on_the_request_trace(serve, caplog):
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    caplog.set_level(logging.INFO, logger="rawbg.trace")  # last: it also sets caplog's level
    async with serve(blocking_app(), loop_block_warning=THRESHOLD, trace=True) as server:
        assert await get(server.port, "/block") == 200
        await wait_for_warning(caplog)
    traced = [r.getMessage() for r in caplog.records if r.name == "rawbg.trace"]
    [line] = [line for line in traced if "event loop blocked" in line]
    assert re.match(r"conn \d+ req 1 ", line), line
    assert "by=the handler" in line and "GET /block" in line


async def test_no_warning_when_the_watchdog_is_off(serve, caplog):
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    async with serve(blocking_app(), loop_block_warning=0) as server:
        assert await get(server.port, "/block") == 200
        await asyncio.sleep(4 * THRESHOLD)
        watchdogs = [t for t in threading.enumerate() if t.name == "rawbg-watchdog"]
    assert warnings_of(caplog) == []
    assert watchdogs == []


async def test_a_long_block_is_also_reported_while_it_lasts(serve, caplog, monkeypatch):
    monkeypatch.setattr("rawbg.server.watchdog.STILL_BLOCKED_REPORT", 0.2)
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    async with serve(blocking_app(), loop_block_warning=THRESHOLD) as server:
        # 0.5 s: reported at about 0.2 s and 0.4 s (doubling), then when it ends
        assert await get(server.port, "/block") == 200
        async with asyncio.timeout(5):
            while not any("was blocked" in w for w in warnings_of(caplog)):
                await asyncio.sleep(0.02)
    *during, after = warnings_of(caplog)
    assert 1 <= len(during) <= 2, during  # one if the watchdog thread was late
    assert all(w.startswith("event loop has been blocked for") for w in during)
    assert "GET /block" in during[0]
    assert after.startswith("event loop was blocked for")


async def test_a_block_that_ends_just_before_the_server_stops_is_still_reported(serve, caplog):
    # The server stops in the same loop iteration as the block ends (a SIGTERM that came
    # during a block is handled as soon as the loop runs again): the heartbeat has not
    # moved yet when the watchdog is stopped. Issue 24 saw this unreported in 4 of 4 runs
    # with SIGTERM, on both loops; before the fix it was so here in every run.
    caplog.set_level(logging.WARNING, logger="rawbg.watchdog")
    async with serve(blocking_app(), loop_block_warning=THRESHOLD):
        time.sleep(BLOCK)  # blocks the event loop, as a handler would
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("event loop was blocked for"), warnings[0]
    assert BLOCK <= blocked_seconds(warnings[0]) < BLOCK + 1.0
