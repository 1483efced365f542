"""`ConnectionIO`: everything a `Connection` asks of its transport, and nothing more.

The connection task never sees a socket. It reads h11 events from the parser
the I/O side feeds, and asks that side for four things: wait for more input
(with a deadline), write bytes, wait until they are written, close.
`rawbg.wire.protocol.HttpProtocol` is the implementation on an asyncio transport;
`rawbg.wire.memory_transport.MemoryTransport` puts it on memory instead of a socket, which is
how the cycle is tested without one (tests/server/test_cycle_in_memory.py) and how
`benchmarks.instructions` counts a request's instructions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import h11

    from rawbg.requests import Address
    from rawbg.wire.proxy import TrustedProxies
    from rawbg.wire.raw_input import InputScanner


class ConnectionIO(Protocol):
    """The transport side of one connection, as the connection task sees it."""

    #: the parser the input is fed into; the connection takes events out of it
    h11: h11.Connection
    #: the peer's address (None on a Unix socket)
    client: Address | None
    #: set when the peer is a trusted proxy, whose X-Forwarded-* headers count
    proxy: TrustedProxies | None
    #: the connection is gone: writes raise `ClientDisconnected`
    closed: bool
    #: the client has sent its EOF
    eof: bool
    #: set by the connection: sees each piece of input before h11 parses it
    scanner: InputScanner | None
    #: set by the connection: called when input arrives while `receive_until`
    #: waits, instead of waking it; True if it served that input itself
    serve_arrived: Callable[[], bool] | None

    # -- input -------------------------------------------------------------------

    @property
    def has_input(self) -> bool:
        """True once any byte of the next request (or the client's EOF) has arrived."""
        ...

    @property
    def head_started_at(self) -> float:
        """Loop time of the first byte of the request head being received (now if none)."""
        ...

    def restart_head_clock(self) -> None:
        """The server, not the client, made the head wait: its deadline starts now."""
        ...

    def request_received(self) -> None:
        """The request is complete: the next byte to arrive starts the next head's clock."""
        ...

    async def receive_until(self, deadline: float) -> bool:
        """Wait for more input (or EOF) until loop time `deadline`: False if the deadline won.

        Raises `ClientDisconnected` if the connection is gone.
        """
        ...

    def extend_wait(self, deadline: float) -> None:
        """The `receive_until` under way gives up at `deadline` instead (a later one)."""
        ...

    def bring_deadline_forward(self, deadline: float) -> None:
        """The next `receive_until` will be given `deadline`, earlier than the last one."""
        ...

    def wake(self) -> None:
        """Make a pending `receive_until` return now (shutdown ends an idle wait)."""
        ...

    # -- output ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue `data` for the client; `ClientDisconnected` if it is gone."""
        ...

    async def drain(self) -> None:
        """Wait while too much output is queued (flow control for streamed bodies)."""
        ...

    async def flushed(self) -> None:
        """Wait until everything written so far has been handed to the kernel."""
        ...

    async def gone(self) -> None:
        """Return once the client is gone: the connection is lost, or the client sent its EOF.

        A streamed body waits for its next piece against this, so that a client
        that leaves stops the generator that feeds it.
        """
        ...

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Close now."""
        ...

    async def close_gracefully(self) -> None:
        """Close after a refusal without resetting the connection (lingering close)."""
        ...
