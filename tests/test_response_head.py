"""The response head: rawbg's own fields go to h11 pre-checked, the app's are checked.

`Response.fields_checked` lets the connection skip h11's validation of fields
rawbg built itself (benchmarks/README.md: 38k of 608k instructions per request).
These tests hold the two things that shortcut relies on.
"""

from __future__ import annotations

import h11
import pytest

from rawbg import App, JSONResponse, PlainTextResponse, Response
from tests.wire import RawClient, request_bytes, split_head


def head_bytes(response: Response, *, parsed: bool) -> bytes:
    h = h11.Connection(h11.SERVER)
    h.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    h.next_event()
    event = h11.Response(
        status_code=response.status_code,
        headers=response.head_fields(),
        reason=b"OK",
        _parsed=parsed,
    )
    return h.send(event) or b""


@pytest.mark.parametrize(
    "response",
    [JSONResponse({"a": 1}), PlainTextResponse("hi"), Response(b"x", media_type="image/png")],
    ids=repr,
)
def test_h11_writes_pre_checked_fields_exactly_as_checked_ones(response):
    # If an h11 upgrade drops or changes its `_parsed` shortcut, this fails.
    assert response.fields_checked
    assert head_bytes(response, parsed=True) == head_bytes(response, parsed=False)


def test_fields_the_app_set_are_left_to_h11_to_check():
    assert not Response(b"x", headers={"x-a": "1"}).fields_checked


@pytest.mark.parametrize("media_type", ["text/plain\r\nx-injected: 1", "a\nb", "a\x00b", " a"])
def test_a_media_type_that_is_not_a_header_value_is_refused(media_type):
    with pytest.raises(ValueError, match="not a valid header value"):
        Response(b"x", media_type=media_type).head_fields()


async def test_a_crlf_in_a_media_type_injects_no_header_on_the_wire(serve):
    app = App()

    @app.get("/evil")
    async def evil():
        return Response(b"x", media_type="text/plain\r\nx-injected: 1")

    @app.get("/fine")
    async def fine():
        return PlainTextResponse("fine")

    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("GET", "/evil"))
            received = await client.read_all()
        finally:
            await client.close()
        assert b"x-injected" not in received
        client = await RawClient.connect(server.port)
        try:  # the server goes on serving
            await client.send(request_bytes("GET", "/fine", headers={"connection": "close"}))
            status_line, _, body = split_head(await client.read_all())
        finally:
            await client.close()
    assert status_line == b"HTTP/1.1 200 OK"
    assert body == b"fine"
