"""Slow clients and a stalled event loop, over a real socket.

docs/server-behavior.md: a request body must arrive at `min_body_rate` on
average after a grace of `timeout_keep_alive` (408 otherwise), and shutdown
gives a body still arriving only `timeout_keep_alive` more; a partial head
pipelined behind a request gets 408 like any late head; bytes that arrived
before a deadline are served even when the loop only sees them late.
"""

import asyncio
import contextlib
import socket
import threading
import time

from rawbg import App, Request
from tests.support.wire import RawClient, request_bytes

TIMEOUT = 0.3


def make_app(*, block_seconds: float = 0.0, blocking: threading.Event | None = None) -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    @app.post("/echo")
    async def echo(request: Request):
        return {"size": len(await request.body())}

    @app.get("/block")
    async def block():
        if blocking is not None:
            blocking.set()
        time.sleep(block_seconds)  # blocks the event loop, on purpose
        return {"blocked": block_seconds}

    return app


def body_head(length: int) -> bytes:
    return request_bytes("POST", "/echo", headers={"content-length": str(length)})


async def trickle(client: RawClient, data: bytes, *, piece: int, every: float) -> None:
    for start in range(0, len(data), piece):
        client.writer.write(data[start : start + piece])
        await asyncio.sleep(every)


async def test_a_body_trickled_byte_by_byte_gets_408_after_the_grace(serve):
    loop = asyncio.get_running_loop()
    async with serve(make_app(), timeout_keep_alive=TIMEOUT, min_body_rate=1024) as server:
        client = await RawClient.connect(server.port)
        await client.send(body_head(1000))
        started = loop.time()
        # one byte every 0.05 s: never a stall of TIMEOUT, but 20 bytes/s
        trickler = asyncio.create_task(trickle(client, b"x" * 1000, piece=1, every=0.05))
        try:
            response = await client.read_response(method=b"POST", timeout=5)
            elapsed = loop.time() - started
            assert response.status_code == 408
            assert response.headers["connection"] == "close"
            assert b"request body too slow" in response.body
        finally:
            trickler.cancel()
            await asyncio.gather(trickler, return_exceptions=True)
            await client.close()
    # the grace, plus a few bytes' worth of credit at 1 KiB/s
    assert TIMEOUT * 0.8 <= elapsed < 2.5, elapsed


async def test_a_slow_body_above_the_minimum_rate_is_served_even_past_the_grace(serve):
    loop = asyncio.get_running_loop()
    grace = 0.5
    body = b"y" * 800
    async with serve(make_app(), timeout_keep_alive=grace, min_body_rate=200) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(body_head(len(body)))
            started = loop.time()
            # 40 bytes every 0.05 s: about 800 bytes/s for a second, twice the grace
            await trickle(client, body, piece=40, every=0.05)
            response = await client.read_response(method=b"POST")
            elapsed = loop.time() - started
        finally:
            await client.close()
    assert response.status_code == 200
    assert response.body == b'{"size":800}'
    assert elapsed > grace


async def test_shutdown_gives_a_body_still_arriving_only_the_keep_alive_timeout(serve):
    loop = asyncio.get_running_loop()
    # fast enough for the rate rule (100 bytes/s): without shutdown it would go on for minutes
    async with serve(
        make_app(),
        timeout_keep_alive=TIMEOUT,
        min_body_rate=100,
        timeout_graceful_shutdown=20,
    ) as server:
        client = await RawClient.connect(server.port)
        await client.send(body_head(500_000))
        trickler = asyncio.create_task(trickle(client, b"z" * 500_000, piece=50, every=0.05))
        try:
            await asyncio.sleep(TIMEOUT * 2)  # well into the body, past the grace
            started = loop.time()
            shutdown = asyncio.create_task(server.shutdown())
            response = await client.read_response(method=b"POST", timeout=5)
            async with asyncio.timeout(5):
                assert await shutdown == 0
            elapsed = loop.time() - started
        finally:
            trickler.cancel()
            await asyncio.gather(trickler, return_exceptions=True)
            await client.close()
    assert response.status_code == 408
    assert b"shut down" in response.body
    assert elapsed < 3, elapsed


