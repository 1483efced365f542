"""A connection accepted just before shutdown still gets its first request answered.

docs/server-behavior.md, "Shutdown": an idle keep-alive connection is closed
at once, but one with no request yet gets `SHUTDOWN_FIRST_REQUEST_GRACE`
for its request to arrive (a worker replaced in a rolling restart accepts
until the last moment; its client's request is on its way).
"""

import asyncio

from rawbg import App, Server
from rawbg.server.config import ServerConfig
from rawbg.server.connection import SHUTDOWN_FIRST_REQUEST_GRACE
from tests.support.wire import RawClient, request_bytes


def hello_app() -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    return app


async def test_a_request_arriving_just_after_shutdown_began_on_a_fresh_connection_is_answered():
    server = Server(hello_app(), ServerConfig(port=0, access_log=False, timeout_keep_alive=30))
    await server.start()
    client = await RawClient.connect(server.port)
    try:
        await asyncio.sleep(0.05)  # accepted, and waiting for its first request
        stopping = asyncio.create_task(server.shutdown())
        await asyncio.sleep(SHUTDOWN_FIRST_REQUEST_GRACE / 5)
        await client.send(request_bytes("GET", "/hello"))
        response = await client.read_response()
        assert (response.status_code, response.body) == (200, b'{"hello":"world"}')
        assert response.headers["connection"] == "close"
        async with asyncio.timeout(5):
            assert await stopping == 0
    finally:
        await client.close()


async def test_a_fresh_connection_that_sends_nothing_is_closed_after_the_grace():
    server = Server(hello_app(), ServerConfig(port=0, access_log=False, timeout_keep_alive=30))
    await server.start()
    client = await RawClient.connect(server.port)
    try:
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        begun = loop.time()
        async with asyncio.timeout(5):
            assert await server.shutdown() == 0
        elapsed = loop.time() - begun
        assert SHUTDOWN_FIRST_REQUEST_GRACE * 0.8 <= elapsed < SHUTDOWN_FIRST_REQUEST_GRACE + 2
        assert await client.read_all(timeout=2) == b""
    finally:
        await client.close()
