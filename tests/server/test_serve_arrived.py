"""A request that arrives while its connection task waits is served in data_received, as that task.

`Connection.serve_arrived` (rawbg/server/arrival.py): what must hold is that nothing
but the cost changes. The handler runs as the connection task, in its
context; a request that has to wait is continued by the task, with its
deadlines intact; pipelined requests, refusals and an EOF that comes during
the hand-over are answered as before. In memory, a client's bytes arrive in a
loop callback, as a socket's do, so the in-memory tests take this path too;
one test checks that real sockets take it.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys

import pytest

from rawbg import App, Request, Response, Server
from rawbg.server import arrival as eager
from rawbg.server.connection import Connection
from rawbg.testing import serve_app
from rawbg.wire.memory_transport import MemoryConnection
from tests.server.test_cycle_in_memory import GET_PLAIN, WAIT, in_memory, status_and_body
from tests.support.wire import RawClient, request_bytes

requests_on_this_connection: contextvars.ContextVar[int] = contextvars.ContextVar(
    "requests_on_this_connection", default=0
)


def runs_inside(code: object) -> bool:
    """True if the caller of the caller runs inside the function whose code is `code`."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def served_where_it_arrived() -> bool:
    """True if the caller runs inside `Connection.serve_arrived` (called by data_received)."""
    return runs_inside(Connection.serve_arrived.__code__)


def plain_app() -> App:
    app = App()

    @app.get("/plain")
    async def plain() -> str:
        return "plain"

    return app


def test_the_asyncio_functions_it_needs_are_there():
    # if a Python release drops them, requests are served the usual way: say so here
    assert eager.AVAILABLE


async def test_a_request_is_answered_inside_the_callback_that_delivers_its_bytes():
    loop = asyncio.get_running_loop()
    async with in_memory(plain_app()) as server:
        connection = MemoryConnection(server)
        connection.send(GET_PLAIN)
        await connection.receive(until=b"plain")
        seen_in_the_callback: asyncio.Future[bytes] = loop.create_future()

        def arrive() -> None:  # what a socket transport's read callback does
            before = connection.received
            connection.protocol.data_received(GET_PLAIN)
            seen_in_the_callback.set_result(connection.received[len(before) :])

        loop.call_soon(arrive)
        written = await asyncio.wait_for(seen_in_the_callback, WAIT)
    assert status_and_body(written) == (b"HTTP/1.1 200 OK", b'"plain"')


async def test_over_a_socket_a_handler_runs_as_its_connection_task_in_its_context():
    app = App()
    seen: list[tuple[bool, asyncio.Task[object] | None, int]] = []

    @app.get("/count")
    async def count() -> int:
        async with asyncio.timeout(WAIT):  # needs the current task
            served_here = served_where_it_arrived()
        requests_on_this_connection.set(requests_on_this_connection.get() + 1)
        seen.append((served_here, asyncio.current_task(), requests_on_this_connection.get()))
        return requests_on_this_connection.get()

    async with serve_app(app) as client:
        server = client.server
        for _ in range(2):  # two connections, three keep-alive requests each
            raw = await RawClient.connect(server.port)
            for _ in range(3):
                await raw.send(request_bytes("GET", "/count"))
                assert (await raw.read_response()).status_code == 200
            tasks = server.connection_tasks
            await raw.close()
            assert {task for _, task, _ in seen[-3:]} <= tasks
    assert [n for _, _, n in seen] == [1, 2, 3, 1, 2, 3]  # the context is the connection's
    assert len({task for _, task, _ in seen[:3]}) == 1
    assert seen[0][1] is not seen[3][1]
    # the second and third requests arrive while the task waits for them
    assert [here for here, _, _ in seen] in ([True] * 6, [False, True, True] * 2)


