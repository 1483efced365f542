"""A closed connection is freed by its reference count, not left to the cyclic GC.

With many background tasks pending, full collections are rare (the GC clock
makes them rarer still), so anything a closed connection leaves in a reference
cycle waits seconds as garbage: memory per pending task on new connections
counted it (docs/ARCHITECTURE.md, "A pending task keeps little").
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from rawbg import App
from tests.wire import RawClient, request_bytes

app = App()


@app.get("/")
async def hello():
    return {"hello": "world"}


async def test_a_closed_connections_transport_is_freed_without_the_cyclic_gc(serve):
    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        await client.send(request_bytes("GET", "/"))
        assert (await client.read_response()).status_code == 200  # keep-alive: still open
        (connection,) = server.connections
        transport = weakref.ref(connection.io.transport)
        del connection
        gc.disable()
        try:
            await client.close()
            async with asyncio.timeout(5):
                while server.connection_tasks:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # asyncio's own clean-up callbacks
            assert transport() is None, gc.get_referrers(transport())
        finally:
            gc.enable()
