"""Background tasks, seen from a client on a real socket.

docs/server-behavior.md: tasks start only after the whole response has been
handed to the kernel; they never hold up the next request on the connection;
they run even if the client disconnects after a complete request; and the
connection task (docs/ARCHITECTURE.md) ends only after its tasks.
"""

import asyncio
import socket

import pytest

from rawbg import App, BackgroundTasks, Response
from tests.support.wire import RawClient, request_bytes

BIG = 16 * 1024 * 1024  # far more than loopback's kernel buffers hold for a non-reader


def kernel_capacity() -> int:
    """An upper bound on what the kernel holds of a response the client has not read:
    the server's send buffer at its largest (tcp_wmem max) plus our small receive buffer."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
    except OSError:
        wmem_max = 4 * 1024 * 1024
    return wmem_max + 256 * 1024


async def test_a_task_starts_only_after_the_response_is_flushed(serve):
    received = 0  # bytes of the response the client has read so far
    task_saw: list[int] = []

    async def record() -> None:
        task_saw.append(received)

    app = App()

    @app.get("/big")
    async def big(background_tasks: BackgroundTasks):
        background_tasks.add_task(record)
        return Response(b"x" * BIG, media_type="application/octet-stream")

    async with serve(app) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(5):
                await loop.sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
        except BaseException:
            sock.close()
            raise
        try:
            writer.write(request_bytes("GET", "/big"))
            await writer.drain()
            # We read nothing: most of the response cannot leave the server's
            # buffer, so the response is not flushed and the task must not start.
            await asyncio.sleep(0.3)
            assert task_saw == [], "the task started before the response was flushed"
            assert server.pending.count == 1  # but it is already counted as pending

            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"content-length: %d\r\n" % BIG in head
                while received < BIG:
                    chunk = await reader.read(65536)
                    assert chunk, "connection closed before the whole body arrived"
                    received += len(chunk)
                await server.wait_background_idle()
        finally:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    assert received == BIG
    assert len(task_saw) == 1
    # when it started, all but what the kernel buffers could hold had reached us
    assert task_saw[0] >= BIG - kernel_capacity(), task_saw


async def test_the_next_request_is_answered_while_the_previous_task_is_pending(serve):
    release = asyncio.Event()
    log: list[str] = []

    async def slow_task(name: str) -> None:
        log.append(f"{name} started")
        await release.wait()
        log.append(f"{name} finished")

    app = App()

    @app.post("/job/{name}")
    async def job(name: str, background_tasks: BackgroundTasks):
        background_tasks.add_task(slow_task, name)
        return {"job": name}

    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/job/one"))
            first = await client.read_response(method=b"POST")
            assert (first.status_code, first.body) == (200, b'{"job":"one"}')

            await client.send(request_bytes("POST", "/job/two"))
            second = await client.read_response(method=b"POST", timeout=3)
            assert (second.status_code, second.body) == (200, b'{"job":"two"}')
            # answered while the first task is still blocked
            assert "one finished" not in log
            assert server.pending.count == 2

            release.set()
            async with asyncio.timeout(3):
                await server.wait_background_idle()
        finally:
            release.set()
            await client.close()
    assert sorted(log) == ["one finished", "one started", "two finished", "two started"]
    assert log.index("one started") < log.index("one finished")


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
async def test_a_task_runs_even_if_the_client_closes_right_after_its_request(serve, keep_alive):
    task_started = asyncio.Event()
    done: list[str] = []

    async def notify(email: str) -> None:
        task_started.set()
        await asyncio.sleep(0.2)
        done.append(email)

    app = App()

    @app.post("/notify/{email}")
    async def notify_route(email: str, background_tasks: BackgroundTasks):
        background_tasks.add_task(notify, email)
        return {"ok": True}

    headers = {} if keep_alive else {"connection": "close"}
    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/notify/a@b.c", headers=headers))
        finally:
            await client.close()  # gone without reading a byte of the response
        async with asyncio.timeout(3):
            await task_started.wait()
            assert done == []
            await server.wait_background_idle()
    assert done == ["a@b.c"]


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-close"])
async def test_the_connection_task_ends_only_after_its_tasks(serve, keep_alive):
    release = asyncio.Event()
    finished: list[bool] = []

    async def blocked() -> None:
        await release.wait()
        finished.append(True)

    app = App()

    @app.get("/work")
    async def work(background_tasks: BackgroundTasks):
        background_tasks.add_task(blocked)
        return {"ok": True}

    headers = {} if keep_alive else {"connection": "close"}
    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/work", headers=headers))
            response = await client.read_response()
            assert (response.status_code, response.body) == (200, b'{"ok":true}')
            # we leave, and wait until the server has closed its socket
            await client.shutdown_write()
            assert await client.read_all(timeout=3) == b""
        finally:
            await client.close()
        await asyncio.sleep(0.1)
        # the socket is closed, but the connection task waits for its work
        tasks = set(server.connection_tasks)
        assert len(tasks) == 1
        assert not any(task.done() for task in tasks)
        assert finished == []

        release.set()
        done, _ = await asyncio.wait(tasks, timeout=3)
        assert done == tasks
        assert finished == [True]
        assert server.connection_tasks == set()
        assert server.pending.count == 0
