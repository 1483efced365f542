"""Generator handlers over a real socket: JSON Lines, server-sent events with keep-alive
pings, a client that leaves stops the generator, and the background tasks run after
the stream has ended."""

import asyncio
import threading
import time
from collections.abc import AsyncIterable, Iterable
from typing import Annotated, ClassVar

import pydantic
import pytest

from rawbg import (
    App,
    BackgroundTasks,
    Depends,
    HTMLResponse,
    Response,
    RouteDefinitionError,
    StreamingResponse,
)
from rawbg.sse import EventSourceResponse, ServerSentEvent
from rawbg.testing import serve_app
from tests.support.wire import WAIT, RawClient, request_bytes


class Item(pydantic.BaseModel):
    name: str
    price: float


class FastPings(EventSourceResponse):
    ping_interval: ClassVar[float] = 0.05


async def test_an_async_generator_streams_json_lines_of_its_item_type():
    app = App()

    @app.get("/items")
    async def items() -> AsyncIterable[Item]:
        yield Item(name="ä", price=1)
        yield {"name": "b", "price": "2.5", "extra": True}  # validated by the item type

    async with serve_app(app) as client:
        response = await client.get("/items")
    assert response.headers["content-type"] == "application/jsonl"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body.decode() == ('{"name":"ä","price":1.0}\n{"name":"b","price":2.5}\n')


async def test_items_without_a_type_are_json_dumps_as_fastapi_spells_it():
    app = App()

    @app.get("/plain")
    def plain():
        yield {"a": 1, "b": [1.5, float("inf")]}
        yield "é"

    async with serve_app(app) as client:
        response = await client.get("/plain")
    assert response.body == b'{"a": 1, "b": [1.5, null]}\n"\\u00e9"\n'


async def test_an_item_that_does_not_fit_its_type_cuts_the_stream_short(caplog):
    app = App()

    @app.get("/items")
    async def items() -> AsyncIterable[Item]:
        yield Item(name="a", price=1)
        yield {"name": "b"}

    async with serve_app(app) as server:
        client = await RawClient.connect(server.port)
        await client.send(request_bytes("GET", "/items"))
        data = await client.read_all()
        await client.close()
    assert b'{"name":"a","price":1.0}\n' in data
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it truncated
    assert "response body of GET /items failed" in caplog.text


async def test_events_are_encoded_as_the_format_says():
    app = App()

    def header(response: Response):  # before the stream starts, as in FastAPI
        response.headers["x-chat"] = "1"

    @app.post("/chat", response_class=EventSourceResponse, status_code=201)
    async def chat(_: Annotated[None, Depends(header)]) -> AsyncIterable[ServerSentEvent]:
        yield ServerSentEvent(comment="two\nlines")
        yield ServerSentEvent(data=Item(name="a", price=2), event="item", id="7", retry=10)
        yield ServerSentEvent(raw_data="[DONE]\nok", event="done")
        yield ServerSentEvent(data="quoted")

    async with serve_app(app) as client:
        response = await client.post("/chat")
    assert response.status_code == 201
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-chat"] == "1"
    assert response.body == (
        b": two\n: lines\n\n"
        b'event: item\ndata: {"name":"a","price":2.0}\nid: 7\nretry: 10\n\n'
        b"event: done\ndata: [DONE]\ndata: ok\n\n"
        b'data: "quoted"\n\n'
    )


def test_an_event_refuses_what_the_format_cannot_carry():
    with pytest.raises(ValueError, match="single line"):
        ServerSentEvent(event="a\nb")
    with pytest.raises(ValueError, match="null"):
        ServerSentEvent(id="a\0")
    with pytest.raises(ValueError, match="both"):
        ServerSentEvent(data=1, raw_data="1")
    with pytest.raises(ValueError, match="0 or more"):
        ServerSentEvent(retry=-1)


