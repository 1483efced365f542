"""Connection limit, pending-task bound and input flow control, over a real socket.

docs/server-behavior.md: beyond `limit_concurrency` open connections, one more
gets 503 at once and is closed; with `max_pending_tasks` pending, the server
reads no new request until some finish, and drops nothing; input pipelined
while a handler runs is buffered only up to a bound, and every pipelined
request is still answered, in order.
"""

import asyncio
import socket

from rawbg import App, BackgroundTasks, Request
from tests.support.wire import RawClient, request_bytes


def hello_app() -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    return app


async def half_close_and_wait_for_server_close(client: RawClient) -> None:
    """Close our side, then wait until the server has closed its socket (we read EOF)."""
    await client.shutdown_write()
    assert await client.read_all(timeout=3) == b""
    await client.close()


async def test_one_connection_over_the_limit_gets_503_and_is_closed(serve):
    async with serve(hello_app(), limit_concurrency=2) as server:
        first = await RawClient.connect(server.port)
        second = await RawClient.connect(server.port)
        third = fourth = None
        try:
            for client in (first, second):
                await client.send(request_bytes("GET", "/hello"))
                response = await client.read_response()
                assert (response.status_code, response.body) == (200, b'{"hello":"world"}')

            third = await RawClient.connect(server.port)
            # answered at once, without sending a byte of a request
            busy = await third.read_response(timeout=3)
            assert busy.status_code == 503
            assert busy.reason == b"Service Unavailable"
            assert busy.headers["connection"] == "close"
            assert b"connection limit" in busy.body
            assert await third.read_all(timeout=3) == b""  # and closed
            await third.close()
            third = None

            # the first two are still served
            await second.send(request_bytes("GET", "/hello"))
            assert (await second.read_response()).status_code == 200

            # one of them goes away: room for a new connection
            await half_close_and_wait_for_server_close(first)
            fourth = await RawClient.connect(server.port)
            await fourth.send(request_bytes("GET", "/hello"))
            response = await fourth.read_response()
            assert (response.status_code, response.body) == (200, b'{"hello":"world"}')
        finally:
            for client in (first, second, third, fourth):
                if client is not None:
                    await client.close()


def blocked_work_app(release: asyncio.Event, executed: list[str]) -> App:
    async def blocked_task(name: str) -> None:
        await release.wait()
        executed.append(name)

    app = App()

    @app.post("/work/{name}")
    async def work(name: str, background_tasks: BackgroundTasks):
        background_tasks.add_task(blocked_task, name)
        return {"queued": name}

    return app


async def queue_blocked_work(client: RawClient, name: str) -> None:
    await client.send(request_bytes("POST", f"/work/{name}"))
    response = await client.read_response(method=b"POST")
    assert (response.status_code, response.body) == (200, b'{"queued":"%s"}' % name.encode())


async def assert_held_then_answered(
    server, client: RawClient, name: str, release: asyncio.Event
) -> None:
    """`client`'s request is not answered while the bound holds, and is once released."""
    await client.send(request_bytes("POST", f"/work/{name}"))
    reply = asyncio.create_task(client.read_response(method=b"POST", timeout=5))
    try:
        done, _ = await asyncio.wait({reply}, timeout=0.3)
        assert not done, "answered while the pending-task bound was reached"
        assert server.pending.count == 2
        release.set()
        response = await reply
    finally:
        reply.cancel()
    assert (response.status_code, response.body) == (200, b'{"queued":"%s"}' % name.encode())


async def test_a_new_connection_waits_while_pending_tasks_are_at_the_bound(serve):
    release = asyncio.Event()
    executed: list[str] = []
    async with serve(blocked_work_app(release, executed), max_pending_tasks=2) as server:
        clients = []
        try:
            for name in ("a", "b"):
                clients.append(await RawClient.connect(server.port))
                await queue_blocked_work(clients[-1], name)
            assert server.pending.count == 2
            assert executed == []

            clients.append(await RawClient.connect(server.port))
            await assert_held_then_answered(server, clients[-1], "c", release)
            async with asyncio.timeout(3):
                await server.wait_background_idle()
        finally:
            release.set()
            for client in clients:
                await client.close()
    # nothing was dropped: every request's task ran exactly once, c's last
    assert sorted(executed) == ["a", "b", "c"]
    assert executed[2] == "c"
    assert server.pending.count == 0


async def test_the_next_request_on_a_keep_alive_connection_waits_at_the_bound(serve):
    release = asyncio.Event()
    executed: list[str] = []
    async with serve(blocked_work_app(release, executed), max_pending_tasks=2) as server:
        client = await RawClient.connect(server.port)
        try:
            await queue_blocked_work(client, "a")
            await queue_blocked_work(client, "b")
            assert server.pending.count == 2
            await assert_held_then_answered(server, client, "c", release)
            async with asyncio.timeout(3):
                await server.wait_background_idle()
        finally:
            release.set()
            await client.close()
    assert executed == ["a", "b", "c"]


async def test_a_connection_already_idle_when_the_bound_is_reached_also_waits(serve):
    release = asyncio.Event()
    executed: list[str] = []
    async with serve(blocked_work_app(release, executed), max_pending_tasks=2) as server:
        # opened (and idle) before the bound is reached
        clients = [await RawClient.connect(server.port) for _ in range(3)]
        try:
            await queue_blocked_work(clients[0], "a")
            await queue_blocked_work(clients[1], "b")
            assert server.pending.count == 2
            await assert_held_then_answered(server, clients[2], "c", release)
            async with asyncio.timeout(3):
                await server.wait_background_idle()
        finally:
            release.set()
            for client in clients:
                await client.close()
    assert sorted(executed) == ["a", "b", "c"]


async def test_pipelined_input_is_not_buffered_without_bound_and_all_is_answered_in_order(serve):
    unblock = asyncio.Event()
    handler_running = asyncio.Event()
    seen: list[int] = []

    app = App()

    @app.post("/block")
    async def block():
        handler_running.set()
        await unblock.wait()
        return {"blocked": True}

    @app.post("/item/{n}")
    async def item(n: int, request: Request):
        seen.append(n)
        return {"n": n, "size": len(await request.body())}

    body = b"x" * 16_384
    count = 128  # 2 MiB of pipelined requests behind the blocked one
    pipelined = b"".join(request_bytes("POST", f"/item/{n}", body=body) for n in range(count))
    assert len(pipelined) > 2 * 1024 * 1024

    async with serve(app) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # a small send buffer on our side: what we write stays visible in
        # user space (the transport's buffer) until the server reads it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16_384)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(5):
                await loop.sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        client = RawClient(reader, writer)
        try:
            await client.send(request_bytes("POST", "/block"))
            async with asyncio.timeout(5):
                await handler_running.wait()
            writer.write(pipelined)
            await asyncio.sleep(0.3)  # time for the server to swallow it all, if it would
            left = writer.transport.get_write_buffer_size()
            # The server stopped reading: most of the 2 MiB is still queued on
            # our side (server-side kernel buffers and its 64 KiB of input
            # take well under 1 MiB with a receiver that is not reading).
            assert left > 1024 * 1024, f"the server read all but {left} bytes"
            assert seen == []

            unblock.set()
            first = await client.read_response(method=b"POST")
            assert (first.status_code, first.body) == (200, b'{"blocked":true}')
            for n in range(count):
                response = await client.read_response(method=b"POST")
                assert response.status_code == 200
                assert response.body == b'{"n":%d,"size":16384}' % n
            async with asyncio.timeout(5):
                await writer.drain()
        finally:
            unblock.set()
            await client.close()
    assert seen == list(range(count))
