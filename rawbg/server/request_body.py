"""`BodyReader`: a request's body, read from the connection as the app asks for it.

The connection does not read a body before the handler. It gives the
`Request` a `BodyReader` (the request's `rawbg.requests.BodySource`), and each
`receive` takes the next piece out of h11, waiting for the socket only when
h11 has nothing: no piece is read ahead of the app, and the protocol stops
reading the socket once `INPUT_HIGH_WATER` bytes are waiting
(rawbg/wire/protocol.py), so a body the app reads slowly is held back by TCP,
not by memory. What the app does with the pieces decides what is held: the
whole body for JSON (bounded by the route's ``max_body_size``), one field or
one write batch for a form (rawbg/forms.py), nothing for ``request.stream()``.

The rules of a body being read are the connection's (`Connection._body_deadline`):
a stall of ``timeout_keep_alive``, an average rate under ``min_body_rate`` once
that grace is over (counting only the time spent waiting for the client, not
the time the app spent on what it had), and shutdown. ``100 Continue`` is sent
when the app first reads, so a route that answers without the body (a 401, a
413 on the declared length) never makes the client send it.

Once the response is sent, the connection ends the reader (`end`): the rest
of a body nobody read is dropped if it is small (`DRAIN_LIMIT`), else the
connection closes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import h11

from rawbg.errors import BodyTooLarge, MalformedRequest, RequestTimeout

# After the response, the rest of a body the app did not read is read and
# dropped if at most this much is left, so that the connection can carry the
# next request; more, and the connection closes instead (lingering, so that the
# client still reads the response). 64 KiB is one read of the socket: a small
# form or JSON body a handler ignored costs nothing, a large upload it refused
# is not received for nothing.
DRAIN_LIMIT = 64 * 1024


class BodyWire(Protocol):
    """What a `BodyReader` asks of its connection (`rawbg.server.connection.Connection`)."""

    def next_body_event(self) -> h11.Event | type[h11.NEED_DATA]:
        """h11's next event of the body; a parse error becomes a refusal (400)."""
        ...

    async def wait_for_body(self, deadline: float) -> bool:
        """Wait for more input until loop time `deadline`; False if the deadline came first."""
        ...

    def body_deadline(self, started: float, received: int, now: float) -> tuple[float, str]:
        """When the body must have grown by, and the rule that says so."""
        ...

    def send_continue(self) -> None:
        """Send ``100 Continue``: the client waits for it before sending the body."""
        ...

    def body_complete(self) -> None:
        """The body has ended: the next byte to arrive starts the next request's clock."""
        ...


class BodyReader:
    """The body of the request being served, as a `rawbg.requests.BodySource`."""

    __slots__ = (
        "_declared",
        "_ended",
        "_expects_continue",
        "_first",
        "_received",
        "_started",
        "_waited",
        "_wire",
        "complete",
        "limit",
    )

    def __init__(
        self,
        wire: BodyWire,
        first: bytes,
        *,
        limit: int,
        declared: int | None,
        expects_continue: bool,
    ) -> None:
        self._wire = wire
        self._expects_continue = expects_continue  # the client waits for 100 Continue
        self._first = first  # body bytes h11 already gave while the head was read
        #: the most bytes the body may have (the server's, then the route's ``max_body_size``)
        self.limit = limit
        self._declared = declared  # Content-Length, or None (chunked)
        self._received = 0
        self._waited = 0.0  # seconds spent waiting for the client, for the rate rule
        self._started = False
        self._ended = False  # the response was sent: the app reads no more
        #: the whole body was read (h11 gave its EndOfMessage)
        self.complete = False

    async def receive(self) -> bytes:
        """The next piece of the body, ``b""`` at its end: `rawbg.requests.BodySource`."""
        if self.complete:
            return b""
        if self._ended:
            raise RuntimeError("the request body can no longer be read: its response was sent")
        if not self._started:
            self._start()
        first = self._first
        if first:
            self._first = b""
            return self._count(first)
        return await self._next()

    def _start(self) -> None:
        self._started = True
        declared = self._declared
        if declared is not None and declared > self.limit:
            raise BodyTooLarge(f"body of {declared} bytes exceeds {self.limit}")
        self._wire.send_continue()

    def _count(self, data: bytes) -> bytes:
        self._received += len(data)
        if self._received > self.limit:
            raise BodyTooLarge(f"body exceeds {self.limit} bytes")
        return data

    async def _next(self) -> bytes:
        wire = self._wire
        loop = asyncio.get_running_loop()
        while True:
            event = wire.next_body_event()
            if type(event) is h11.Data:
                return self._count(event.data)
            if type(event) is h11.EndOfMessage:
                self.complete = True
                wire.body_complete()
                return b""
            if event is not h11.NEED_DATA:
                raise MalformedRequest(f"unexpected {type(event).__name__} in a request body")
            now = loop.time()
            deadline, rule = wire.body_deadline(now - self._waited, self._received, now)
            if now >= deadline:
                raise RequestTimeout(rule)
            arrived = await wire.wait_for_body(deadline)
            self._waited += loop.time() - now
            if not arrived:
                raise RequestTimeout(rule)

    def end(self) -> bool:
        """The response was sent: the app reads no more. True if the body needs no more
        reading (complete), False if the connection must drain it or close."""
        self._ended = True
        return self.complete

    def will_not_drain(self) -> bool:
        """The app left a rest that `drain` would not read: more than `DRAIN_LIMIT` declared,
        or a body the client holds back until ``100 Continue``, which never came. The
        response then says ``Connection: close``."""
        if self.complete:
            return False
        if not self._started and self._expects_continue:
            return True
        declared = self._declared
        return declared is not None and declared - self._received - len(self._first) > DRAIN_LIMIT

    async def drain(self) -> bool:
        """Read and drop the rest of the body, if at most `DRAIN_LIMIT` is left; True if
        it ended (the connection may carry another request)."""
        if self.will_not_drain():
            return False
        self._started = True
        self.limit = self._received + len(self._first) + DRAIN_LIMIT
        self._count(self._first)
        self._first = b""
        while await self._next():
            pass
        return True
