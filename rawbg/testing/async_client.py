"""Test an app the way it is used: over a socket (or memory), then wait for its background work.

    from rawbg.testing import serve_app

    async def test_notification_is_written(tmp_path):
        async with serve_app(app) as client:
            response = await client.post("/send-notification/a@b.c")
            assert response.status_code == 200
            await client.wait_for_background()   # no sleeps
            ...

The server reserves a request's background tasks before it writes the
response, so once a response has arrived, `wait_for_background` cannot miss
the work that request queued.

``serve_app(app, in_memory=True)`` runs the same server with no socket: each
request is a `rawbg.wire.memory_transport.MemoryConnection`. Everything but the kernel's
part is the same (h11, the connection task, the app, the background work),
and nothing waits on a port or a client socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import h11

from rawbg.app.application import App
from rawbg.requests import Headers
from rawbg.server.server import Server, serving
from rawbg.testing.sync_client import TestClient, TestResponse
from rawbg.wire.memory_transport import MemoryConnection
from rawbg.wire.response_bytes import events_to_bytes

__all__ = ["AsyncClient", "TestClient", "TestResponse", "serve_app"]


class _SocketPipe:
    """A client connection over a socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def read(self) -> bytes:
        return await self._reader.read(65536)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class _MemoryPipe:
    """A client connection in memory (`MemoryConnection`)."""

    def __init__(self, server: Server) -> None:
        self._connection = MemoryConnection(server)

    async def send(self, data: bytes) -> None:
        self._connection.send(data)

    async def read(self) -> bytes:
        return await self._connection.receive()

    async def close(self) -> None:
        if not self._connection.closed:
            self._connection.send_eof()


class AsyncClient:
    """Makes requests to a running `Server`, one connection per request.

    Over a socket to its port, or, with ``in_memory=True``, over a
    `MemoryConnection` (the server need not listen).
    """

    __test__ = False

    def __init__(
        self,
        server: Server,
        *,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        in_memory: bool = False,
    ) -> None:
        self.server = server
        self.host = host
        self.in_memory = in_memory
        self.port: int | None = None if in_memory else server.port
        self.timeout = timeout

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
    ) -> TestResponse:
        body = content.encode() if isinstance(content, str) else (content or b"")
        host = self.host if self.port is None else f"{self.host}:{self.port}"
        fields = {"host": host, **(headers or {})}
        if json is not None:
            body = jsonlib.dumps(json).encode()
            fields.setdefault("content-type", "application/json")
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            fields.setdefault("content-length", str(len(body)))
        fields["connection"] = "close"
        async with asyncio.timeout(self.timeout):
            return await self._exchange(method.upper(), path, list(fields.items()), body)

    async def _exchange(
        self, method: str, path: str, fields: list[tuple[str, str]], body: bytes
    ) -> TestResponse:
        pipe: _SocketPipe | _MemoryPipe
        if self.port is None:
            pipe = _MemoryPipe(self.server)
        else:
            pipe = _SocketPipe(*await asyncio.open_connection(self.host, self.port))
        conn = h11.Connection(h11.CLIENT)
        try:
            request = h11.Request(method=method, target=path, headers=fields)
            body_events = [h11.Data(data=body)] if body else []
            await pipe.send(events_to_bytes(conn, request, *body_events, h11.EndOfMessage()))
            response: h11.Response | None = None
            chunks: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await pipe.read())
                elif type(event) is h11.Response:
                    response = event
                elif type(event) is h11.Data:
                    chunks.append(bytes(event.data))
                elif type(event) is h11.EndOfMessage or type(event) is h11.ConnectionClosed:
                    break
            if response is None:
                raise ConnectionError("the server closed the connection without a response")
            return TestResponse(
                response.status_code,
                Headers(list(response.headers)),
                b"".join(chunks),
                response.http_version.decode(),
            )
        finally:
            await pipe.close()

    async def get(self, path: str, **kwargs: Any) -> TestResponse:
        return await self.request("GET", path, **kwargs)

    async def head(self, path: str, **kwargs: Any) -> TestResponse:
        return await self.request("HEAD", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> TestResponse:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> TestResponse:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return await self.request("DELETE", path, **kwargs)

    async def wait_for_background(self, timeout: float | None = None) -> None:
        """Wait until every background task (and dependency clean-up) has finished."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            await self.server.wait_background_idle()


@contextlib.asynccontextmanager
async def serve_app(
    app: App, *, in_memory: bool = False, **options: Any
) -> AsyncIterator[AsyncClient]:
    """Serve `app` on an ephemeral port of 127.0.0.1 and give a client for it.

    With ``in_memory=True`` the server does not listen and the client's
    connections are in memory. Options are `ServerConfig` fields; the access
    log is off unless asked for.
    """
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    async with serving(app, listen=not in_memory, **options) as server:
        yield AsyncClient(server, in_memory=in_memory)
