"""RFC 9112 conformance of the request path, over a real socket (issue 9, items 5-12).

docs/server-behavior.md ("Malformed requests") says what rawbg answers to each
class of malformed request; each rule is pinned here in raw bytes.
"""

import asyncio
import json
import tomllib
from typing import Any

import h11
import pytest

from rawbg import App, PlainTextResponse, Request
from tests.support import REPO
from tests.support.wire import RawClient, assert_refused, request_bytes, split_head

KiB = 1024


def make_app() -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return PlainTextResponse("hello world")

    @app.post("/echo")
    async def echo(request: Request):
        return PlainTextResponse(await request.body())

    @app.post("/raw-json")
    async def raw_json(request: Request):
        document = await request.json()
        return {"type": type(document).__name__}

    @app.post("/typed")
    async def typed(items: list[Any]):  # a bare list is uploaded files to FastAPI
        return {"length": len(items)}

    @app.delete("/things/{name}")
    async def delete_thing(name: str):
        return {"deleted": name}

    return app


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `data`, then read everything until the server closes."""
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        return await client.read_all(timeout=timeout)
    finally:
        await client.close()


def status_of(data: bytes) -> int:
    status_line, _, _ = split_head(data)
    return int(status_line.split(b" ")[1])


async def still_serving(port: int) -> None:
    client = await RawClient.connect(port)
    try:
        await client.send(request_bytes("GET", "/hello"))
        response = await client.read_response()
        assert (response.status_code, response.body) == (200, b"hello world")
    finally:
        await client.close()


# -- item 5: a refused HEAD still gets its status line and headers -------------------------


def head_request(headers: str, body: bytes = b"") -> bytes:
    return b"HEAD /hello HTTP/1.1\r\nhost: x\r\n" + headers.encode() + b"\r\n" + body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head_request("content-length: 2000\r\n"), 413),
        (head_request("content-length: 5\r\ntransfer-encoding: chunked\r\n"), 400),
        (head_request("content-length: 10\r\n", b"abc"), 408),
    ],
    ids=["413-declared-body", "400-cl-and-te", "408-stalled-body"],
)
async def test_refused_head_request_gets_status_line_and_headers_without_a_body(serve, raw, status):
    async with serve(make_app(), max_body_size=1000, timeout_keep_alive=0.5) as server:
        data = await exchange(server.port, raw)
        status_line, headers, rest = split_head(data)
        assert int(status_line.split(b" ")[1]) == status
        assert headers[b"connection"] == b"close"
        assert int(headers[b"content-length"]) > 0  # the length a GET would have had
        assert rest == b"", "a response to HEAD has no body"
        await still_serving(server.port)


# -- item 6: deeply nested JSON is the client's error, not a 500 ------------------------------


async def post_json(port: int, path: str, body: bytes) -> tuple[int, object]:
    client = await RawClient.connect(port)
    try:
        json_type = {"content-type": "application/json"}
        await client.send(request_bytes("POST", path, headers=json_type, body=body))
        response = await client.read_response()
    finally:
        await client.close()
    return response.status_code, json.loads(response.body)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["arrays", "objects"])
async def test_deeply_nested_json_through_request_json_gets_400(serve, opener):
    async with serve(make_app()) as server:
        status, document = await post_json(server.port, "/raw-json", opener * 100_000)
        assert status == 400
        assert "nested" in document["detail"]
        await still_serving(server.port)


async def test_deeply_nested_json_for_a_typed_body_gets_422(serve):
    async with serve(make_app()) as server:
        status, document = await post_json(server.port, "/typed", b"[" * 100_000 + b"]" * 100_000)
        assert status == 422
        [error] = document["detail"]
        assert (error["loc"], error["type"]) == (["body"], "json_invalid")
        assert error["msg"] == "JSON decode error"  # FastAPI's words; the reason is in ctx
        assert "nested" in error["ctx"]["error"]


async def test_json_nested_within_the_limit_and_brackets_in_strings_are_accepted(serve):
    nested = b"[" * 100 + b"]" * 100
    brackets_in_a_string = b'["' + b"[{" * 5000 + b'\\"", [[1]]]'
    async with serve(make_app()) as server:
        assert await post_json(server.port, "/raw-json", nested) == (200, {"type": "list"})
        assert await post_json(server.port, "/typed", brackets_in_a_string) == (
            200,
            {"length": 2},
        )


# -- item 8: Transfer-Encoding that does not end in one `chunked` ------------------------------


def post_with_transfer_encoding(*values: str) -> bytes:
    fields = "".join(f"transfer-encoding: {value}\r\n" for value in values)
    return (f"POST /echo HTTP/1.1\r\nhost: x\r\n{fields}\r\n5\r\nhello\r\n0\r\n\r\n").encode()


@pytest.mark.parametrize(
    "values",
    [
        ("chunked, gzip",),
        ("chunked, chunked",),
        ("",),
        (",chunked",),
        ("chunked,",),
        ("gzip,, chunked",),
        ("chunked", "chunked"),
        ("gzip", "chunked"),
    ],
    ids=[
        "chunked-not-last",
        "chunked-twice",
        "empty",
        "leading-comma",
        "trailing-comma",
        "empty-element",
        "two-fields",
        "two-fields-chunked-last",
    ],
)
async def test_transfer_encoding_without_one_final_chunked_gets_400_and_close(serve, values):
    async with serve(make_app()) as server:
        data = await exchange(server.port, post_with_transfer_encoding(*values))
        assert_refused(data, 400)
        assert b"hello" not in split_head(data)[2]
        await still_serving(server.port)


@pytest.mark.parametrize("value", ["gzip", "GZIP", "gzip, chunked", "x-custom, chunked"])
async def test_a_coding_rawbg_does_not_implement_gets_501(serve, value):
    async with serve(make_app()) as server:
        data = await exchange(server.port, post_with_transfer_encoding(value))
        assert_refused(data, 501)


async def test_a_bad_transfer_encoding_in_a_head_trickled_byte_by_byte_gets_400(serve):
    raw = post_with_transfer_encoding("chunked, gzip")
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            for byte in range(len(raw)):
                await client.send(raw[byte : byte + 1])
                await asyncio.sleep(0.0005)
            data = await client.read_all()
        finally:
            await client.close()
    assert_refused(data, 400)


# -- item 9: HTTP versions --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "9.9", "0.9"])
async def test_a_major_version_other_than_1_gets_505(serve, version):
    async with serve(make_app()) as server:
        data = await exchange(server.port, request_bytes("GET", "/hello", version=version))
        assert_refused(data, 505)
        await still_serving(server.port)


async def test_http_1_2_is_served_as_1_1(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello", version="1.2"))
            response = await client.read_response()
            assert (response.status_code, response.body) == (200, b"hello world")
            # keep-alive, as for 1.1
            await client.send(request_bytes("GET", "/hello", version="1.2"))
            assert (await client.read_response()).status_code == 200
        finally:
            await client.close()


async def test_http_1_2_without_host_gets_400_as_1_1_would(serve):
    async with serve(make_app()) as server:
        data = await exchange(server.port, b"GET /hello HTTP/1.2\r\n\r\n")
        assert_refused(data, 400)


# -- item 10: the Host header -----------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "user@example.com",
        "example.com/path",
        "a, b",
        "a,b",
        "exa mple.com",
        "example.com:80a",
        "example.com:80:81",
        "[::1",
        "[not-an-ip]",
        "::1",
        "exa%zzmple.com",
        # an origin-form target has an authority, so an empty Host names no server
        # (issue 24; it was served before, as RFC 9112 3.2's no-authority case)
        "",
    ],
)
async def test_an_invalid_host_gets_400_and_close(serve, host):
    async with serve(make_app()) as server:
        data = await exchange(server.port, request_bytes("GET", "/hello", headers={"host": host}))
        assert_refused(data, 400)
        await still_serving(server.port)


async def test_two_host_fields_get_400(serve):
    raw = b"GET /hello HTTP/1.1\r\nhost: a\r\nhost: a\r\n\r\n"
    async with serve(make_app()) as server:
        assert_refused(await exchange(server.port, raw), 400)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "EXAMPLE.com:8080",
        "127.0.0.1:80",
        "[::1]:8000",
        "[2001:db8::1]",
        "[v1.fe80::a+en1]",
        "xn--bcher-kva.example",
        "my_host-1.local:",
        "a%20b",
    ],
)
async def test_a_valid_host_is_served(serve, host):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/hello", headers={"host": host}))
            response = await client.read_response()
        finally:
            await client.close()
        assert response.status_code == 200


# -- item 11: asterisk-form and CONNECT -------------------------------------------------------


async def test_options_asterisk_is_answered_by_the_server_with_allow(serve):
    async with serve(make_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n")
            response = await client.read_response(method=b"OPTIONS")
            assert response.status_code == 200
            allowed = response.headers["allow"].split(", ")
            assert allowed == ["DELETE", "GET", "HEAD", "OPTIONS", "POST"]
            assert response.headers["content-length"] == "0"
            # the connection stays usable
            await client.send(request_bytes("GET", "/hello"))
            assert (await client.read_response()).status_code == 200
        finally:
            await client.close()


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
async def test_asterisk_target_with_another_method_gets_400(serve, method):
    async with serve(make_app()) as server:
        data = await exchange(server.port, f"{method} * HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        status_line, headers, _ = split_head(data)
        assert int(status_line.split(b" ")[1]) == 400
        assert headers[b"connection"] == b"close"


async def test_connect_gets_501_and_close(serve):
    raw = b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
    async with serve(make_app()) as server:
        assert_refused(await exchange(server.port, raw), 501)
        await still_serving(server.port)


# -- item 12: h11's floor, and any h11 exception is a 400 ----------------------------------


def test_h11_floor_excludes_versions_with_cve_2025_43859():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    [h11_requirement] = [r for r in pyproject["project"]["dependencies"] if r.startswith("h11")]
    assert h11_requirement == "h11>=0.16.0"


async def test_any_exception_h11_raises_while_parsing_is_a_400(serve, monkeypatch, caplog):
    real_next_event = h11.Connection.next_event

    def next_event(self):
        if b"x-break-the-parser" in self.trailing_data[0]:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return real_next_event(self)

    monkeypatch.setattr(h11.Connection, "next_event", next_event)
    async with serve(make_app()) as server:
        raw = request_bytes("GET", "/hello", headers={"x-break-the-parser": "1"})
        assert_refused(await exchange(server.port, raw), 400)
        await still_serving(server.port)
    assert "internal error" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_bad_chunk_terminator_cannot_smuggle_a_request(serve):
    smuggled = request_bytes("GET", "/hello")
    raw = (
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhelloXX0\r\n\r\n" + smuggled
    )
    async with serve(make_app()) as server:
        data = await exchange(server.port, raw)
        assert_refused(data, 400)
        assert b"hello world" not in data