async def test_with_serving_on_arrival_off_every_request_is_served_by_the_woken_task():
    # --no-serve-on-arrival: the same answers, the same task and context, never the callback
    app = App()
    seen: list[tuple[bool, asyncio.Task[object] | None, int]] = []

    @app.get("/count")
    async def count() -> int:
        requests_on_this_connection.set(requests_on_this_connection.get() + 1)
        seen.append(
            (served_where_it_arrived(), asyncio.current_task(), requests_on_this_connection.get())
        )
        return requests_on_this_connection.get()

    async with serve_app(app, serve_on_arrival=False) as client:
        raw = await RawClient.connect(client.server.port)
        for expected in (1, 2, 3):
            await raw.send(request_bytes("GET", "/count"))
            response = await raw.read_response()
            assert (response.status_code, response.body) == (200, str(expected).encode())
        await raw.close()
    assert [(here, n) for here, _, n in seen] == [(False, 1), (False, 2), (False, 3)]
    assert len({task for _, task, _ in seen}) == 1


async def test_an_illegal_move_of_the_arrival_state_is_loud():
    arrival = eager.Arrival(asyncio.current_task(), contextvars.copy_context())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="TASK_BUSY -> finished"):
        arrival.finished(task_waits_on=False)  # nothing was being served here
    arrival.task_waits()
    assert arrival.task_woke() is False  # woken by input, nothing served meanwhile
    assert arrival.state is eager.TASK_BUSY
    assert arrival.take_handed_over() is None


