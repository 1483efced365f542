"""Graceful shutdown of `rawbg.Server`, seen from clients on real sockets.

docs/server-behavior.md, "Shutdown": the listening socket closes; idle
connections close at once; a request in progress is answered with
`connection: close`; background work is waited for up to
`timeout_graceful_shutdown`, then cancelled and counted in the log.
"""

import asyncio
import contextlib
import logging
import socket

import pytest

from rawbg import App, BackgroundTasks, Depends, Response, Server
from rawbg.server.config import ServerConfig
from tests.support.wire import RawClient, request_bytes


@contextlib.asynccontextmanager
async def started(app: App, **options):
    """A started server; shut down on exit unless the test did it (bounded, either way)."""
    server = Server(app, ServerConfig(port=0, access_log=False, **options))
    await server.start()
    try:
        yield server
    finally:
        async with asyncio.timeout(5):
            await server.shutdown()


async def shutdown(server: Server, timeout: float = 5) -> int:
    async with asyncio.timeout(timeout):
        return await server.shutdown()


async def test_shutdown_waits_for_pending_background_tasks():
    task_started = asyncio.Event()
    done: list[str] = []

    async def slow(name: str) -> None:
        task_started.set()
        await asyncio.sleep(0.3)
        done.append(name)

    app = App()

    @app.post("/job/{name}")
    async def job(name: str, background_tasks: BackgroundTasks):
        background_tasks.add_task(slow, name)
        return {"job": name}

    async with started(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/job/a"))
            response = await client.read_response(method=b"POST")
            assert (response.status_code, response.body) == (200, b'{"job":"a"}')
            async with asyncio.timeout(3):
                await task_started.wait()
            assert done == []
            loop = asyncio.get_running_loop()
            begun = loop.time()
            assert await shutdown(server) == 0
            elapsed = loop.time() - begun
        finally:
            await client.close()
    assert done == ["a"]  # finished, not cancelled
    assert elapsed >= 0.2  # shutdown did wait for it
    assert server.pending.count == 0
    assert server.connection_tasks == set()


async def test_idle_connections_are_closed_at_shutdown():
    app = App()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    # a long keep-alive timeout: only shutdown can close these quickly
    async with started(app, timeout_keep_alive=30) as server:
        used = await RawClient.connect(server.port)
        fresh = await RawClient.connect(server.port)
        try:
            await used.send(request_bytes("GET", "/hello"))
            assert (await used.read_response()).status_code == 200
            loop = asyncio.get_running_loop()
            begun = loop.time()
            assert await shutdown(server, timeout=2) == 0
            assert loop.time() - begun < 1
            # both closed by the server, with no further bytes
            assert await used.read_all(timeout=2) == b""
            assert await fresh.read_all(timeout=2) == b""
        finally:
            await used.close()
            await fresh.close()


async def test_a_request_in_progress_is_answered_with_connection_close():
    handler_running = asyncio.Event()
    release = asyncio.Event()

    app = App()

    @app.get("/slow")
    async def slow():
        handler_running.set()
        await release.wait()
        return {"slow": "done"}

    async with started(app, timeout_keep_alive=30) as server:
        client = await RawClient.connect(server.port)
        stopping = None
        try:
            await client.send(request_bytes("GET", "/slow"))
            async with asyncio.timeout(3):
                await handler_running.wait()
            stopping = asyncio.create_task(shutdown(server))
            done, _ = await asyncio.wait({stopping}, timeout=0.2)
            assert not done, "shutdown returned before the request in progress was answered"

            release.set()
            response = await client.read_response()
            assert (response.status_code, response.body) == (200, b'{"slow":"done"}')
            assert response.headers["connection"] == "close"
            assert await client.read_all(timeout=2) == b""  # then closed
            assert await stopping == 0
        finally:
            release.set()
            if stopping is not None:
                await asyncio.gather(stopping, return_exceptions=True)
            await client.close()


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
async def test_tasks_still_pending_after_the_graceful_timeout_are_cancelled_and_counted(
    caplog, keep_alive
):
    caplog.set_level(logging.INFO, logger="rawbg.server")
    task_started = asyncio.Event()
    outcome: list[str] = []

    async def forever() -> None:
        task_started.set()
        try:
            await asyncio.sleep(60)
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    app = App()

    @app.post("/forever")
    async def start_forever(background_tasks: BackgroundTasks):
        background_tasks.add_task(forever)
        return {"ok": True}

    headers = {} if keep_alive else {"connection": "close"}
    async with started(app, timeout_graceful_shutdown=0.2) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/forever", headers=headers))
            response = await client.read_response(method=b"POST")
            assert (response.status_code, response.body) == (200, b'{"ok":true}')
            async with asyncio.timeout(3):
                await task_started.wait()
            loop = asyncio.get_running_loop()
            begun = loop.time()
            cancelled = await shutdown(server, timeout=3)
            elapsed = loop.time() - begun
        finally:
            await client.close()
    assert cancelled == 1
    assert 0.15 <= elapsed < 1, elapsed
    assert outcome == ["cancelled"]
    assert server.pending.count == 0
    warnings = [
        r for r in caplog.records if r.name == "rawbg.server" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "cancelled 1 background task" in warnings[0].getMessage()
    # the wait announced is the one configured, not rounded to "0 s"
    messages = [r.getMessage() for r in caplog.records if r.name == "rawbg.server"]
    assert "waiting up to 0.2 s for 1 pending background task(s)" in messages, messages


async def test_new_connections_are_refused_once_shutdown_has_started():
    task_started = asyncio.Event()
    release = asyncio.Event()

    async def blocked() -> None:
        task_started.set()
        await release.wait()

    app = App()

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks):
        background_tasks.add_task(blocked)
        return {"ok": True}

    async with started(app) as server:
        port = server.port
        client = await RawClient.connect(port)
        stopping = None
        try:
            await client.send(request_bytes("POST", "/work"))
            assert (await client.read_response(method=b"POST")).status_code == 200
            async with asyncio.timeout(3):
                await task_started.wait()
            # shutdown is now waiting for the blocked task
            stopping = asyncio.create_task(shutdown(server))
            done, _ = await asyncio.wait({stopping}, timeout=0.1)
            assert not done

            refused = False
            try:
                async with asyncio.timeout(3):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                refused = True
            else:
                writer.close()
                await asyncio.gather(writer.wait_closed(), return_exceptions=True)
            assert refused, "a new connection was accepted during shutdown"

            release.set()
            assert await stopping == 0
        finally:
            release.set()
            if stopping is not None:
                await asyncio.gather(stopping, return_exceptions=True)
            await client.close()


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
async def test_cancelling_a_request_with_several_tasks_leaves_nothing_counted(keep_alive):
    first_started = asyncio.Event()
    ran: list[str] = []

    async def forever(name: str) -> None:
        ran.append(name)
        first_started.set()
        await asyncio.sleep(60)

    app = App()

    @app.post("/two")
    async def two(background_tasks: BackgroundTasks):
        background_tasks.add_task(forever, "first")
        background_tasks.add_task(forever, "second")
        return {"ok": True}

    headers = {} if keep_alive else {"connection": "close"}
    async with started(app, timeout_graceful_shutdown=0.2) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/two", headers=headers))
            assert (await client.read_response(method=b"POST")).status_code == 200
            async with asyncio.timeout(3):
                await first_started.wait()
            assert server.pending.count == 2
            assert await shutdown(server, timeout=3) == 2  # both counted as cancelled
        finally:
            await client.close()
    assert ran == ["first"]
    # nothing is pending any more: the count is back to zero, and waiting returns
    assert server.pending.count == 0
    async with asyncio.timeout(1):
        await server.wait_background_idle()


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
async def test_a_cancelled_request_still_cleans_up_its_generator_dependencies(keep_alive):
    task_started = asyncio.Event()
    log: list[str] = []

    async def session():
        log.append("open")
        try:
            yield "session"
        finally:
            log.append("closed")

    async def use(value: str) -> None:
        task_started.set()
        await asyncio.sleep(60)
        log.append("task finished")  # never reached: cancelled at shutdown

    app = App()

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks, db: str = Depends(session)):
        background_tasks.add_task(use, db)
        return {"ok": True}

    headers = {} if keep_alive else {"connection": "close"}
    async with started(app, timeout_graceful_shutdown=0.2) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/work", headers=headers))
            assert (await client.read_response(method=b"POST")).status_code == 200
            async with asyncio.timeout(3):
                await task_started.wait()
            assert log == ["open"]  # the session stays open while its task runs
            assert await shutdown(server, timeout=3) == 2  # the task and the clean-up
        finally:
            await client.close()
    assert log == ["open", "closed"]
    assert server.pending.count == 0


async def test_a_response_cut_short_by_shutdown_releases_its_work_and_still_cleans_up():
    log: list[str] = []

    async def session():
        log.append("open")
        try:
            yield "session"
        finally:
            log.append("closed")

    async def never(value: str) -> None:
        log.append("task ran")  # its response was never flushed: it must not run

    app = App()

    @app.get("/big")
    async def big(background_tasks: BackgroundTasks, db: str = Depends(session)):
        background_tasks.add_task(never, db)
        return Response(b"x" * (16 * 1024 * 1024), media_type="application/octet-stream")

    # the client reads nothing: the response can never be flushed
    async with started(app, timeout_graceful_shutdown=0.2, timeout_keep_alive=30) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            async with asyncio.timeout(3):
                while server.pending.count == 0:  # the handler has returned
                    await asyncio.sleep(0.01)
            assert await shutdown(server, timeout=3) == 2  # the task and the clean-up
        finally:
            sock.close()
    assert log == ["open", "closed"]
    assert server.pending.count == 0
