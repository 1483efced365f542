"""A connection with no socket: `MemoryTransport` and `MemoryConnection`.

`HttpProtocol` is rawbg's `ConnectionIO`; put on a `MemoryTransport` instead
of a socket's transport, it runs the whole connection (h11, the connection
task, the app, the background work) on bytes in memory. Two users:

* `benchmarks.instructions` counts the instructions of a request this way,
  so that the kernel's socket work does not blur the figure;
* tests of the request/response cycle that are not about the wire
  (tests/server/test_cycle_in_memory.py): no port, no client socket, no waiting on
  the kernel.

What is about the wire (flow control against a real socket buffer, resets,
lingering close) is tested over real sockets (tests/support/wire.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from rawbg.wire.protocol import HttpProtocol

#: the peer address a memory connection reports
MEMORY_PEER = ("127.0.0.1", 40000)


class MemoryTransport(asyncio.Transport):
    """Just enough of a socket transport for a protocol: writes are kept, not sent.

    Everything written is in `writes`, one item per ``write``; `written`, if
    set, is a future resolved by the next write. Its buffer is always empty
    (every write is "flushed" at once), and closing it tells the protocol the
    connection is lost, on the next loop iteration, as asyncio does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.written: asyncio.Future[None] | None = None
        self.writes: list[bytes] = []
        self.closing = False
        self.eof_written = False
        self._protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None, "no protocol set"
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return MEMORY_PEER if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        if self.written is not None and not self.written.done():
            self.written.set_result(None)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.written is not None and not self.written.done():
            self.written.set_result(None)  # a reader waiting for bytes sees the close
        if self._protocol is not None:
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True


class Listener(Protocol):
    """What a memory connection is accepted by: `rawbg.server.Server` is one."""

    def make_protocol(self) -> HttpProtocol:
        """The protocol for a new connection, as the listening socket's factory makes it."""
        ...


class MemoryConnection:
    """One client connection to `server`, in memory: send bytes, read what came back.

    ``connection = MemoryConnection(server)`` is accepted at once (the server
    starts its connection task, as for a socket); `send` is the client
    writing, `received` what the server has written so far.
    """

    def __init__(self, server: Listener) -> None:
        self.transport = MemoryTransport()
        self.protocol = server.make_protocol()
        self.transport.set_protocol(self.protocol)
        self.protocol.connection_made(self.transport)
        self._read = 0  # bytes of the output already returned by `receive`

    @property
    def received(self) -> bytes:
        """Everything the server has written so far."""
        return b"".join(self.transport.writes)

    @property
    def closed(self) -> bool:
        """The server has closed the connection."""
        return self.transport.closing

    def send(self, data: bytes) -> None:
        """The client writes `data`: it arrives in a loop callback, as from a socket."""
        asyncio.get_running_loop().call_soon(self._arrive, data)

    def send_eof(self) -> None:
        asyncio.get_running_loop().call_soon(self._arrive, b"")

    def _arrive(self, data: bytes) -> None:
        if self.transport.closing:
            return  # a socket's reads stop once it is closed
        if data:
            self.protocol.data_received(data)
        else:
            self.protocol.eof_received()

    async def receive(self, *, until: bytes = b"", timeout: float = 5.0) -> bytes:
        """What the server writes from now on, once it contains `until` (or it closes)."""
        async with asyncio.timeout(timeout):
            while True:
                new = self.received[self._read :]
                if (new and until in new) or self.closed:
                    self._read += len(new)
                    return new
                self.transport.written = asyncio.get_running_loop().create_future()
                await self.transport.written

    async def wait_closed(self, *, timeout: float = 5.0) -> None:
        """Until the server closes the connection."""
        async with asyncio.timeout(timeout):
            while not self.closed:
                self.transport.written = asyncio.get_running_loop().create_future()
                await self.transport.written