async def get_twice(
    server: Server, path: str, *, until: bytes
) -> tuple[MemoryConnection, list[bytes]]:
    """Two GETs of `path`, one after the other on one in-memory connection; the responses."""
    connection = MemoryConnection(server)
    responses = []
    for _ in range(2):
        connection.send(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        responses.append(await connection.receive(until=until))
    return connection, responses


def resumed_where_its_future_called_back() -> bool:
    """True if the caller runs inside `Arrival._resume` (a parked request's step)."""
    return runs_inside(eager.Arrival._resume.__code__)


def task_waits_for_input(task: asyncio.Task[object]) -> bool:
    """True if `task` is suspended in its wait for the next request's bytes: the
    innermost coroutine of its await chain is `HttpProtocol.receive`."""
    coroutine: object = task.get_coro()
    names = []
    while hasattr(coroutine, "cr_await"):
        names.append(coroutine.cr_code.co_name)  # type: ignore[attr-defined]
        coroutine = coroutine.cr_await  # type: ignore[attr-defined]
    return names[-1:] == ["receive"]


async def test_a_handler_that_awaits_a_future_goes_on_in_its_callback_while_the_task_sleeps():
    # asyncio.sleep is a future of the loop: the request is parked on it, and its
    # callback steps the handler on, as the connection task, in its context,
    # while the task itself stays asleep in its wait for the next request.
    app = App()
    seen: list[tuple[str, bool, bool, object, int]] = []

    @app.get("/slow")
    async def slow() -> str:
        requests_on_this_connection.set(requests_on_this_connection.get() + 1)
        task = asyncio.current_task()
        seen.append(("before", served_where_it_arrived(), False, task, 0))
        await asyncio.sleep(0.01)
        assert task is not None
        seen.append(
            (
                "after",
                resumed_where_its_future_called_back(),
                task_waits_for_input(task),
                asyncio.current_task(),
                requests_on_this_connection.get(),
            )
        )
        return "slow"

    async with in_memory(app) as server:
        _, responses = await get_twice(server, "/slow", until=b'"slow"')
        (task,) = server.connection_tasks
    assert [status_and_body(response) for response in responses] == [
        (b"HTTP/1.1 200 OK", b'"slow"')
    ] * 2
    assert seen == [
        ("before", True, False, task, 0),
        ("after", True, True, task, 1),
        ("before", True, False, task, 0),
        ("after", True, True, task, 2),
    ]


async def test_a_parked_handler_gets_the_exception_of_its_future_where_it_awaits_it():
    app = App()

    @app.get("/fails")
    async def fails() -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        loop.call_later(0.01, future.set_exception, ValueError("boom"))
        try:
            await future
        except ValueError as exc:
            here = resumed_where_its_future_called_back()
            return f"caught {exc} {'here' if here else 'in the task'}"
        return "not raised"

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(b"GET /fails HTTP/1.1\r\nhost: x\r\n\r\n")
        response = await connection.receive(until=b'"caught')  # one write: the whole response
    assert status_and_body(response) == (b"HTTP/1.1 200 OK", b'"caught boom here"')


async def test_a_timeout_around_a_parked_await_times_out_the_handler_only():
    # asyncio.timeout cancels the current task, the connection task, asleep in
    # its own wait: the cancellation must reach the handler's await, and the
    # connection must go on serving.
    app = App()

    @app.get("/deadline")
    async def deadline() -> str:
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(10)
        except TimeoutError:
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            return "timed out"
        return "not timed out"

    async with in_memory(app) as server:
        connection, responses = await get_twice(server, "/deadline", until=b'out"')
        assert not connection.closed  # the same connection answered both, and stays open
    assert [status_and_body(response) for response in responses] == [
        (b"HTTP/1.1 200 OK", b'"timed out"')
    ] * 2


async def test_cancelling_the_connection_task_reaches_a_parked_handler():
    app = App()
    seen: list[str] = []
    parked = asyncio.Event()

    @app.get("/forever")
    async def forever() -> str:
        parked.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled where it waited")
            raise
        return "never"

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(b"GET /forever HTTP/1.1\r\nhost: x\r\n\r\n")
        async with asyncio.timeout(WAIT):
            await parked.wait()
        (task,) = server.connection_tasks
        assert task_waits_for_input(task)  # parked: the task was not woken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen == ["cancelled where it waited"]


async def test_a_request_that_arrives_while_one_is_parked_is_answered_after_it():
    app = App()

    @app.get("/n/{n}")
    async def number(n: int) -> int:
        await asyncio.sleep(0.03 if n == 1 else 0)
        return n

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(b"GET /n/1 HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.sleep(0.01)  # the first is parked on its sleep now
        connection.send(b"GET /n/2 HTTP/1.1\r\nhost: x\r\n\r\n")
        received = await connection.receive(until=b"\r\n\r\n2")
    bodies = [part.split(b"\r\n\r\n")[1] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"1", b"2"]


async def test_a_body_still_arriving_is_finished_by_the_task_and_keeps_its_deadline():
    app = App()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n"
    async with in_memory(app, timeout_keep_alive=0.3) as server:
        connection = MemoryConnection(server)
        connection.send(head + b"01234")
        await asyncio.sleep(0.05)
        connection.send(b"56789")
        response = await connection.receive(until=b"56789")
        assert status_and_body(response) == (b"HTTP/1.1 200 OK", b"0123456789")
        # now half a body, then nothing: the stall deadline still holds
        loop = asyncio.get_running_loop()
        started = loop.time()
        connection.send(head + b"01234")
        await connection.wait_closed(timeout=WAIT)
        waited = loop.time() - started
    status, body = status_and_body(connection.received[len(response) :])
    assert status == b"HTTP/1.1 408 Request Timeout", connection.received
    assert b"stalled" in body
    assert 0.25 < waited < 2.0


async def test_pipelined_requests_are_answered_in_order_whole_or_split_across_reads():
    app = App()

    @app.get("/n/{n}")
    async def number(n: int) -> int:
        return n

    def get(n: int) -> bytes:
        return f"GET /n/{n} HTTP/1.1\r\nhost: x\r\n\r\n".encode()

    async with in_memory(app) as server:
        connection = MemoryConnection(server)
        connection.send(get(1) + get(2) + get(3)[:10])
        connection.send(get(3)[10:])
        received = await connection.receive(until=b"\r\n\r\n3")
        await asyncio.sleep(0.05)
        connection.send(get(4))
        received += await connection.receive(until=b"\r\n\r\n4")
    bodies = [part.split(b"\r\n\r\n")[1] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"1", b"2", b"3", b"4"]


async def test_a_refused_request_that_arrived_gets_its_refusal_and_the_connection_closes():
    async with in_memory(plain_app()) as server:
        connection = MemoryConnection(server)
        connection.send(GET_PLAIN)
        first = await connection.receive(until=b"plain")
        connection.send(b"GET /plain HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n")
        await connection.wait_closed()
    refusal = connection.received[len(first) :]
    assert status_and_body(refusal)[0] == b"HTTP/1.1 400 Bad Request"
    assert b"connection: close" in refusal.lower()
