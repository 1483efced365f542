"""From h11 events to bytes: the two paths, and the only ones.

* `events_to_bytes`: events sent through ``h11.Connection.send``, joined. The
  general path (a streamed body, a refusal, ``100 Continue``, the test
  client's requests).
* `send_whole_response`: a whole response written by rawbg instead of h11,
  with h11's state kept exact. The common case, below.

For the common response (a complete body, fields rawbg built itself, an
HTTP/1.1 client, not HEAD, not 204/304), h11's ``send`` of the head, the body
and the end of the message validates the fields twice, works out framing and
``Connection: close`` the connection already knows, and serialises piece by
piece: about a quarter of the instructions of the benchmark request
(benchmarks/README.md). Here the bytes are one join, and h11's state machine
still sees the Response and EndOfMessage events, so its states, keep-alive and
the next cycle are exactly as if ``send`` had been called.

That needs h11's private parts, and only this module touches them: the
connection's ``_process_event``, ``_cstate.keep_alive`` and
``_request_method``, and the ``_parsed=True`` keyword of its events, which
skips re-validating fields rawbg checked itself (`response_start`). When any is
missing (a future h11), `AVAILABLE` is False: every response goes through
``h11.Connection.send``, its fields validated by h11. tests/wire/test_response_head.py
fails in that case, and also if the bytes written here differ from h11's own
(docs/ARCHITECTURE.md, "The private attributes rawbg uses").
"""

from __future__ import annotations

from typing import Any

import h11

# as h11 writes it when it decides the connection closes: title case, last
CLOSE = (b"Connection", b"close")


def _has_private_parts() -> bool:
    """Whether this h11 has every private part used here (the docstring lists them)."""
    probe = h11.Connection(h11.SERVER)
    if not all(hasattr(probe, name) for name in ("_process_event", "_cstate", "_request_method")):
        return False
    if not hasattr(probe._cstate, "keep_alive"):
        return False
    try:
        h11.Response(status_code=200, headers=[], reason=b"OK", _parsed=True)
    except TypeError:
        return False
    return True


AVAILABLE = _has_private_parts()


def send_whole_response(
    h: h11.Connection,
    *,
    status_code: int,
    reason: bytes,
    fields: list[tuple[bytes, bytes]],
    body: bytes,
) -> bytes | None:
    """The bytes of the response, h11 moved to its end; None: use ``h.send`` instead.

    `fields` must be checked already and hold ``content-length``. If the
    connection will close, ``Connection: close`` ends the fields, as h11 does.
    """
    private: Any = h
    if (
        not AVAILABLE
        or h.their_http_version != b"1.1"
        or private._request_method in (b"HEAD", b"CONNECT")  # framing of their own
        or status_code < 200
        or status_code in (204, 304)
    ):
        return None
    closing = (b"connection", b"close") in fields  # the server is stopping
    if not private._cstate.keep_alive:
        fields = [field for field in fields if field[0] != b"connection"]
        fields.append(CLOSE)
        closing = True
    private._process_event(h11.SERVER, response_event(status_code, reason, closing=closing))
    private._process_event(h11.SERVER, END_OF_MESSAGE)
    lines = [status_line(status_code, reason)]
    lines += [b"%s: %s\r\n" % field for field in fields]
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


#: h11's events are immutable and its state machine keeps none of them, so
#: the ones it is shown for the common response are made once, not per request
END_OF_MESSAGE = h11.EndOfMessage()
_response_events: dict[tuple[int, bytes, bool], h11.Response] = {}


def response_event(status_code: int, reason: bytes, *, closing: bool) -> h11.Response:
    """The Response event h11's state machine is shown for a whole response.

    What it reads of one is its status and whether it closes the connection
    (framing only picks the writer, which is not used here).
    """
    key = (status_code, reason, closing)
    event = _response_events.get(key)
    if event is None:
        headers = [CLOSE] if closing else []
        event = h11.Response(status_code=status_code, headers=headers, reason=reason, _parsed=True)
        _response_events[key] = event
    return event


def response_start(
    status_code: int, reason: bytes, fields: list[tuple[bytes, bytes]], *, checked: bool
) -> h11.Response:
    """The Response event that starts a response sent through h11.

    `checked`: the fields passed rawbg's rule already (`Response.head_fields`:
    the app's by `rawbg.datastructures.header_field`, rawbg's own by
    construction), so h11 need not validate them again.
    """
    if checked and AVAILABLE:
        return h11.Response(status_code=status_code, headers=fields, reason=reason, _parsed=True)
    return h11.Response(status_code=status_code, headers=fields, reason=reason)


def events_to_bytes(h: h11.Connection, *events: h11.Event) -> bytes:
    """The bytes of `events`, sent through h11 one after the other (the general path)."""
    return b"".join([h.send(event) or b"" for event in events])


_status_lines: dict[tuple[int, bytes], bytes] = {}


def status_line(status_code: int, reason: bytes) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``, made once per status and reason."""
    key = (status_code, reason)
    line = _status_lines.get(key)
    if line is None:
        line = _status_lines[key] = b"HTTP/1.1 %d %s\r\n" % key
    return line
