"""Test an app the way it is used: over a real socket, then wait for its background work.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import h11

from .app import App
from .requests import Headers
from .server import Server, serving
from .testclient import TestClient, TestResponse

__all__ = ["AsyncClient", "TestClient", "TestResponse", "serve_app"]


class AsyncClient:
    """Makes requests to a running `Server`, one connection per request."""

    __test__ = False

    def __init__(self, server: Server, *, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.server = server
        self.host = host
        self.port = server.port
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
        fields = {"host": f"{self.host}:{self.port}", **(headers or {})}
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
        reader, writer = await asyncio.open_connection(self.host, self.port)
        conn = h11.Connection(h11.CLIENT)
        try:
            data = conn.send(h11.Request(method=method, target=path, headers=fields)) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            writer.write(data)
            await writer.drain()
            response: h11.Response | None = None
            chunks: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
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
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

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
async def serve_app(app: App, **options: Any) -> AsyncIterator[AsyncClient]:
    """Serve `app` on an ephemeral port of 127.0.0.1 and give a client for it.

    Options are `ServerConfig` fields; the access log is off unless asked for.
    """
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    async with serving(app, **options) as server:
        yield AsyncClient(server)
