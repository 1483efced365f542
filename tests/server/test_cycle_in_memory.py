"""The request/response cycle without a socket: bytes in, bytes out, then the background work.

Each test runs the real connection task (`HttpProtocol` and `Connection`) on
a `rawbg.wire.memory_transport.MemoryConnection`: what it proves is the cycle's order and its
answers, not the kernel's part (that is in the tests/test_http_*.py files).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rawbg import App, BackgroundTasks, Server, serving
from rawbg.server.connection import Phase
from rawbg.wire.memory_transport import MemoryConnection

GET_WORK = b"GET /work HTTP/1.1\r\nhost: x\r\n\r\n"
GET_PLAIN = b"GET /plain HTTP/1.1\r\nhost: x\r\n\r\n"
WAIT = 5.0


@asynccontextmanager
async def in_memory(app: App, **options: Any) -> AsyncIterator[Server]:
    """The server of `app`, started without listening, shut down gracefully at the end."""
    async with serving(app, listen=False, access_log=False, **options) as server:
        yield server


def status_and_body(response: bytes) -> tuple[bytes, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


async def test_the_response_is_written_before_its_background_task_starts():
    app = App()
    seen_by_task: list[bytes] = []
    connection: MemoryConnection

    async def task() -> None:
        seen_by_task.append(connection.received)

    @app.get("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(task)
        return {"ok": True}

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(GET_WORK)
        response = await connection.receive(until=b'{"ok":true}')
        async with asyncio.timeout(WAIT):
            await server.wait_background_idle()
    assert status_and_body(response) == (b"HTTP/1.1 200 OK", b'{"ok":true}')
    assert seen_by_task == [response]  # the whole response was out when the task began


async def test_the_next_request_on_the_connection_does_not_wait_for_the_last_ones_task():
    app = App()
    release = asyncio.Event()
    events: list[str] = []

    async def slow_task() -> None:
        events.append("task started")
        await release.wait()
        events.append("task finished")

    @app.get("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(slow_task)
        return {"ok": True}

    @app.get("/plain")
    async def plain() -> str:
        events.append("second request handled")
        return "plain"

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(GET_WORK)
        await connection.receive(until=b'{"ok":true}')
        connection.send(GET_PLAIN)
        second = await connection.receive(until=b'"plain"')
        assert status_and_body(second) == (b"HTTP/1.1 200 OK", b'"plain"')
        assert server.pending.count == 1  # the first request's task is still running
        release.set()
        async with asyncio.timeout(WAIT):
            await server.wait_background_idle()
    assert events == ["task started", "second request handled", "task finished"]


async def test_the_connection_task_outlives_its_closed_connection_until_the_work_is_done():
    app = App()
    release = asyncio.Event()

    @app.get("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(release.wait)
        return {"ok": True}

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(GET_WORK.replace(b"host: x", b"host: x\r\nconnection: close"))
        await connection.receive(until=b'{"ok":true}')
        await connection.wait_closed()
        (task,) = server.connection_tasks
        await asyncio.sleep(0)
        assert not task.done()  # the socket side is gone, the work is not
        release.set()
        async with asyncio.timeout(WAIT):
            await task
        assert server.connection_tasks == set()


async def test_a_malformed_request_line_is_refused_with_400_and_the_connection_closes():
    async with in_memory(App()) as server:
        connection = MemoryConnection(server)
        connection.send(b"GET /\r\n\r\n")
        response = await connection.receive(until=b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"connection: close\r\n" in response.lower()
        assert connection.transport.eof_written  # the lingering close has begun
        connection.send_eof()
        await connection.wait_closed()


async def test_a_head_over_the_limit_is_refused_with_431():
    async with in_memory(App(), max_head_size=1024) as server:
        connection = MemoryConnection(server)
        connection.send(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 2000 + b"\r\n\r\n")
        response = await connection.receive(until=b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 431 ")
        connection.send_eof()
        await connection.wait_closed()


async def test_a_declared_body_over_the_limit_is_refused_with_413_before_it_is_read():
    app = App()

    @app.post("/echo")
    async def echo(body: bytes) -> None:
        raise AssertionError("the handler must not run")

    async with in_memory(app, max_body_size=10) as server:
        connection = MemoryConnection(server)
        connection.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n")
        response = await connection.receive(until=b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 413 ")
        connection.send_eof()
        await connection.wait_closed()


async def test_content_length_with_transfer_encoding_is_refused_with_400():
    async with in_memory(App()) as server:
        connection = MemoryConnection(server)
        connection.send(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"
            b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        response = await connection.receive(until=b"\r\n\r\n")
        assert status_and_body(response)[0] == b"HTTP/1.1 400 Bad Request"
        assert b"Content-Length and Transfer-Encoding" in response
        connection.send_eof()
        await connection.wait_closed()


async def test_a_refusal_of_a_head_request_has_no_body():
    async with in_memory(App(), max_body_size=10) as server:
        connection = MemoryConnection(server)
        connection.send(b"HEAD / HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n")
        response = await connection.receive(until=b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 413 ")
        assert response.endswith(b"\r\n\r\n")
        connection.send_eof()
        await connection.wait_closed()


async def test_pipelined_requests_are_answered_in_order():
    app = App()

    @app.get("/n/{n}")
    async def number(n: int) -> int:
        return n

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(b"".join(b"GET /n/%d HTTP/1.1\r\nhost: x\r\n\r\n" % n for n in (1, 2, 3)))
        responses = await connection.receive(until=b"\r\n\r\n3")
    bodies = [part.split(b"\r\n\r\n")[1][:1] for part in responses.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"1", b"2", b"3"]


async def test_a_client_that_half_closes_mid_body_gets_a_400_and_the_handler_never_runs():
    app = App()

    @app.post("/echo")
    async def echo(body: bytes) -> None:
        raise AssertionError("the handler must not run")

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab")
        connection.send_eof()
        await connection.wait_closed()
    status, body = status_and_body(connection.received)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"expected 5" in body


async def test_an_idle_keep_alive_connection_is_closed_quietly_after_the_timeout():
    async with in_memory(App(), timeout_keep_alive=0.05) as server:
        connection = MemoryConnection(server)
        await connection.wait_closed()
        assert connection.received == b""


@pytest.mark.parametrize(
    ("how", "send"),
    [
        ("no keep-alive", b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        ("a refusal", b"GET /\r\n\r\n"),
        ("the client's close", b""),
        ("the idle timeout", None),
    ],
    ids=["no-keep-alive", "refusal", "client-close", "idle-timeout"],
)
async def test_every_way_a_connection_ends_goes_through_closing(how, send):
    app = App()

    @app.get("/plain")
    async def plain() -> str:
        return "plain"

    async with in_memory(app, timeout_keep_alive=0.2) as server:
        memory = MemoryConnection(server)
        await asyncio.sleep(0)  # the connection task starts and registers
        (connection,) = server.connections
        if send is not None:
            memory.send(send)
            if how != "no keep-alive":
                memory.send_eof()
        await memory.wait_closed()
    assert connection.phase is Phase.CLOSING, how
