"""HTTPS served by rawbg itself (rawbg/wire/tls.py), over real sockets, with Python's ssl as client.

docs/server-behavior.md, "HTTPS": the handshake must end within the head
timeout, a connection in its handshake holds no slot, plain HTTP on the port
gets a 400, and everything the server promises over plain HTTP (keep-alive,
pipelining, serving on arrival, flow control both ways, the slow-body rule,
background tasks after the flushed response, graceful shutdown) holds over
TLS. The certificates are made by the test (tests/support/certificates.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from pathlib import Path

import pytest

from rawbg import App, BackgroundTasks, Request, Response, Server
from rawbg.server.config import ServerConfig
from rawbg.server.connection import SHUTDOWN_FIRST_REQUEST_GRACE
from rawbg.wire.protocol import INPUT_HIGH_WATER
from rawbg.wire.tls import READ_SIZE
from tests.server.test_serve_arrived import served_where_it_arrived
from tests.support.certificates import Certificates, make_certificates
from tests.support.wire import WAIT, Firehose, RawClient, request_bytes


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(Path(tmp_path_factory.mktemp("certs")))


def https(certs: Certificates, **options: object) -> dict[str, object]:
    return {"ssl_certfile": str(certs.cert), "ssl_keyfile": str(certs.key), **options}


def make_app(seen: dict) -> App:
    app = App()

    @app.get("/whoami")
    async def whoami(request: Request):
        return {"scheme": request.url.scheme, "base": str(request.base_url)}

    @app.post("/echo")
    async def echo(request: Request):
        return Response(await request.body())

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    @app.get("/big")
    async def big(size: int, background_tasks: BackgroundTasks, request: Request):
        def task_started() -> None:
            seen["task_started"] = time.monotonic()
            seen["buffered_at_task_start"] = [
                connection.io.transport.get_write_buffer_size()
                for connection in seen["server"].connections
            ]

        background_tasks.add_task(task_started)
        return Response(b"x" * size, media_type="application/octet-stream")

    @app.post("/stream")
    async def stream(request: Request):
        total = 0
        async for chunk in request.stream():
            seen.setdefault("chunks", []).append(len(chunk))
            total += len(chunk)
            await asyncio.sleep(0.002)  # a slow consumer: input must pause, not pile up
        return {"size": total}

    @app.get("/where")
    async def where():
        seen.setdefault("served_on_arrival", []).append(served_where_it_arrived())
        return "ok"

    return app


async def tls_client(certs: Certificates, port: int, **context: bool) -> RawClient:
    tls = certs.client_context(**context)
    tls.set_alpn_protocols(["h2", "http/1.1"])
    return await RawClient.connect(port, tls=tls)


async def slow_reader(certs: Certificates, port: int) -> RawClient:
    """An HTTPS client whose kernel receive buffer is tiny (4 KiB): it reads only when told."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=certs.client_context(), server_hostname="127.0.0.1"
    )
    return RawClient(reader, writer)


async def test_a_request_over_tls_is_https_with_alpn_http_1_1(serve, certs):
    async with serve(make_app({}), **https(certs)) as server:
        client = await tls_client(certs, server.port)
        try:
            tls = client.writer.get_extra_info("ssl_object")
            assert tls.selected_alpn_protocol() == "http/1.1"  # h2 offered first, not taken
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            await client.send(request_bytes("GET", "/whoami"))
            response = await client.read_response()
        finally:
            await client.close()
    assert response.status_code == 200
    assert response.body == (
        b'{"scheme":"https","base":"https://127.0.0.1/"}'  # request_bytes' Host
    )


async def test_keep_alive_and_pipelined_requests_over_tls_are_answered_in_order(serve, certs):
    async with serve(make_app({}), **https(certs)) as server:
        client = await tls_client(certs, server.port)
        try:
            bodies = [b"one", b"two" * 3000, b"three"]  # the second spans records
            await client.send(b"".join(request_bytes("POST", "/echo", body=b) for b in bodies))
            answers = [(await client.read_response(method=b"POST")).body for _ in bodies]
            assert len(server.connections) == 1
            await client.send(request_bytes("POST", "/echo", body=b"four"))
            answers.append((await client.read_response(method=b"POST")).body)
        finally:
            await client.close()
    assert answers == [*bodies, b"four"]


async def test_keep_alive_requests_over_tls_are_served_where_they_arrive(serve, certs):
    seen: dict = {}
    async with serve(make_app(seen), **https(certs)) as server:
        client = await tls_client(certs, server.port)
        try:
            for _ in range(3):
                await client.send(request_bytes("GET", "/where"))
                assert (await client.read_response()).status_code == 200
        finally:
            await client.close()
    # the first request may come with the handshake's last flight, before the task waits
    assert seen["served_on_arrival"][1:] == [True, True]


