"""Refused requests and failures on the wire: status, short body, polite close, no crash."""

import asyncio
import logging
import socket
import struct

import h11
import pytest

from rawbg import App, PlainTextResponse, Request, StreamingResponse
from rawbg.server.connection import Phase
from tests.support.wire import WAIT, RawClient, request_bytes, split_head

KiB = 1024
MiB = 1024 * KiB


def make_app(events=None) -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return PlainTextResponse("hello world")

    @app.post("/echo")
    async def echo(request: Request):
        return PlainTextResponse(await request.body())

    @app.get("/fail")
    async def fail():
        raise RuntimeError("secret internal detail 8d1f")

    @app.get("/broken-stream")
    async def broken_stream():
        async def pieces():
            yield b"first piece"
            await asyncio.sleep(0)
            raise RuntimeError("the stream broke")

        return StreamingResponse(pieces(), media_type="text/plain")

    @app.get("/slow")
    async def slow():
        events["started"].set()
        await events["release"].wait()
        return PlainTextResponse("slow done")

    return app


def parse_one_response(data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Exactly one response with a content-length body, and nothing after it."""
    status_line, headers, rest = split_head(data)
    length = int(headers[b"content-length"])
    assert len(rest) == length, f"expected a body of {length} bytes and nothing more: {rest!r}"
    return status_line, headers, rest


def assert_rejection(data: bytes, status: int) -> bytes:
    """A refusal: `status` with a reason, a short plain-text body, connection: close."""
    status_line, headers, body = parse_one_response(data)
    version, code, reason = status_line.split(b" ", 2)
    assert (version, int(code)) == (b"HTTP/1.1", status), status_line
    assert reason, "status line without a reason phrase"
    assert headers[b"content-type"].startswith(b"text/plain")
    assert headers[b"connection"].lower() == b"close"
    assert headers[b"server"] == b"rawbg"
    assert b"date" in headers
    assert 0 < len(body.strip()) < 200
    assert b"Traceback" not in body
    return body


async def send_and_read_to_close(port: int, data: bytes) -> bytes:
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        return await client.read_all()  # returns only when the server closes
    finally:
        await client.close()


async def wait_for_no_tasks(server) -> None:
    async with asyncio.timeout(WAIT):
        while server.connection_tasks:
            await asyncio.sleep(0.02)


async def wait_for_phase(server, phase: Phase):
    async with asyncio.timeout(WAIT):
        while True:
            for connection in server.connections:
                if connection.phase is phase:
                    return connection
            await asyncio.sleep(0.005)


async def still_serving(port: int) -> None:
    client = await RawClient.connect(port)
    try:
        await client.send(request_bytes("GET", "/hello"))
        response = await client.read_response()
        assert (response.status_code, response.body) == (200, b"hello world")
    finally:
        await client.close()


# -- malformed requests ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nhost: x\r\nthis is not a header\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
        b"GET /hello HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    ],
    ids=["request-line", "header-line", "content-length", "no-host"],
)
async def test_malformed_request_gets_400_then_close(serve, raw):
    async with serve(make_app()) as server:
        data = await send_and_read_to_close(server.port, raw)
        assert_rejection(data, 400)
        await still_serving(server.port)


async def test_a_request_after_a_malformed_one_on_the_same_connection_is_not_answered(serve):
    async with serve(make_app()) as server:
        data = await send_and_read_to_close(
            server.port, b"NOT HTTP\r\n\r\n" + request_bytes("GET", "/hello")
        )
    assert_rejection(data, 400)  # exactly one response, nothing after it


# -- head size -----------------------------------------------------------------------


async def test_head_over_the_limit_in_one_write_gets_431(serve):
    async with serve(make_app(), max_head_size=8192) as server:
        raw = request_bytes("GET", "/hello", headers={"x-big": "a" * (20 * KiB)})
        assert raw.endswith(b"\r\n\r\n")  # a complete head, in one sendall
        data = await send_and_read_to_close(server.port, raw)
        assert_rejection(data, 431)
        await still_serving(server.port)


async def test_head_over_the_limit_trickled_in_gets_431(serve):
    async with serve(make_app(), max_head_size=8192) as server:
        raw = request_bytes("GET", "/hello", headers={"x-big": "a" * (20 * KiB)})
        client = await RawClient.connect(server.port)
        try:
            for start in range(0, len(raw), 512):
                await client.send(raw[start : start + 512])
                await asyncio.sleep(0.001)  # separate reads on the server side
            data = await client.read_all()
        finally:
            await client.close()
        assert_rejection(data, 431)
        await still_serving(server.port)


async def test_head_just_under_the_limit_is_served(serve):
    async with serve(make_app(), max_head_size=8192) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello", headers={"x-big": "a" * 7000}))
            response = await client.read_response()
        finally:
            await client.close()
    assert (response.status_code, response.body) == (200, b"hello world")


# -- framing -------------------------------------------------------------------------


async def test_content_length_with_transfer_encoding_gets_400_then_close(serve):
    async with serve(make_app()) as server:
        raw = (
            request_bytes(
                "POST",
                "/echo",
                headers={"content-length": "5", "transfer-encoding": "chunked"},
            )
            + b"5\r\nhello\r\n0\r\n\r\n"
        )
        data = await send_and_read_to_close(server.port, raw)
        body = assert_rejection(data, 400)
        assert b"hello" not in body
        await still_serving(server.port)


@pytest.mark.parametrize("coding", ["gzip", "gzip, chunked", "identity"])
async def test_unsupported_transfer_coding_gets_501(serve, coding):
    async with serve(make_app()) as server:
        raw = request_bytes("POST", "/echo", headers={"transfer-encoding": coding})
        data = await send_and_read_to_close(server.port, raw + b"5\r\nhello\r\n0\r\n\r\n")
        assert_rejection(data, 501)


# -- body size -------------------------------------------------------------------------


async def test_declared_body_over_the_limit_gets_413_before_the_body_is_sent(serve):
    async with serve(make_app(), max_body_size=1000) as server:
        client = await RawClient.connect(server.port)
        try:
            # only the head: the answer must come without a byte of the body
            await client.send(request_bytes("POST", "/echo", headers={"content-length": "1001"}))
            data = await client.read_all()
        finally:
            await client.close()
        assert_rejection(data, 413)
        await still_serving(server.port)


async def test_declared_body_at_the_limit_is_accepted(serve):
    async with serve(make_app(), max_body_size=1000) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/echo", body=b"z" * 1000))
            response = await client.read_response(method=b"POST")
        finally:
            await client.close()
    assert (response.status_code, response.body) == (200, b"z" * 1000)


async def test_chunked_body_growing_past_the_limit_gets_413(serve):
    async with serve(make_app(), max_body_size=1000) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/echo", headers={"transfer-encoding": "chunked"})
            )
            for _ in range(4):  # 1200 bytes, and no terminating chunk
                await client.send(b"12c\r\n" + b"c" * 300 + b"\r\n")
            data = await client.read_all()
        finally:
            await client.close()
        assert_rejection(data, 413)
        await still_serving(server.port)


async def test_lingering_close_lets_a_client_still_sending_read_the_413(serve):
    """The client writes 2 MB of a declared 10 MB body before it reads at all."""
    async with serve(make_app()) as server:  # default max_body_size: 1 MiB
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/echo", headers={"content-length": str(10 * MiB)})
            )
            piece = b"x" * (64 * KiB)
            async with asyncio.timeout(WAIT):
                for _ in range(32):  # 2 MiB, answered or not
                    await client.send(piece)
            # only now read: a reset would have destroyed the response
            data = await client.read_all()
        finally:
            await client.close()
        assert_rejection(data, 413)
        await still_serving(server.port)


async def test_lingering_close_with_a_raw_socket_reading_while_writing(serve):
    async with serve(make_app(), max_body_size=1000) as server:
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setblocking(False)
        try:
            head = request_bytes("POST", "/echo", headers={"content-length": str(10 * MiB)})
            received = bytearray()

            async def reader():
                while chunk := await loop.sock_recv(sock, 65536):
                    received.extend(chunk)

            async with asyncio.timeout(WAIT):
                reading = asyncio.create_task(reader())
                await loop.sock_sendall(sock, head)
                for _ in range(24):  # 1.5 MiB of body while the 413 is on its way
                    await loop.sock_sendall(sock, b"y" * (64 * KiB))
                await reading  # EOF from the server, no ConnectionResetError
        finally:
            sock.close()
        assert_rejection(bytes(received), 413)


# -- handler failures --------------------------------------------------------------------


async def test_handler_exception_gets_a_generic_500_and_the_traceback_is_logged(serve, caplog):
    caplog.set_level(logging.ERROR, logger="rawbg.app")
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/fail"))
            response = await client.read_response()
            assert response.status_code == 500
            assert response.reason == b"Internal Server Error"
            assert response.body == b"Internal Server Error"
            assert response.headers["content-type"].startswith("text/plain")
            # the same connection goes on serving
            await client.send(request_bytes("GET", "/hello"))
            after = await client.read_response()
            assert (after.status_code, after.body) == (200, b"hello world")
        finally:
            await client.close()
    for secret in (b"Traceback", b"RuntimeError", b"secret internal detail"):
        assert secret not in response.body
    records = [r for r in caplog.records if r.name == "rawbg.app"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "secret internal detail 8d1f" in caplog.text
    assert "Traceback" in caplog.text


async def test_streaming_body_that_fails_is_truncated_and_the_connection_closed(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("GET", "/broken-stream") + request_bytes("GET", "/hello")
            )
            data = await client.read_all()  # the server closes the connection
        finally:
            await client.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"b\r\nfirst piece\r\n"  # the first chunk, no terminating 0-chunk
        assert not body.endswith(b"0\r\n\r\n")
        assert b"hello world" not in data  # the pipelined request was not answered
        await still_serving(server.port)


async def test_streaming_failure_makes_an_http_client_see_a_truncated_response(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/broken-stream"))
            with pytest.raises(h11.RemoteProtocolError):  # no terminating chunk, then EOF
                await client.read_response()
        finally:
            await client.close()


# -- clients that go away -------------------------------------------------------------------


def disconnect(sock: socket.socket, how: str) -> None:
    if how == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def wait_until_server_sees_the_close(connection) -> None:
    protocol = connection.io
    async with asyncio.timeout(WAIT):
        while not (protocol.eof or protocol.closed):
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_client_disconnecting_mid_body_does_not_hurt_the_server(serve, how):
    async with serve(make_app()) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.sendall(
                request_bytes("POST", "/echo", headers={"content-length": "1000"}) + b"p" * 100
            )
            await wait_for_phase(server, Phase.READING_BODY)
        finally:
            disconnect(sock, how)
        await wait_for_no_tasks(server)
        await still_serving(server.port)
        await wait_for_no_tasks(server)


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_client_disconnecting_during_a_slow_handler_does_not_hurt_the_server(serve, how):
    events = {"started": asyncio.Event(), "release": asyncio.Event()}
    async with serve(make_app(events)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.sendall(request_bytes("GET", "/slow"))
            async with asyncio.timeout(WAIT):
                await events["started"].wait()
            connection = await wait_for_phase(server, Phase.HANDLING)
            (task,) = server.connection_tasks
        finally:
            disconnect(sock, how)
        await wait_until_server_sees_the_close(connection)
        events["release"].set()  # the handler returns only after the client has gone
        done, _ = await asyncio.wait({task}, timeout=WAIT)
        assert task in done
        assert task.exception() is None
        await wait_for_no_tasks(server)
        await still_serving(server.port)
        await wait_for_no_tasks(server)


@pytest.mark.parametrize(
    "how",
    ["fin", "reset"],
)
async def test_connection_task_ends_cleanly_when_the_client_goes_mid_body(serve, how):
    async with serve(make_app()) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.sendall(request_bytes("POST", "/echo", headers={"content-length": "1000"}) + b"p")
            await wait_for_phase(server, Phase.READING_BODY)
            (task,) = server.connection_tasks
        finally:
            disconnect(sock, how)
        done, _ = await asyncio.wait({task}, timeout=WAIT)
        assert task in done
        assert task.exception() is None
