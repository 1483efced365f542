"""`HttpProtocol`: the only code that touches the transport; a `ConnectionIO`.

asyncio calls these methods when bytes arrive, when the client closes, and when
the socket's send buffer fills or drains. They feed bytes to the connection's
`h11.Connection`, wake the connection task (or let the connection serve what
arrived at once: `serve_arrived`), and apply flow control in both directions.

* Input: bytes go into h11's buffer as they arrive. When more than
  `INPUT_HIGH_WATER` bytes have piled up since the connection task last asked
  for input (a client pipelining while a handler runs), reading is paused; it
  resumes when the task next needs bytes (`receive`).
* Output: `write` hands bytes to the transport. When the transport's buffer
  passes its high-water mark, asyncio calls `pause_writing` and the writer
  waits in `drain` until `resume_writing`. `flushed` waits until the buffer is
  empty, i.e. every byte of the response has been handed to the kernel.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import h11

from rawbg.errors import ClientDisconnected
from rawbg.requests import Address, client_label

if TYPE_CHECKING:
    from rawbg.wire.connection_io import ConnectionIO
    from rawbg.wire.proxy import TrustedProxies
    from rawbg.wire.raw_input import InputScanner

#: the context the deadline timers run in. They read no context variable, and
#: a timer given none copies the current context, which a cancelled timer keeps
#: until its time comes: docs/ARCHITECTURE.md, "A pending task keeps little".
_TIMER_CONTEXT = contextvars.Context()

logger = logging.getLogger("rawbg.protocol")

# A connection's first deadline timer is armed at most this far ahead (and
# re-armed for the real deadline if it fires first). Most requests arrive well
# within it, and a timer cancelled when its connection closes stays in
# asyncio's heap until its time: armed for the full 5 s head timeout, a burst
# of short connections leaves 5 s worth of dead timers behind, ~140 bytes
# each, counted against the pending tasks they outlive. One early wake-up per
# idle connection is the price.
FIRST_DEADLINE_CHECK = 0.25

# When a deadline comes while input sits unread in the socket (on uvloop,
# after the loop was blocked: libuv runs due timers before it polls), the wait
# gets this much more for the loop to read it. It is read in the loop's next
# iteration; 0.1 s is that many times over, even on a loaded machine.
UNREAD_INPUT_GRACE = 0.1

# Pause reading when this much unprocessed input has piled up while the
# connection task was busy: 64 KiB is asyncio's own default write high-water
# mark, and more than enough for a few pipelined requests.
INPUT_HIGH_WATER = 64 * 1024

# Write-side flow control: asyncio's defaults (64 KiB / 16 KiB). A slow reader
# makes the writer wait once this much is queued in user space.
OUTPUT_HIGH_WATER = 64 * 1024
OUTPUT_LOW_WATER = 16 * 1024

# After an error response we shut down our write side and keep discarding what
# the client still sends for this long before closing, so that closing with
# unread input does not make the kernel send a reset that destroys the response
# before the client has read it. One second covers a loopback or LAN round trip
# many times over; Apache's lingering close uses 2 s.
LINGER_SECONDS = 1.0


def drop_transport_self_reference(transport: asyncio.BaseTransport) -> None:
    """Let a closed asyncio socket transport be freed by its reference count.

    asyncio's selector transports keep their read callback as a bound method
    of themselves (``_read_ready_cb``), a reference cycle: a closed one waits
    for the cyclic GC, and with many tasks pending (and the GC clock) that is
    the rare full collection, so closed connections pile up as garbage (docs/
    ARCHITECTURE.md, "A pending task keeps little"). Once the connection is
    lost the callback is never called again; dropping it breaks the cycle.
    The one place rawbg touches an asyncio private; uvloop's transports have
    no such attribute (tests/wire/test_protocol_cycles.py watches both).
    """
    attributes = getattr(transport, "__dict__", None)
    if attributes is not None:
        attributes.pop("_read_ready_cb", None)


class ConnectionOwner(Protocol):
    """What an `HttpProtocol` asks of whoever serves its connection (`rawbg.server.Server`)."""

    def connection_made(self, io: ConnectionIO) -> None:
        """The connection is open: start serving it (its connection task)."""
        ...

    def connection_lost(self, io: ConnectionIO) -> None:
        """The connection is closed (its background work may go on)."""
        ...


class HttpProtocol(asyncio.Protocol):
    """One TCP connection, from asyncio's side.

    `owner` is told when the connection opens and closes. `max_head_size`
    bounds h11's buffer while a head is incomplete; a client that reads
    nothing of a response for `write_timeout` seconds is cut off (`drain`);
    `trusted_proxies` says which peers' ``X-Forwarded-*`` headers count.
    """

    def __init__(
        self,
        owner: ConnectionOwner,
        *,
        max_head_size: int,
        write_timeout: float,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self._owner = owner
        self._write_timeout = write_timeout
        self._trusted_proxies = trusted_proxies
        self._loop = asyncio.get_running_loop()
        # Transport and parser
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self.client: Address | None = None  # None on a Unix socket
        #: set when the peer is a trusted proxy, whose X-Forwarded-* headers count
        self.proxy: TrustedProxies | None = None
        # Input side
        self._unread = 0  # bytes received since the connection task last asked for input
        self._reading_paused = False
        self._discarding = False  # lingering close: read and drop whatever still arrives
        self._input_waiter: asyncio.Future[None] | None = None
        self._gone_waiter: asyncio.Future[None] | None = None  # set while `gone` waits
        #: set by the connection while a head trickles in or a chunked body
        #: arrives: sees each piece of input before h11 parses it (raw_input.py)
        self.scanner: InputScanner | None = None
        #: set by the connection while it serves: takes input that arrives while
        #: the connection task waits; True when it served it without the task
        self.serve_arrived: Callable[[], bool] | None = None
        # Idle deadline: one timer per connection, moved only when it fires early
        self._deadline: float | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_timer_armed_before = False
        self._timed_out = False
        #: a deadline found input unread in the socket and waited once for the loop to read it
        self._deadline_grace_given = False
        #: loop time of the first byte of the request head now being received
        self._first_byte_at: float | None = None
        self.eof = False
        # Output side
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.closed = False

    # -- asyncio callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=OUTPUT_HIGH_WATER, low=OUTPUT_LOW_WATER)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = Address(str(peer[0]), int(peer[1]))
        trusted = self._trusted_proxies
        if trusted is not None and trusted.trusts_peer(self.client):
            self.proxy = trusted
        self._owner.connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        scanner = self.scanner
        if scanner is not None:
            scanner.feed(data)
        self.h11.receive_data(data)
        if self._first_byte_at is None:
            self._first_byte_at = self._loop.time()
        serve_arrived = self.serve_arrived
        if serve_arrived is not None and self._input_waiter is not None and serve_arrived():
            return  # served, and the connection task still waits for the next request
        self._unread += len(data)
        if self._unread > INPUT_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        if not self._discarding:
            self.h11.receive_data(b"")
        self._wake_reader()
        self._wake_gone()
        return True  # keep our write side open: a half-closed client still gets its response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._wake_reader()
        self._wake_gone()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._owner.connection_lost(self)
        if self.transport is not None:
            drop_transport_self_reference(self.transport)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- called by the connection task -----------------------------------------

    @property
    def has_input(self) -> bool:
        """True once any byte of the next request (or the client's EOF) has arrived."""
        return self._first_byte_at is not None or self.eof

    @property
    def head_started_at(self) -> float:
        """Loop time of the first byte of the request head being received (now if none)."""
        first_byte_at = self._first_byte_at
        return self._loop.time() if first_byte_at is None else first_byte_at

    def restart_head_clock(self) -> None:
        """The server, not the client, made the head wait: its deadline starts now."""
        self._first_byte_at = self._loop.time()

    def request_received(self) -> None:
        """The request is complete: the next byte to arrive starts the next head's clock.

        (Body bytes that came after the head must not start it.)
        """
        self._first_byte_at = None

    async def receive(self) -> None:
        """Wait until more input (or EOF) arrives; raise if the connection is gone."""
        if self.closed:
            raise ClientDisconnected("connection lost")
        self._unread = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        waiter = self._input_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._input_waiter = None
        if self.closed:
            raise ClientDisconnected("connection lost")

    async def receive_until(self, deadline: float) -> bool:
        """`receive`, giving up at loop time `deadline`: False if the deadline came first.

        Input that is already there when the deadline's timer runs wins: after
        the event loop was blocked, bytes sent in time and an expired deadline
        are seen in the same iteration, and the bytes must be served. On
        asyncio's loop the bytes are read first; on uvloop the timer runs
        first, and finds them still in the socket (`_input_pending`).

        ``asyncio.timeout`` around `receive` would schedule and cancel a timer
        for every request a keep-alive connection waits for (5% of the loop's
        time under load, benchmarks/README.md). Here the connection keeps one
        timer: a new deadline only moves `_deadline`, and the timer, when it
        fires, either finds the deadline reached or re-arms itself for it.
        """
        self._deadline = deadline
        self._timed_out = False
        self._deadline_grace_given = False
        if self._deadline_timer is None:
            when = deadline
            if not self._deadline_timer_armed_before:  # FIRST_DEADLINE_CHECK says why
                self._deadline_timer_armed_before = True
                when = min(deadline, self._loop.time() + FIRST_DEADLINE_CHECK)
            self._arm_deadline_timer(when)
        try:
            await self.receive()
        finally:
            self._deadline = None
        return not self._timed_out

    def extend_wait(self, deadline: float) -> None:
        """The `receive_until` under way now gives up at `deadline`, not at its own."""
        if self._deadline is not None:
            self._deadline = deadline

    def bring_deadline_forward(self, deadline: float) -> None:
        """Drop an idle timer armed for later than `deadline`, so that the next
        `receive_until(deadline)` arms one in time (a shutdown's grace; kept out of
        `receive_until`, which runs for every request)."""
        timer = self._deadline_timer
        if timer is not None and deadline < timer.when():
            timer.cancel()
            self._deadline_timer = None

    def _deadline_reached(self, scheduled_for: float) -> None:
        self._deadline_timer = None
        deadline = self._deadline
        if deadline is None:  # nobody is waiting: the next wait arms a new timer
            return
        if deadline <= scheduled_for:
            waiter = self._input_waiter
            if waiter is not None and waiter.done():
                # Input came in the same loop iteration, just before this timer
                # (after a stall, asyncio's loop runs I/O callbacks before
                # timers): it arrived in time, so the wait ends with input.
                return
            if not self._deadline_grace_given and self._input_pending():
                # The bytes are in the socket but not read yet: libuv (uvloop)
                # runs due timers before it polls for input, so after a stall
                # the deadline comes first there. They arrived in time: let the
                # loop read them, and look again once it has.
                self._deadline_grace_given = True
                self._arm_deadline_timer(self._loop.time() + UNREAD_INPUT_GRACE)
                return
            self._timed_out = True
            self._wake_reader()
        else:  # the wait was renewed since this timer was armed
            self._arm_deadline_timer(deadline)

    def _input_pending(self) -> bool:
        """Whether the socket has input (or EOF) the loop has not read yet: one ``poll``."""
        transport = self.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return False

    def _arm_deadline_timer(self, when: float) -> None:
        self._deadline_timer = self._loop.call_at(
            when, self._deadline_reached, when, context=_TIMER_CONTEXT
        )

    def wake(self) -> None:
        """Make a pending `receive` return (used by shutdown to end an idle wait)."""
        self._wake_reader()

    async def gone(self) -> None:
        """Return once the client is gone: the connection is lost, or the client sent its EOF."""
        if self.closed or self.eof:
            return
        waiter = self._gone_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._gone_waiter = None

    def _wake_gone(self) -> None:
        waiter = self._gone_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._input_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ClientDisconnected("connection lost")
        self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark.

        A client that reads nothing for `write_timeout` (the server's
        ``timeout_keep_alive``) is cut off (the connection is aborted), so that
        it cannot hold a connection task, and with it a graceful shutdown,
        forever.
        """
        writable = self._writable
        if writable is not None and not writable.done():
            try:
                async with asyncio.timeout(self._write_timeout):
                    await writable
            except TimeoutError:
                logger.info(
                    "client %s stopped reading: connection aborted", client_label(self.client)
                )
                self.transport.abort()  # type: ignore[union-attr]
                raise ClientDisconnected("client stopped reading") from None
        if self.closed:
            raise ClientDisconnected("connection lost")

    async def flushed(self) -> None:
        """Wait until everything written so far has been handed to the kernel."""
        transport = self.transport
        if self.closed or transport is None or transport.get_write_buffer_size() == 0:
            return
        # A high-water mark of 0 makes asyncio pause us now, and resume us
        # (low-water mark 0) exactly when the buffer is empty.
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            await self.drain()
        finally:
            if not self.closed:
                transport.set_write_buffer_limits(high=OUTPUT_HIGH_WATER, low=OUTPUT_LOW_WATER)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def close_gracefully(self) -> None:
        """Close after an error response without resetting the connection.

        Closing a socket that still has unread input makes the kernel send a
        reset, which can destroy the response before the client has read it.
        So: shut down our write side (the client sees the end of the response),
        then read and discard what the client is still sending until it closes
        too, for at most `LINGER_SECONDS`, and only then close.
        """
        transport = self.transport
        if self.closed or transport is None:
            return
        self._discarding = True
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is already gone (ENOTCONN after its reset)
                self.close()
                return
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while not (self.eof or self.closed):
                    waiter = self._input_waiter = self._loop.create_future()
                    await waiter
        except TimeoutError:
            pass
        finally:
            self._input_waiter = None
            self.close()
