"""The response head: every field goes to h11 pre-checked, by rawbg's own rule.

`Response.head_fields` checks the fields the app set (`header_field`, the one
rule), so the connection skips h11's validation of every field
(benchmarks/README.md: 38k of 608k instructions per request), and a response
with no field of the app's (`Response.own_fields_only`) is written in one join.
These tests hold the things those shortcuts rely on.
"""

from __future__ import annotations

import h11
import pytest

from rawbg import App, JSONResponse, PlainTextResponse, Response
from rawbg.wire import response_bytes as h11_shortcut
from tests.support.wire import RawClient, request_bytes, split_head


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
    [
        JSONResponse({"a": 1}),
        PlainTextResponse("hi"),
        Response(b"x", media_type="image/png"),
        Response(b"x", headers={"X-A": "1", "set-cookie": "a=1", "x-tab": "a\tb é"}),
        Response(b"x", headers={"Content-Length": "1", "connection": "close"}),
    ],
    ids=repr,
)
def test_h11_writes_pre_checked_fields_exactly_as_checked_ones(response):
    # If an h11 upgrade drops or changes its `_parsed` shortcut, this fails.
    assert head_bytes(response, parsed=True) == head_bytes(response, parsed=False)


def test_only_a_response_without_fields_of_the_apps_takes_the_one_join_path():
    assert Response(b"x").own_fields_only
    assert not Response(b"x", headers={"x-a": "1"}).own_fields_only


@pytest.mark.parametrize("media_type", ["text/plain\r\nx-injected: 1", "a\nb", "a\x00b", " a"])
def test_a_media_type_that_is_not_a_header_value_is_refused(media_type):
    with pytest.raises(ValueError, match=r"header 'content-type': .* cannot be sent"):
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
            await client.send(request_bytes("GET", "/evil", headers={"connection": "close"}))
            received = await client.read_all()
        finally:
            await client.close()
        assert received.startswith(b"HTTP/1.1 500 ")  # not a silent close (issue 29)
        assert b"x-injected" not in received
        client = await RawClient.connect(server.port)
        try:  # the server goes on serving
            await client.send(request_bytes("GET", "/fine", headers={"connection": "close"}))
            status_line, _, body = split_head(await client.read_all())
        finally:
            await client.close()
    assert status_line == b"HTTP/1.1 200 OK"
    assert body == b"fine"


REQUESTS = {
    "GET keep-alive": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST keep-alive": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "client closes": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "DELETE": b"DELETE /a HTTP/1.1\r\nHost: x\r\n\r\n",
}


def answered(request: bytes) -> h11.Connection:
    h = h11.Connection(h11.SERVER)
    h.receive_data(request)
    while type(h.next_event()) is not h11.EndOfMessage:
        pass
    return h


@pytest.mark.parametrize("request_bytes_", REQUESTS.values(), ids=REQUESTS.keys())
@pytest.mark.parametrize("status", [200, 201, 404, 500])
def test_the_shortcut_writes_h11s_bytes_and_leaves_h11_in_h11s_state(request_bytes_, status):
    # If an h11 upgrade drops the private parts the shortcut needs, or changes
    # what it writes, this fails (rawbg.wire.response_bytes).
    assert h11_shortcut.AVAILABLE
    response = JSONResponse({"detail": "x"}, status_code=status)
    fields = [*response.head_fields(), (b"server", b"rawbg")]
    by_h11, by_us = answered(request_bytes_), answered(request_bytes_)
    expected = by_h11.send(h11.Response(status_code=status, headers=list(fields), reason=b"R"))
    expected += by_h11.send(h11.Data(data=response.body))
    expected += by_h11.send(h11.EndOfMessage())
    written = h11_shortcut.send_whole_response(
        by_us, status_code=status, reason=b"R", fields=list(fields), body=response.body
    )
    assert written == expected
    assert (by_us.our_state, by_us.their_state) == (by_h11.our_state, by_h11.their_state)
    if by_us.our_state is h11.DONE:  # keep-alive: both start the next cycle alike
        by_us.start_next_cycle()
        by_h11.start_next_cycle()
        assert by_us.states == by_h11.states


@pytest.mark.parametrize(
    ("request_bytes_", "status"),
    [
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET / HTTP/1.0\r\n\r\n", 200),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 204),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 304),
    ],
    ids=["HEAD", "HTTP/1.0", "204", "304"],
)
def test_the_shortcut_leaves_special_framing_to_h11(request_bytes_, status):
    h = answered(request_bytes_)
    fields = [(b"content-length", b"0")]
    assert (
        h11_shortcut.send_whole_response(h, status_code=status, reason=b"", fields=fields, body=b"")
        is None
    )
    assert h.our_state is h11.SEND_RESPONSE  # untouched: h.send can still answer


@pytest.mark.parametrize("request_bytes_", REQUESTS.values(), ids=REQUESTS.keys())
def test_a_connection_close_of_ours_is_written_as_h11_writes_it(request_bytes_):
    # the server is stopping: its last response says so, whatever the client asked
    fields = [(b"content-length", b"2"), (b"connection", b"close"), (b"server", b"rawbg")]
    by_h11, by_us = answered(request_bytes_), answered(request_bytes_)
    expected = by_h11.send(h11.Response(status_code=200, headers=list(fields), reason=b"OK"))
    expected += by_h11.send(h11.Data(data=b"{}")) + by_h11.send(h11.EndOfMessage())
    written = h11_shortcut.send_whole_response(
        by_us, status_code=200, reason=b"OK", fields=list(fields), body=b"{}"
    )
    assert written == expected
    assert by_us.states == by_h11.states
