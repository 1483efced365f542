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

from rawbg import App, BackgroundTasks
from tests.support.wire import RawClient, request_bytes

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


async def test_a_task_pending_after_its_connection_closed_keeps_no_socket_side_object(serve):
    """On both loops, what a closed connection's task holds is its work only.

    The connection task runs its last request's work after the socket is
    closed: the protocol, its transport, its parser and the `Connection` must
    be gone by then, by reference counts alone (the GC is off), while the
    task waits.
    """
    release = asyncio.Event()
    started = asyncio.Event()
    app_with_work = App()

    async def wait_for_release() -> None:
        started.set()
        await release.wait()

    @app_with_work.post("/work")
    async def queue_work(background_tasks: BackgroundTasks):
        background_tasks.add_task(wait_for_release)
        return {"queued": True}

    async with serve(app_with_work) as server:
        client = await RawClient.connect(server.port)
        async with asyncio.timeout(5):
            while not server.connections:
                await asyncio.sleep(0.01)
        (connection,) = server.connections
        socket_side = {
            "connection": weakref.ref(connection),
            "protocol": weakref.ref(connection.io),
            "transport": weakref.ref(connection.io.transport),
            "parser": weakref.ref(connection.io.h11),
        }
        del connection
        gc.disable()
        try:
            await client.send(request_bytes("POST", "/work", headers={"connection": "close"}))
            assert (await client.read_response(method=b"POST")).status_code == 200
            assert await client.is_closed_by_server()
            async with asyncio.timeout(5):
                await started.wait()
                while server.connections:
                    await asyncio.sleep(0.01)
            # the loop's own clean-up callbacks (uvloop frees a handle in its close callback)
            deadline = asyncio.get_running_loop().time() + 2
            while any(ref() is not None for ref in socket_side.values()):
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            assert len(server.connection_tasks) == 1  # the task still runs the work
            alive = {name: ref() for name, ref in socket_side.items() if ref() is not None}
            assert not alive, {name: gc.get_referrers(obj) for name, obj in alive.items()}
        finally:
            gc.enable()
            release.set()
            await client.close()
