"""Keep-alive and head timeouts, and half-close, over a real socket.

docs/server-behavior.md: idle connections are closed after `timeout_keep_alive`
(before the first request and between requests); a head must arrive within
`timeout_keep_alive` of its first byte, trickling bytes do not extend it (408);
a half-closed client still gets its response.
"""

import asyncio

from rawbg import App, Request
from tests.support.wire import RawClient, request_bytes

TIMEOUT = 0.3


def make_app() -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    @app.post("/echo")
    async def echo(request: Request):
        return {"got": (await request.body()).decode()}

    return app


async def test_a_connection_that_never_sends_a_byte_is_closed_after_the_timeout(serve):
    loop = asyncio.get_running_loop()
    async with serve(make_app(), timeout_keep_alive=TIMEOUT) as server:
        client = await RawClient.connect(server.port)
        try:
            started = loop.time()
            # nothing is sent, and the server sends nothing either: just EOF
            assert await client.read_all(timeout=3) == b""
            elapsed = loop.time() - started
        finally:
            await client.close()
    assert 0.25 <= elapsed < 3, elapsed


async def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(serve):
    loop = asyncio.get_running_loop()
    async with serve(make_app(), timeout_keep_alive=TIMEOUT) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello"))
            response = await client.read_response()
            assert response.status_code == 200
            assert response.body == b'{"hello":"world"}'
            assert response.headers.get("connection") != "close"  # kept alive
            # the connection is still usable well within the timeout ...
            await asyncio.sleep(TIMEOUT / 3)
            await client.send(request_bytes("GET", "/hello"))
            second = await client.read_response()
            started = loop.time()
            assert second.status_code == 200
            # ... and closed, quietly, once idle for the timeout
            assert await client.read_all(timeout=3) == b""
            elapsed = loop.time() - started
        finally:
            await client.close()
    assert 0.25 <= elapsed < 3, elapsed


async def test_a_head_trickling_in_gets_408_within_the_timeout_of_its_first_byte(serve):
    loop = asyncio.get_running_loop()
    # a head that never ends: a header value that keeps growing
    head = b"GET /hello HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 10_000
    sent = 0

    async with serve(make_app(), timeout_keep_alive=TIMEOUT) as server:
        client = await RawClient.connect(server.port)

        async def trickle() -> None:
            nonlocal sent
            for byte in head:
                client.writer.write(bytes([byte]))
                sent += 1
                await asyncio.sleep(0.05)

        trickler = asyncio.create_task(trickle())
        try:
            started = loop.time()
            response = await client.read_response(timeout=3)
            elapsed = loop.time() - started
            trickler.cancel()
            assert response.status_code == 408
            assert response.reason == b"Request Timeout"
            assert response.headers["connection"] == "close"
            assert b"not received within" in response.body
            assert b"Traceback" not in response.body
            # the server has shut down its write side: EOF right after the response
            assert await client.read_all(timeout=3) == b""
        finally:
            trickler.cancel()
            await asyncio.gather(trickler, return_exceptions=True)
            await client.close()
    # bytes kept arriving every 0.05 s, and did not push the deadline back
    assert sent >= 4
    assert 0.25 <= elapsed < 3 * TIMEOUT, elapsed


async def test_a_client_that_half_closes_after_its_request_still_gets_the_response(serve):
    async with serve(make_app(), timeout_keep_alive=TIMEOUT) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/echo", body=b"hello"))
            await client.shutdown_write()
            response = await client.read_response(method=b"POST")
            assert response.status_code == 200
            assert response.body == b'{"got":"hello"}'
            assert response.headers["content-length"] == str(len(response.body))
            # then the server closes its side too (well before the idle timeout)
            assert await client.read_all(timeout=3) == b""
        finally:
            await client.close()


async def test_a_half_closed_client_gets_every_pipelined_response(serve):
    async with serve(make_app(), timeout_keep_alive=TIMEOUT) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/echo", body=b"one")
                + request_bytes("POST", "/echo", body=b"two")
            )
            await client.shutdown_write()
            first = await client.read_response(method=b"POST")
            second = await client.read_response(method=b"POST")
            assert (first.status_code, first.body) == (200, b'{"got":"one"}')
            assert (second.status_code, second.body) == (200, b'{"got":"two"}')
            assert await client.read_all(timeout=3) == b""
        finally:
            await client.close()