async def test_a_partial_head_pipelined_behind_a_request_gets_408_after_the_head_timeout(serve):
    loop = asyncio.get_running_loop()
    async with serve(make_app(), timeout_keep_alive=TIMEOUT) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hel")
            started = loop.time()
            first = await client.read_response()
            assert first.status_code == 200
            second = await client.read_response(timeout=5)
            elapsed = loop.time() - started
            assert second.status_code == 408
            assert b"request head not received" in second.body
        finally:
            await client.close()
    assert TIMEOUT * 0.8 <= elapsed < 2.5, elapsed


def read_one_response(sock: socket.socket) -> bytes:
    """Everything up to the end of one small response with a content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return head + b"\r\n\r\n" + rest


def keep_alive_request_during_a_stall(
    port: int, timeout: float, blocking: threading.Event, *, served_on_arrival: bool = False
) -> bytes:
    """In a thread, since the server's loop (this test's loop) will be blocked.

    A keep-alive client gets a response, then, while another connection's
    handler blocks the loop past its idle deadline, sends its next request in
    time. Returns what the client reads back for that second request (or the
    error it got instead).

    The timings make the connection's one deadline timer due exactly at the
    idle deadline: armed at accept for accept + timeout, it fires there and
    re-arms itself for the deadline of the wait after the first response
    (sent at timeout / 2), which falls inside the stall.

    With `served_on_arrival`, the blocking request comes on a connection whose
    task already waits for its next request, so rawbg serves it from
    ``data_received`` (rawbg/server/arrival.py); otherwise on a new connection, from
    the connection task.
    """
    hello = request_bytes("GET", "/hello")
    with contextlib.ExitStack() as sockets:
        keeper = sockets.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        if served_on_arrival:
            blocker = sockets.enter_context(
                socket.create_connection(("127.0.0.1", port), timeout=10)
            )
        time.sleep(timeout / 2)
        keeper.sendall(hello)
        assert read_one_response(keeper).startswith(b"HTTP/1.1 200")
        if served_on_arrival:
            blocker.sendall(hello)
            assert read_one_response(blocker).startswith(b"HTTP/1.1 200")
        time.sleep(timeout * 0.6)  # past the first timer: it has re-armed for the deadline
        if not served_on_arrival:
            blocker = sockets.enter_context(
                socket.create_connection(("127.0.0.1", port), timeout=10)
            )
        blocker.sendall(request_bytes("GET", "/block"))
        assert blocking.wait(10), "the blocking handler never started"
        # the loop is blocked now, before the keeper's idle deadline (1.5 x timeout)
        keeper.sendall(hello)
        assert read_one_response(blocker).startswith(b"HTTP/1.1 200")
        try:
            return read_one_response(keeper)
        except ConnectionError as exc:
            return repr(exc).encode()


async def test_a_request_sent_in_time_is_answered_after_the_loop_was_blocked(serve):
    timeout = 1.0
    blocking = threading.Event()
    # the loop wakes at about 1.1 + 1.5 = 2.6 x timeout, past the idle deadline
    app = make_app(block_seconds=1.5 * timeout, blocking=blocking)
    async with serve(app, timeout_keep_alive=timeout) as server:
        second = await asyncio.to_thread(
            keep_alive_request_during_a_stall, server.port, timeout, blocking
        )
    assert second.startswith(b"HTTP/1.1 200"), second
    assert second.endswith(b'{"hello":"world"}')


async def test_a_request_sent_in_time_is_answered_after_a_block_in_a_request_served_on_arrival(
    serve,
):
    # The same stall, but the blocking handler runs inside data_received. On uvloop the
    # keeper's request, sent well before its idle deadline, was reset unread (issue 24
    # defect 3): libuv runs the due idle timer before it reads the input.
    timeout = 1.0
    blocking = threading.Event()
    app = make_app(block_seconds=1.5 * timeout, blocking=blocking)
    async with serve(app, timeout_keep_alive=timeout) as server:
        second = await asyncio.to_thread(
            keep_alive_request_during_a_stall,
            server.port,
            timeout,
            blocking,
            served_on_arrival=True,
        )
    assert second.startswith(b"HTTP/1.1 200"), second
    assert second.endswith(b'{"hello":"world"}')


async def test_a_normal_client_is_served_while_body_tricklers_fill_the_connection_limit(serve):
    # Issue 24 saw 10 of 63 normal requests refused (503) during a flood of 1,005 body
    # tricklers. The rate rule cuts each trickler at the end of its grace; until then the
    # limit was theirs. At the limit, the server makes room (the connection furthest
    # behind the minimum rate is cut) rather than refuse: this client must be served
    # well before the tricklers' grace is over.
    grace = 3.0
    limit = 3
    async with serve(
        make_app(), limit_concurrency=limit, timeout_keep_alive=grace, min_body_rate=1024
    ) as server:
        tricklers = [await RawClient.connect(server.port) for _ in range(limit)]
        trickling = []
        try:
            for client in tricklers:
                await client.send(body_head(100_000))
                # 20 bytes/s: never a stall, and far behind 1 KiB/s from the start
                trickling.append(
                    asyncio.create_task(trickle(client, b"x" * 100_000, piece=1, every=0.05))
                )
            await asyncio.sleep(grace / 3)
            normal = await RawClient.connect(server.port)
            try:
                await normal.send(request_bytes("GET", "/hello"))
                response = await normal.read_response(timeout=grace / 3)
            finally:
                await normal.close()
        finally:
            for task in trickling:
                task.cancel()
            await asyncio.gather(*trickling, return_exceptions=True)
            for client in tricklers:
                await client.close()
    assert response.status_code == 200, (response.status_code, response.body)
    assert response.body == b'{"hello":"world"}'


async def test_at_the_limit_the_body_furthest_behind_the_rate_is_cut_with_408_and_the_rest_go_on(
    serve,
):
    grace = 3.0
    async with serve(
        make_app(), limit_concurrency=2, timeout_keep_alive=grace, min_body_rate=1024
    ) as server:
        slow = await RawClient.connect(server.port)
        steady = await RawClient.connect(server.port)
        await slow.send(body_head(10_000))
        await steady.send(body_head(4_000))
        tasks = [
            asyncio.create_task(trickle(slow, b"x" * 10_000, piece=1, every=0.05)),  # 20 B/s
            asyncio.create_task(trickle(steady, b"y" * 4_000, piece=200, every=0.05)),  # 4 KB/s
        ]
        try:
            await asyncio.sleep(0.5)
            newcomer = await RawClient.connect(server.port)
            await newcomer.send(request_bytes("GET", "/hello"))
            served = await newcomer.read_response(timeout=grace / 3)
            cut = await slow.read_response(timeout=grace / 3)
            finished = await steady.read_response(timeout=grace)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in (slow, steady, newcomer):
                await client.close()
    assert served.status_code == 200
    assert cut.status_code == 408 and b"cut to make room" in cut.body, cut.body
    assert (finished.status_code, finished.body) == (200, b'{"size":4000}')


async def test_at_the_limit_without_a_minimum_rate_a_new_connection_still_gets_503(serve):
    async with serve(make_app(), limit_concurrency=1, min_body_rate=0) as server:
        slow = await RawClient.connect(server.port)
        await slow.send(body_head(1000) + b"x")
        await asyncio.sleep(0.2)
        newcomer = await RawClient.connect(server.port)
        try:
            busy = await newcomer.read_response(timeout=3)
        finally:
            await newcomer.close()
            await slow.close()
    assert busy.status_code == 503
