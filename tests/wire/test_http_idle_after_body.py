"""A keep-alive connection idle after a request whose body came late is closed quietly."""

import asyncio

from rawbg import App, Request
from tests.support.wire import RawClient

HEAD = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n"


async def test_idle_after_a_late_body_closes_quietly_instead_of_answering_408(serve):
    app = App()

    @app.post("/echo")
    async def echo(request: Request):
        return {"got": (await request.body()).decode()}

    async with serve(app, timeout_keep_alive=0.3) as server:
        client = await RawClient.connect(server.port)
        await client.send(HEAD)
        await asyncio.sleep(0.1)  # the body arrives in a later packet
        await client.send(b"hello")
        response = await client.read_response(method=b"POST")
        assert response.status_code == 200 and response.body == b'{"got":"hello"}'
        # now idle: the server closes without sending anything more (no 408)
        assert await client.read_all(timeout=3) == b""
        await client.close()
