"""Connections on the wire: keep-alive, pipelining, close, HEAD, 100-continue, framing."""

import asyncio
import re
import time
from email.utils import parsedate_to_datetime

import pytest

from rawbg import App, PlainTextResponse, Request, StreamingResponse
from tests.support.wire import WAIT, RawClient, request_bytes, split_head

# RFC 7231 7.1.1.1 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT"
)

PIECES = [b"first piece|", b"second|", b"third and last"]


def make_app(log=None) -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return PlainTextResponse("hello world")

    @app.get("/slow")
    async def slow():
        if log is not None:
            log.append("slow start")
        await asyncio.sleep(0.1)
        if log is not None:
            log.append("slow end")
        return PlainTextResponse("slow")

    @app.get("/mid")
    async def mid():
        if log is not None:
            log.append("mid start")
        await asyncio.sleep(0.03)
        if log is not None:
            log.append("mid end")
        return PlainTextResponse("mid")

    @app.get("/fast")
    async def fast():
        if log is not None:
            log.append("fast")
        return PlainTextResponse("fast")

    @app.get("/item")
    async def item():
        return {"name": "widget", "price": 42}

    @app.post("/echo")
    async def echo(request: Request):
        return PlainTextResponse(await request.body())

    @app.get("/stream")
    async def stream():
        async def pieces():
            for piece in PIECES:
                await asyncio.sleep(0)
                yield piece

        return StreamingResponse(pieces(), media_type="text/plain")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("kaboom")

    return app


# -- keep-alive and pipelining ---------------------------------------------------


async def test_keep_alive_two_requests_on_one_connection(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello"))
            first = await client.read_response()
            assert first.status_code == 200
            assert first.body == b"hello world"
            assert first.headers.get("connection", "").lower() != "close"

            await client.send(request_bytes("GET", "/item"))
            second = await client.read_response()
            assert second.status_code == 200
            assert second.body == b'{"name":"widget","price":42}'
            assert second.headers["content-type"] == "application/json"

            # still open: the server does not close a keep-alive connection
            assert not await client.is_closed_by_server(timeout=0.2)
            await client.send(request_bytes("GET", "/fast"))
            third = await client.read_response()
            assert (third.status_code, third.body) == (200, b"fast")
        finally:
            await client.close()


async def test_pipelined_requests_are_answered_in_order_one_at_a_time(serve):
    log: list[str] = []
    async with serve(make_app(log)) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("GET", "/slow")
                + request_bytes("GET", "/fast")
                + request_bytes("GET", "/mid")
            )
            bodies = [(await client.read_response()).body for _ in range(3)]
            assert bodies == [b"slow", b"fast", b"mid"]
            # one at a time: each handler ran only after the previous one returned
            assert log == ["slow start", "slow end", "fast", "mid start", "mid end"]
            assert not await client.is_closed_by_server(timeout=0.1)
        finally:
            await client.close()


async def test_pipelined_responses_arrive_in_order_on_the_raw_socket(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("GET", "/slow")
                + request_bytes("GET", "/fast")
                + request_bytes("GET", "/mid", headers={"connection": "close"})
            )
            data = await client.read_all()
        finally:
            await client.close()
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 3
    first = data.index(b"\r\n\r\nslow")
    second = data.index(b"\r\n\r\nfast")
    third = data.index(b"\r\n\r\nmid")
    assert first < second < third
    assert data.endswith(b"\r\n\r\nmid")


# -- closing -----------------------------------------------------------------------