async def test_a_background_task_starts_only_once_the_https_response_is_in_the_kernel(serve, certs):
    size = 4 * 1024 * 1024  # more than the kernel holds for a client that reads nothing
    seen: dict = {}
    async with serve(make_app(seen), **https(certs), timeout_keep_alive=30) as server:
        seen["server"] = server
        client = await slow_reader(certs, server.port)
        try:
            await client.send(request_bytes("GET", f"/big?size={size}"))
            await asyncio.sleep(0.3)  # not reading: the response cannot all be handed over
            assert "task_started" not in seen
            response = await client.read_response(timeout=30)
            async with asyncio.timeout(WAIT):
                while "task_started" not in seen:
                    await asyncio.sleep(0.01)
        finally:
            await client.close()
    assert len(response.body) == size
    # when the task started, no byte of the response (encrypted) was left in user space
    assert seen["buffered_at_task_start"] == [0]


async def test_a_flood_of_stalled_handshakes_holds_no_slot_and_is_cut_at_the_head_timeout(
    serve, certs
):
    timeout = 2.0
    loop = asyncio.get_running_loop()
    options = https(certs, timeout_keep_alive=timeout, limit_concurrency=10)
    async with serve(make_app({}), **options) as server:
        stalled: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        started = loop.time()
        try:
            for n in range(200):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                if n % 4 == 0:  # a quarter start a TLS record and stop there
                    writer.write(b"\x16\x03\x01\x02\x00\x01")
                stalled.append((reader, writer))
            async with asyncio.timeout(WAIT):
                while len(server.handshakes) < 200:  # all accepted, all in their handshake
                    await asyncio.sleep(0.01)
            # 200 connections, 10 slots: a real client is still served at once
            client = await tls_client(certs, server.port)
            try:
                await client.send(request_bytes("GET", "/hello"))
                assert (await client.read_response()).status_code == 200
            finally:
                await client.close()
            assert len(server.handshakes) == 200  # served while the whole flood still stood
            # then every stalled connection is closed by the server, at the head timeout
            for reader, _ in stalled:
                async with asyncio.timeout(timeout + WAIT):
                    with contextlib.suppress(ConnectionResetError):
                        assert await reader.read() == b""
            cut_after = loop.time() - started
            assert not server.handshakes
        finally:
            for _, writer in stalled:
                writer.close()
    assert timeout * 0.9 <= cut_after < timeout + 3


async def test_plain_http_to_the_tls_port_is_answered_400_and_closed(serve, certs):
    async with serve(make_app({}), **https(certs)) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello"))
            data = await client.read_all(timeout=WAIT)
        finally:
            await client.close()
        assert not server.handshakes
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in head
    assert b"https://" in body


async def test_bytes_that_are_neither_tls_nor_http_are_closed_at_once(serve, certs):
    async with serve(make_app({}), **https(certs), timeout_keep_alive=30) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(b"\x00" * 64)
            assert await client.is_closed_by_server(timeout=WAIT)
        finally:
            await client.close()


async def test_a_client_that_never_reads_an_https_response_is_cut_off_and_not_buffered_for(
    serve, certs
):
    firehose = Firehose()
    async with serve(firehose.app, **https(certs), timeout_keep_alive=0.5) as server:
        client = await slow_reader(certs, server.port)
        writer = client.writer
        writer.write(b"GET /firehose HTTP/1.1\r\nhost: x\r\n\r\n")
        try:
            async with asyncio.timeout(WAIT):
                while firehose.produced == 0:
                    await asyncio.sleep(0.01)
            async with asyncio.timeout(WAIT):
                while server.connection_tasks:  # cut off once it stopped reading for 0.5 s
                    await asyncio.sleep(0.05)
        finally:
            writer.transport.abort()
    assert firehose.produced < 200  # flow control: never drained far ahead of the socket


