"""Server-sent events: `EventSourceResponse` and `ServerSentEvent` (FastAPI's ``fastapi.sse``).

A generator handler on a route with ``response_class=EventSourceResponse``
streams each item it yields as one event of the ``text/event-stream`` format
(the HTML standard's "Server-sent events" section): a `ServerSentEvent` as the
fields it sets, anything else as ``data:`` holding its JSON. While the
generator has nothing to send for `EventSourceResponse.ping_interval` seconds,
a ``: ping`` comment goes out, so that proxies do not drop an idle stream and
a client that left is noticed. The routing side (`rawbg.app.streaming`) turns
the items into bytes; this module is the format and the response class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

from rawbg.encoders import jsonable_encoder
from rawbg.responses import StreamingResponse

__all__ = ["KEEPALIVE_COMMENT", "EventSourceResponse", "ServerSentEvent", "format_sse_event"]

#: what goes out when the generator is idle: a comment, which clients ignore
KEEPALIVE_COMMENT = b": ping\n\n"


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` body; as a route's ``response_class``, its generator's events.

    Sent with ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` (nginx
    then passes each event on at once), as FastAPI does.
    """

    media_type = "text/event-stream"
    #: seconds without an event before a keep-alive comment is sent. FastAPI's is
    #: 15 s: under the 30-60 s idle timeouts of common proxies and load balancers
    ping_interval: ClassVar[float] = 15.0


def _single_line(value: str | None, field: str) -> str | None:
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError(f"SSE {field!r} must be a single line")
    return value


class ServerSentEvent:
    """One event: ``data`` (sent as JSON) or ``raw_data`` (sent as it is), and its fields.

    ``event`` names the event type (the browser's ``addEventListener``),
    ``id`` is what the browser sends back as ``Last-Event-ID`` when it
    reconnects, ``retry`` its reconnection delay in milliseconds, ``comment``
    a comment line (ignored by clients). Checked as FastAPI checks them:
    ``event`` and ``id`` on one line, no NUL in ``id``, ``retry`` not negative,
    not both ``data`` and ``raw_data``; a `ValueError` otherwise.
    """

    __slots__ = ("comment", "data", "event", "id", "raw_data", "retry")

    def __init__(
        self,
        *,
        data: Any = None,
        raw_data: str | None = None,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        if data is not None and raw_data is not None:
            raise ValueError(
                "Cannot set both 'data' and 'raw_data' on the same ServerSentEvent: 'data' is "
                "sent as JSON, 'raw_data' as it is"
            )
        if id is not None and "\0" in id:
            raise ValueError("SSE 'id' must not contain null characters")
        if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int)):
            raise ValueError(f"SSE 'retry' must be an integer of milliseconds, not {retry!r}")
        if retry is not None and retry < 0:
            raise ValueError("SSE 'retry' must be 0 or more")
        self.data = data
        self.raw_data = raw_data
        self.event = _single_line(event, "event")
        self.id = _single_line(id, "id")
        self.retry = retry
        self.comment = comment

    def encode(self) -> bytes:
        """This event in the wire format."""
        if self.raw_data is not None:
            data: str | None = self.raw_data
        elif self.data is not None:
            dump = getattr(self.data, "model_dump_json", None)  # a pydantic model, compact
            data = dump() if dump is not None else json_text(self.data)
        else:
            data = None
        return format_sse_event(
            data_str=data, event=self.event, id=self.id, retry=self.retry, comment=self.comment
        )

    def __repr__(self) -> str:
        fields = (f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"ServerSentEvent({', '.join(f for f in fields if not f.endswith('=None'))})"


def json_text(value: Any) -> str:
    """`value` as FastAPI's stream items without a declared type: ``json.dumps`` of its
    JSON types, with NaN and infinities as null."""
    return json.dumps(_finite(jsonable_encoder(value)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _lines(value: str) -> list[str]:
    # the format's line ends are \r\n, \r and \n; an empty last line is kept
    return value.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def format_sse_event(
    *,
    data_str: str | None = None,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One event from data already serialised: its lines, then the blank line that ends it."""
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" for line in _lines(comment))
    if event is not None:
        lines.append(f"event: {event}")
    if data_str is not None:
        lines.extend(f"data: {line}" for line in _lines(data_str))
    if id is not None:
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    lines.append("\n")
    return "\n".join(lines).encode("utf-8")


async def with_pings(events: AsyncIterator[bytes], interval: float) -> AsyncGenerator[bytes, None]:
    """`events`, with `KEEPALIVE_COMMENT` whenever none came for `interval` seconds.

    The wait for the next event is never cancelled by the timer (the
    generator would be finalised); only closing this generator cancels it.
    """
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield KEEPALIVE_COMMENT
                continue
            step, pending = pending, None
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