async def test_http_1_0_request_is_answered_then_closed(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello", version="1.0"))
            response = await client.read_response()
            assert response.status_code == 200
            assert response.body == b"hello world"
            assert response.headers["content-length"] == "11"
            assert await client.is_closed_by_server()
        finally:
            await client.close()


async def test_connection_close_on_http_1_1_is_answered_then_closed(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello", headers={"connection": "close"}))
            response = await client.read_response()
            assert response.status_code == 200
            assert response.body == b"hello world"
            assert response.headers["connection"].lower() == "close"
            assert await client.is_closed_by_server()
        finally:
            await client.close()


async def test_requests_pipelined_after_connection_close_are_not_answered(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("GET", "/hello", headers={"connection": "close"})
                + request_bytes("GET", "/fast")
            )
            data = await client.read_all()
        finally:
            await client.close()
    status, headers, rest = split_head(data)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"connection"].lower() == b"close"
    assert rest == b"hello world"  # the pipelined GET /fast got nothing


# -- HEAD ----------------------------------------------------------------------------


async def test_head_on_a_get_route_has_the_get_headers_and_no_body(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/item", headers={"connection": "close"}))
            get_data = await client.read_all()
        finally:
            await client.close()
        client = await RawClient.connect(server.port)
        try:
            # HEAD, then a GET pipelined right behind it on the same connection
            await client.send(
                request_bytes("HEAD", "/item")
                + request_bytes("GET", "/hello", headers={"connection": "close"})
            )
            data = await client.read_all()
        finally:
            await client.close()

    get_status, get_headers, get_body = split_head(get_data)
    assert get_status == b"HTTP/1.1 200 OK"
    assert get_body == b'{"name":"widget","price":42}'
    assert get_headers[b"content-length"] == b"%d" % len(get_body)

    head_status, head_headers, rest = split_head(data)
    assert head_status == b"HTTP/1.1 200 OK"
    assert head_headers[b"content-length"] == get_headers[b"content-length"]
    ignore = {b"date", b"connection"}
    assert {k: v for k, v in head_headers.items() if k not in ignore} == {
        k: v for k, v in get_headers.items() if k not in ignore
    }
    # no body at all: the next response's status line follows the HEAD's head at once
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    next_status, next_headers, next_body = split_head(rest)
    assert next_status == b"HTTP/1.1 200 OK"
    assert next_headers[b"content-length"] == b"11"
    assert next_body == b"hello world"


async def test_head_then_get_on_keep_alive_parse_with_an_http_client(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("HEAD", "/hello") + request_bytes("GET", "/item"))
            head = await client.read_response(method=b"HEAD")
            get = await client.read_response()
        finally:
            await client.close()
    assert head.status_code == 200
    assert head.body == b""
    assert head.headers["content-length"] == "11"
    assert head.headers["content-type"] == "text/plain; charset=utf-8"
    assert get.status_code == 200
    assert get.body == b'{"name":"widget","price":42}'


# -- Expect: 100-continue --------------------------------------------------------


async def test_expect_100_continue_is_answered_before_the_body_is_sent(serve):
    body = b"the body, sent only after 100 Continue"
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            head = request_bytes(
                "POST",
                "/echo",
                headers={"expect": "100-continue", "content-length": str(len(body))},
            )
            await client.send(head)
            interim = b""
            async with asyncio.timeout(WAIT):
                while b"\r\n\r\n" not in interim:
                    more = await client.reader.read(65536)
                    assert more, "server closed instead of sending 100 Continue"
                    interim += more
            assert interim.startswith(b"HTTP/1.1 100")
            assert interim.endswith(b"\r\n\r\n")
            assert b"HTTP/1.1 2" not in interim  # no final response before the body
            await client.send(body)
            response = await client.read_response(method=b"POST")
            assert response.status_code == 200
            assert response.body == body
            # the connection is still usable
            await client.send(request_bytes("GET", "/fast"))
            assert (await client.read_response()).body == b"fast"
        finally:
            await client.close()


async def test_100_continue_has_its_reason_phrase(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes(
                    "POST", "/echo", headers={"expect": "100-continue", "content-length": "3"}
                )
            )
            interim = b""
            async with asyncio.timeout(WAIT):
                while b"\r\n\r\n" not in interim:
                    more = await client.reader.read(65536)
                    assert more
                    interim += more
            await client.send(b"abc")
            assert (await client.read_response(method=b"POST")).body == b"abc"
        finally:
            await client.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")


async def test_expect_100_continue_over_the_body_limit_gets_413_without_100(serve):
    async with serve(make_app(), max_body_size=1000) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes(
                    "POST", "/echo", headers={"expect": "100-continue", "content-length": "1001"}
                )
            )
            data = await client.read_all()
        finally:
            await client.close()
    assert b" 100 " not in data.split(b"\r\n", 1)[0]
    assert b"Continue" not in data
    status, headers, body = split_head(data)
    assert status.startswith(b"HTTP/1.1 413 ")
    assert len(status) > len(b"HTTP/1.1 413 ")  # with a reason phrase
    assert headers[b"content-type"].startswith(b"text/plain")
    assert int(headers[b"content-length"]) == len(body)
    assert body.strip()


# -- request and response framing -------------------------------------------------


async def test_chunked_request_body_is_reassembled(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/echo", headers={"transfer-encoding": "chunked"})
            )
            await client.send(b"5\r\nhello\r\n")
            await client.send(b"1\r\n \r\n")
            await client.send(b"a;ext=1\r\nchunked wo\r\n3\r\nrld\r\n")
            await client.send(b"0\r\n\r\n")
            response = await client.read_response(method=b"POST")
            assert response.status_code == 200
            assert response.body == b"hello chunked world"
            assert response.headers["content-length"] == str(len(b"hello chunked world"))
            # the connection carries on after a chunked body
            await client.send(request_bytes("GET", "/fast"))
            assert (await client.read_response()).body == b"fast"
        finally:
            await client.close()


async def test_streaming_response_is_chunked_to_an_http_1_1_client(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/stream"))
            response = await client.read_response()
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
            assert response.body == b"".join(PIECES)
            # keep-alive survives a chunked response
            assert not await client.is_closed_by_server(timeout=0.1)
            await client.send(request_bytes("GET", "/fast"))
            assert (await client.read_response()).body == b"fast"
        finally:
            await client.close()


async def test_streaming_response_raw_chunks_end_with_the_terminating_chunk(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/stream", headers={"connection": "close"}))
            data = await client.read_all()
        finally:
            await client.close()
    status, headers, rest = split_head(data)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"transfer-encoding"] == b"chunked"
    expected = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in PIECES) + b"0\r\n\r\n"
    assert rest == expected


async def test_streaming_response_is_close_delimited_to_an_http_1_0_client(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/stream", version="1.0"))
            data = await client.read_all()  # returns only once the server closes
        finally:
            await client.close()
    status, headers, body = split_head(data)
    assert status.startswith(b"HTTP/1.1 200 ")
    assert b"content-length" not in headers
    assert b"transfer-encoding" not in headers
    assert body == b"".join(PIECES)


# -- common headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_request", "status", "reason"),
    [
        (request_bytes("GET", "/hello"), 200, b"OK"),
        (request_bytes("GET", "/stream"), 200, b"OK"),
        (request_bytes("GET", "/nowhere"), 404, b"Not Found"),
        (request_bytes("DELETE", "/hello"), 405, b"Method Not Allowed"),
        (request_bytes("GET", "/boom"), 500, b"Internal Server Error"),
        (b"GET /hello HTTP/1.1\r\nno colon here\r\n\r\n", 400, b"Bad Request"),
    ],
)
async def test_every_response_has_date_server_and_reason(serve, raw_request, status, reason):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(raw_request)
            response = await client.read_response()
        finally:
            await client.close()
    assert response.status_code == status
    assert response.reason == reason
    assert response.headers["server"] == "rawbg"
    date = response.headers["date"]
    assert IMF_FIXDATE.fullmatch(date), date
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5
