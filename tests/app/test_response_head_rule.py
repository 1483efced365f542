"""Issue 29: every header the app can set obeys one rule, checked before a byte is sent.

A header the app set that HTTP cannot carry (CR or LF, another control
character, a name that is not a token, a value that is not latin-1), a status
outside 200-999, or a ``content-length`` that is not the body's: the client
gets a 500 and the log names the route and the header. Never a silent close,
never an injected header, and the connection carries the next request.
Over a real socket, in raw bytes, on the suite's loop (RAWBG_TEST_LOOP).
"""

from __future__ import annotations

import logging
from typing import Any

import h11
import pytest
from hypothesis import given, settings, strategies as st

from rawbg import (
    App,
    BackgroundTasks,
    HTTPException,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from rawbg.datastructures import header_field
from rawbg.errors import InvalidResponseHead
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes

INJECTION = "a\r\nSet-Cookie: evil=1"


def echo_app() -> App:
    """One route per way the app can set a header; each puts `v` where it says."""
    app = App()

    @app.get("/headers")
    async def headers_argument(v: str):
        return PlainTextResponse("ok", headers={"x-echo": v})

    @app.get("/media-type")
    async def media_type(v: str):
        return Response(content=b"x", media_type=v)

    @app.get("/media-type-attribute")
    async def media_type_attribute(v: str):
        response = PlainTextResponse("ok")
        response.media_type = v
        return response

    @app.get("/assigned")
    async def assigned(v: str):
        response = PlainTextResponse("ok")
        response.headers["x-echo"] = v
        return response

    @app.get("/appended")
    async def appended(v: str):
        response = PlainTextResponse("ok")
        response.headers.append("x-echo", v)
        return response

    @app.get("/parameter")
    async def parameter(v: str, response: Response):
        response.headers["x-echo"] = v
        return {"ok": True}

    @app.get("/name")
    async def name(v: str):
        return PlainTextResponse("ok", headers={v: "1"})

    @app.get("/cookie-path")
    async def cookie_path(v: str):
        response = PlainTextResponse("ok")
        response.set_cookie("session", "1", path=v)
        return response

    @app.get("/cookie-domain")
    async def cookie_domain(v: str, response: Response):
        response.set_cookie("session", "1", domain=v)
        return {"ok": True}

    @app.get("/streaming")
    async def streaming(v: str):
        async def pieces():
            yield b"never sent"

        return StreamingResponse(pieces(), headers={"x-echo": v})

    @app.get("/error")
    async def error(v: str):
        raise HTTPException(status_code=403, detail="no", headers={"x-echo": v})

    @app.get("/middleware")
    async def middleware_route():
        return {"ok": True}

    @app.middleware("http")
    async def add_header(request, call_next):
        response = await call_next(request)
        if request.path == "/middleware":
            response.headers["x-from-middleware"] = request.query_params["v"]
        return response

    return app


def quoted(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


#: (route, the header the log must name, the bad value)
CASES = [
    ("/headers", "x-echo", INJECTION),
    ("/headers", "x-echo", "a\nb"),
    ("/headers", "x-echo", "a\rb"),
    ("/headers", "x-echo", "a\x00b"),
    ("/headers", "x-echo", "a\x7fb"),
    ("/headers", "x-echo", " leading space"),
    ("/headers", "x-echo", "café ✓"),
    ("/media-type", "content-type", INJECTION),
    ("/media-type-attribute", "content-type", "text/plain\nx-a: 1"),
    ("/assigned", "x-echo", INJECTION),
    ("/appended", "x-echo", "a\nb"),
    ("/parameter", "x-echo", INJECTION),
    ("/name", "x echo", "x echo"),
    ("/name", "x-a:b", "x-a:b"),
    ("/name", "x-a\r\nx-b", "x-a\r\nx-b"),
    ("/cookie-path", "set-cookie", "/\r\nx-evil: 1"),
    ("/cookie-domain", "set-cookie", "example.com\nx-evil: 1"),
    ("/streaming", "x-echo", INJECTION),
    ("/error", "x-echo", INJECTION),
    ("/middleware", "x-from-middleware", INJECTION),
]


@pytest.mark.parametrize(("route", "header", "value"), CASES)
async def test_an_invalid_header_is_a_500_naming_the_route_and_the_header(
    caplog: Any, route: str, header: str, value: str
) -> None:
    caplog.set_level(logging.ERROR, logger="rawbg.app")
    async with serve_app(echo_app()) as served:
        client = await RawClient.connect(served.port)  # type: ignore[arg-type]
        try:
            await client.send(request_bytes("GET", f"{route}?v={quoted(value)}"))
            response = await client.read_response()
            assert (response.status_code, response.body) == (500, b"Internal Server Error")
            assert "set-cookie" not in response.headers
            assert "x-evil" not in response.headers
            # the connection stays open and serves the next request
            await client.send(request_bytes("GET", "/headers?v=fine"))
            again = await client.read_response()
            assert (again.status_code, again.headers["x-echo"]) == (200, "fine")
        finally:
            await client.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "rawbg.app"]
    label = "GET /middleware" if route == "/middleware" else f"GET {route}"
    named = [line for line in lines if label in line and repr(header) in line]
    assert named, lines


async def test_the_raw_bytes_of_the_500_carry_no_injected_line() -> None:
    async with serve_app(echo_app()) as served:
        client = await RawClient.connect(served.port)  # type: ignore[arg-type]
        try:
            request = request_bytes("GET", f"/headers?v={quoted(INJECTION)}", headers={})
            await client.send(request.replace(b"HTTP/1.1", b"HTTP/1.1", 1))
            data = await client.read_some()
        finally:
            await client.close()
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"evil" not in data.lower()


async def test_a_head_request_with_an_invalid_header_is_a_500_too() -> None:
    async with serve_app(echo_app()) as client:
        response = await client.head(f"/headers?v={quoted(INJECTION)}")
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("status", [42, 99, 101, 1000])
async def test_a_status_code_http_cannot_send_is_a_500_naming_the_route(
    caplog: Any, status: int
) -> None:
    caplog.set_level(logging.ERROR, logger="rawbg.app")
    app = App()

    @app.get("/status")
    async def odd_status():
        return Response(b"x", status_code=status)

    async with serve_app(app) as client:
        response = await client.get("/status")
    assert response.status_code == 500
    lines = [r.getMessage() for r in caplog.records if r.name == "rawbg.app"]
    assert any("GET /status" in line and str(status) in line for line in lines), lines


@pytest.mark.parametrize(
    ("value", "why"),
    [("5", "the body has 2 bytes"), ("abc", "not a number"), ("1, 2", "not a number")],
)
async def test_a_content_length_that_is_not_the_bodys_is_a_500(
    caplog: Any, value: str, why: str
) -> None:
    caplog.set_level(logging.ERROR, logger="rawbg.app")
    app = App()

    @app.get("/length")
    async def length():
        return PlainTextResponse("ok", headers={"content-length": value})

    async with serve_app(app) as client:
        response = await client.get("/length")
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    lines = [r.getMessage() for r in caplog.records if r.name == "rawbg.app"]
    assert any("'content-length'" in line and why in line for line in lines), lines


async def test_a_content_length_equal_to_the_body_is_sent_as_given() -> None:
    app = App()

    @app.get("/length")
    async def length():
        return PlainTextResponse("ok", headers={"Content-Length": "2"})

    async with serve_app(app) as served:
        client = await RawClient.connect(served.port)  # type: ignore[arg-type]
        try:
            await client.send(request_bytes("GET", "/length"))
            data = await client.read_some()
        finally:
            await client.close()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.lower().count(b"content-length") == 1
    assert data.endswith(b"\r\n\r\nok")


async def test_valid_values_the_rule_allows_are_sent_as_given() -> None:
    app = App()
    values = {
        "x-tab": "a\tb",
        "x-latin": "café",
        "x-empty": "",
        "x-visible": "!#$%&'*+-.^_`|~ \"(),/:;<=>?@[\\]{}",
    }

    @app.get("/fine")
    async def fine(response: Response):
        response.set_cookie("session", "a b", path="/x", domain="example.com")
        return PlainTextResponse("ok", headers=values)

    async with serve_app(app) as client:
        response = await client.get("/fine")
    assert response.status_code == 200
    for name, value in values.items():
        assert response.headers[name] == value


async def test_the_invalid_response_background_tasks_are_dropped_and_its_cleanup_runs(
    caplog: Any,
) -> None:
    from rawbg import Depends

    events: list[str] = []

    async def resource():
        yield "r"
        events.append("cleaned up")

    app = App()

    @app.get("/tasks")
    async def with_tasks(tasks: BackgroundTasks, r: str = Depends(resource)):
        tasks.add_task(events.append, "task ran")
        return PlainTextResponse("ok", headers={"x-echo": INJECTION})

    async with serve_app(app) as client:
        response = await client.get("/tasks")
        assert response.status_code == 500
        await client.wait_for_background()
    assert events == ["cleaned up"]
    assert any("discarding 1 background task" in r.getMessage() for r in caplog.records)


# Draws from the characters that matter: controls, whitespace, separators, latin-1, beyond.
_CHARS = st.sampled_from(list('aZ0-_ \t\r\n\x00\x01\x7f:;"é\xff\x80✓(,'))


@settings(max_examples=400, deadline=None)
@given(name=st.text(_CHARS, max_size=6), value=st.text(_CHARS, max_size=8))
def test_every_field_the_rule_lets_through_is_one_h11_accepts(name: str, value: str) -> None:
    # The connection hands h11 the fields unchecked (`_parsed=True`): the rule
    # must be at least as strict as h11's own validation, or h11 would raise
    # while the response is sent instead of the app answering 500.
    try:
        field = header_field(name, value)
    except InvalidResponseHead:
        return
    h11.Response(status_code=200, headers=[field], reason=b"OK")
