"""Talking to a real rawbg server over a real socket, in raw bytes.

`RawClient` sends exactly the bytes a test gives it and parses what comes back
with an h11 client, so a test can say "these bytes in, this response out".
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import h11

from rawbg import App, StreamingResponse

# How long a test waits for the server before failing, rather than hanging.
WAIT = 5.0


@dataclass
class RawResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes
    reason: bytes = b""


class RawClient:
    """One TCP connection to the server under test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None
    ) -> RawClient:
        """A connection to `port`; with `tls`, an HTTPS one (the handshake done)."""
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def shutdown_write(self) -> None:
        """Half-close: send FIN, keep reading."""
        self.writer.write_eof()
        await self.writer.drain()

    async def read_response(self, *, method: bytes = b"GET", timeout: float = WAIT) -> RawResponse:
        """Parse the next response on this connection (h11 client, so framing is checked)."""
        conn = self._h11
        if conn.our_state is h11.IDLE:
            # tell h11 which request this answers, without sending anything
            conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
            conn.send(h11.EndOfMessage())
        response: h11.Response | None = None
        chunks: list[bytes] = []
        async with asyncio.timeout(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self.reader.read(65536))
                    continue
                if type(event) is h11.InformationalResponse:
                    continue
                if type(event) is h11.Response:
                    response = event
                elif type(event) is h11.Data:
                    chunks.append(bytes(event.data))
                elif type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
                    break
        assert response is not None, "no response before the connection closed"
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        headers = {k.decode().lower(): v.decode() for k, v in response.headers}
        return RawResponse(response.status_code, headers, b"".join(chunks), response.reason)

    async def read_all(self, timeout: float = WAIT) -> bytes:
        """Every byte until the server closes the connection."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    async def read_some(self, timeout: float = WAIT) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.read(65536)

    async def is_closed_by_server(self, timeout: float = WAIT) -> bool:
        """True if the server closes (EOF or reset) within `timeout`, with no more bytes."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def request_bytes(
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    version: str = "1.1",
) -> bytes:
    """A request exactly as given: no header is added but Host (if absent) and Content-Length."""
    lines = [f"{method} {target} HTTP/{version}"]
    fields = {"host": "127.0.0.1", **(headers or {})}
    if (
        body
        and "content-length" not in {k.lower() for k in fields}
        and "transfer-encoding" not in {k.lower() for k in fields}
    ):
        fields["content-length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def split_head(data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """A raw response: (status line, lower-cased headers, everything after the head)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {data!r}"
    status_line, *lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, rest


def assert_refused(data: bytes, status: int) -> None:
    """`data` (all a connection received) is one error response with `status`,
    `connection: close`, and nothing after its body."""
    status_line, headers, rest = split_head(data)
    assert int(status_line.split(b" ")[1]) == status, data
    assert headers[b"connection"] == b"close"
    assert len(rest) == int(headers[b"content-length"]), data


class Firehose:
    """An app whose ``GET /firehose`` streams 64 KiB chunks without end; `produced` counts
    them, so a test sees how far the server let the producer run ahead of the socket."""

    def __init__(self) -> None:
        self.produced = 0
        self.app = App()
        self.app.add_route("/firehose", self._firehose, methods=["GET"])

    async def _endless(self) -> AsyncIterator[bytes]:
        while True:
            self.produced += 1
            yield b"x" * 65536

    async def _firehose(self) -> StreamingResponse:
        return StreamingResponse(self._endless())