@pytest.mark.parametrize("asynchronous", [True, False], ids=["async", "sync"])
async def test_an_idle_event_stream_sends_keep_alive_pings(asynchronous):
    app = App()

    if asynchronous:

        @app.get("/events", response_class=FastPings)
        async def events() -> AsyncIterable[dict]:
            await asyncio.sleep(0.3)
            yield {"n": 1}

    else:

        @app.get("/events", response_class=FastPings)
        def events() -> Iterable[dict]:
            time.sleep(0.3)
            yield {"n": 1}

    async with serve_app(app) as client:
        response = await client.get("/events")
    pings, _, last = response.body.rpartition(b": ping\n\n")
    assert pings.startswith(b": ping\n\n")  # at least two while the generator slept
    assert last == b'data: {"n":1}\n\n'  # typed (dict): dumped compact, as pydantic does


async def read_until(client: RawClient, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        piece = await client.read_some()
        assert piece, f"closed before {marker!r}: {data!r}"
        data += piece
    return data


async def wait_for(event: threading.Event | asyncio.Event, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        assert time.monotonic() < deadline, "not set in time"
        await asyncio.sleep(0.01)


async def test_a_client_that_leaves_stops_an_idle_async_generator():
    app = App()
    stopped = asyncio.Event()
    forever = asyncio.Event()

    @app.get("/events", response_class=EventSourceResponse)  # pings every 15 s: none here
    async def events():
        try:
            yield {"n": 1}
            await forever.wait()
            yield {"n": 2}
        finally:
            stopped.set()

    async with serve_app(app) as server:
        client = await RawClient.connect(server.port)
        await client.send(request_bytes("GET", "/events"))
        await read_until(client, b'data: {"n": 1}')
        await client.close()
        await wait_for(stopped, timeout=1.0)


async def test_a_client_that_leaves_stops_a_sync_generator_between_items():
    app = App()
    stopped = threading.Event()
    sent = []

    @app.get("/lines")
    def lines():
        try:
            for n in range(10_000):
                sent.append(n)
                yield n
                time.sleep(0.01)
        finally:
            stopped.set()

    async with serve_app(app) as server:
        client = await RawClient.connect(server.port)
        await client.send(request_bytes("GET", "/lines"))
        await read_until(client, b"0\n")
        await client.close()
        await wait_for(stopped, timeout=2.0)
    assert len(sent) < 1000


async def test_background_tasks_run_after_the_stream_has_ended_and_after_a_client_left():
    app = App()
    order: list[str] = []
    release = asyncio.Event()

    async def note(what: str):
        order.append(what)

    async def resource():
        yield "db"
        order.append("dependency closed")

    @app.get("/stream/{n}")
    async def stream(n: int, tasks: BackgroundTasks, db: Annotated[str, Depends(resource)]):
        tasks.add_task(note, f"task {n}")
        yield {"n": n}
        if n == 2:
            await release.wait()  # the client leaves here
        order.append(f"stream {n} ended")

    async with serve_app(app) as server:
        client = await RawClient.connect(server.port)
        await client.send(request_bytes("GET", "/stream/1"))
        response = await client.read_response()
        assert response.body == b'{"n": 1}\n'
        await server.wait_for_background()
        assert order == ["stream 1 ended", "task 1", "dependency closed"]

        order.clear()
        await client.send(request_bytes("GET", "/stream/2"))
        await read_until(client, b'{"n": 2}')
        await client.close()
        await server.wait_for_background()
    assert order == ["task 2", "dependency closed"]  # the generator never got further


async def test_a_raw_stream_keeps_its_response_class():
    app = App()

    class PNGStream(StreamingResponse):
        media_type = "image/png"

    @app.get("/image", response_class=PNGStream)
    async def image() -> AsyncIterable[bytes]:
        yield b"\x89PNG"
        yield "text"

    async with serve_app(app) as client:
        response = await client.get("/image")
    assert response.headers["content-type"] == "image/png"
    assert response.body == b"\x89PNGtext"


def test_a_generator_with_a_response_class_that_cannot_stream_is_a_registration_error():
    app = App()
    with pytest.raises(RouteDefinitionError, match="HTMLResponse cannot stream"):

        @app.get("/page", response_class=HTMLResponse)
        def page():
            yield "<p>"

    with pytest.raises(RouteDefinitionError, match="response_model= does not apply"):

        @app.get("/items", response_model=Item)
        def items():
            yield {}