async def test_a_large_https_request_body_reaches_a_slow_handler_in_bounded_pieces(serve, certs):
    size = 8 * 1024 * 1024
    seen: dict = {}
    async with serve(make_app(seen), **https(certs), max_body_size=size) as server:
        client = await tls_client(certs, server.port)
        try:
            await client.send(
                request_bytes("POST", "/stream", headers={"content-length": str(size)})
            )
            piece = b"y" * (256 * 1024)
            for _ in range(size // len(piece)):
                await client.send(piece)
            response = await client.read_response(method=b"POST", timeout=60)
        finally:
            await client.close()
    assert response.body == b'{"size":%d}' % size
    # reading paused once INPUT_HIGH_WATER piled up; one decrypting read more at most
    assert max(seen["chunks"]) <= INPUT_HIGH_WATER + READ_SIZE


async def test_a_body_trickled_over_tls_gets_408_after_the_grace(serve, certs):
    grace = 0.3
    loop = asyncio.get_running_loop()
    options = https(certs, timeout_keep_alive=grace, min_body_rate=1024)
    async with serve(make_app({}), **options) as server:
        client = await tls_client(certs, server.port)
        try:
            await client.send(request_bytes("POST", "/echo", headers={"content-length": "1000"}))
            started = loop.time()

            async def trickle() -> None:
                for _ in range(1000):  # 20 bytes a second, never a stall
                    client.writer.write(b"x")
                    await asyncio.sleep(0.05)

            trickler = asyncio.create_task(trickle())
            try:
                response = await client.read_response(method=b"POST")
            finally:
                trickler.cancel()
                await asyncio.gather(trickler, return_exceptions=True)
            elapsed = loop.time() - started
        finally:
            await client.close()
    assert response.status_code == 408
    assert b"request body too slow" in response.body
    assert grace * 0.8 <= elapsed < 2.5


async def test_client_certificates_are_required_when_cert_reqs_is_2(serve, certs):
    options = https(certs, ssl_cert_reqs=2, ssl_ca_certs=str(certs.ca))
    async with serve(make_app({}), **options) as server:
        client = await tls_client(certs, server.port, with_certificate=True)
        try:
            await client.send(request_bytes("GET", "/hello"))
            assert (await client.read_response()).status_code == 200
        finally:
            await client.close()
        # without one: the handshake fails (TLS 1.3 tells the client at its first read)
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            client = await tls_client(certs, server.port)
            try:
                await client.send(request_bytes("GET", "/hello"))
                await client.read_response()
            finally:
                await client.close()


@contextlib.asynccontextmanager
async def started(app: App, **options: object):
    server = Server(app, ServerConfig(port=0, access_log=False, **options))  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        async with asyncio.timeout(WAIT):
            await server.shutdown()


async def test_shutdown_serves_a_handshake_under_way_and_cuts_a_stalled_one_after_the_grace(
    certs,
):
    release = asyncio.Event()
    running = asyncio.Event()
    app = App()

    @app.get("/slow")
    async def slow():
        running.set()
        await release.wait()
        return "slow"

    @app.get("/hello")
    async def hello():
        return "hello"

    loop = asyncio.get_running_loop()
    async with started(app, **https(certs, timeout_keep_alive=5)) as server:
        busy = await tls_client(certs, server.port)
        await busy.send(request_bytes("GET", "/slow"))
        async with asyncio.timeout(WAIT):
            await running.wait()
        # a second client sends its ClientHello, then waits (a handshake under way);
        # a third connects and sends nothing (a stalled handshake)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        writer.write(outgoing.read())
        stalled, stalled_writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(WAIT):
            while len(server.handshakes) < 2:
                await asyncio.sleep(0.01)
        stopping = asyncio.create_task(server.shutdown())
        stop_began = loop.time()
        try:
            await asyncio.sleep(SHUTDOWN_FIRST_REQUEST_GRACE / 5)
            # the handshake goes on after the stop began, and its request is served
            async with asyncio.timeout(WAIT):
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        writer.write(outgoing.read())
                        incoming.write(await reader.read(65536))
            tls.write(request_bytes("GET", "/hello"))
            writer.write(outgoing.read())
            answer = b""
            async with asyncio.timeout(WAIT):
                while b"hello" not in answer:
                    data = await reader.read(65536)
                    assert data, answer
                    incoming.write(data)
                    with contextlib.suppress(ssl.SSLWantReadError):
                        answer += tls.read(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK")
            assert b"connection: close" in answer
            # the stalled one is cut after the grace, not at the head timeout (5 s)
            async with asyncio.timeout(WAIT):
                with contextlib.suppress(ConnectionResetError):
                    assert await stalled.read() == b""
            assert loop.time() - stop_began < SHUTDOWN_FIRST_REQUEST_GRACE + 1.5
            assert not stopping.done()  # the request in flight holds it
            release.set()
            response = await busy.read_response()
            assert response.status_code == 200
            assert response.headers["connection"] == "close"
            async with asyncio.timeout(WAIT):
                assert await stopping == 0
        finally:
            release.set()
            writer.close()
            stalled_writer.close()
            await busy.close()
            await asyncio.gather(stopping, return_exceptions=True)
