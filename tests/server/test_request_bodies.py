"""Request bodies read as the app asks: streamed under flow control, per-route limits, the rest.

Real sockets throughout: what is asserted is what the client sends and sees.
"""

import asyncio
import hashlib
from typing import Annotated

import pytest

from rawbg import APIRouter, App, Form, PlainTextResponse, Request, UploadFile
from rawbg.server.request_body import DRAIN_LIMIT
from rawbg.wire.protocol import INPUT_HIGH_WATER
from tests.support.forms import MULTIPART, file_part_head, file_part_tail, multipart, pattern
from tests.support.wire import WAIT, RawClient, request_bytes, split_head

KiB = 1024
MiB = 1024 * KiB

# asyncio reads at most this much from a socket at once (selector transports' max_size)
MAX_READ = 256 * KiB


def stream_app(seen: dict) -> App:
    app = App()

    @app.post("/stream")
    async def stream(request: Request):
        digest = hashlib.sha256()
        async for chunk in request.stream():
            seen.setdefault("chunks", []).append(len(chunk))
            if "first" in seen:
                seen["first"].set()
            digest.update(chunk)
        return PlainTextResponse(digest.hexdigest())

    @app.post("/json")
    async def json_body(item: dict):
        return item

    @app.get("/hello")
    async def hello():
        return PlainTextResponse("hello")

    @app.post("/ignore")
    async def ignore(request: Request):
        return PlainTextResponse("ignored")

    return app


async def test_a_handler_streams_the_body_as_it_arrives_before_it_is_complete(serve):
    seen = {"first": asyncio.Event()}
    async with serve(stream_app(seen)) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(request_bytes("POST", "/stream", headers={"content-length": "6"}))
            await client.send(b"abc")
            async with asyncio.timeout(WAIT):  # the handler has the first half, the rest unsent
                await seen["first"].wait()
            await client.send(b"def")
            response = await client.read_response(method=b"POST")
        finally:
            await client.close()
    assert response.body.decode() == hashlib.sha256(b"abcdef").hexdigest()


async def test_a_large_body_streams_in_pieces_no_larger_than_flow_control_allows(serve):
    size = 24 * MiB
    expected = hashlib.sha256()
    seen: dict = {}
    async with serve(stream_app(seen), max_body_size=size) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/stream", headers={"content-length": str(size)})
            )
            for piece in pattern(size):
                expected.update(piece)
                await client.send(piece)
            response = await client.read_response(method=b"POST", timeout=60)
        finally:
            await client.close()
    assert response.body.decode() == expected.hexdigest()
    assert sum(seen["chunks"]) == size
    # never more than what piled up before reading paused, plus one read of the socket
    assert max(seen["chunks"]) <= INPUT_HIGH_WATER + MAX_READ


def limits_app() -> App:
    app = App(max_body_size=1 * KiB)
    uploads = APIRouter(prefix="/uploads", max_body_size=64 * KiB)

    @app.post("/items")
    async def items(item: dict):
        return {"keys": len(item)}

    @uploads.post("/big")
    async def big(file: UploadFile):
        return {"size": file.size}

    @uploads.post("/small", max_body_size=4 * KiB)
    async def small(file: UploadFile):
        return {"size": file.size}

    app.include_router(uploads)
    return app


def upload_of(size: int) -> bytes:
    return multipart([("file", "f.bin", b"x" * size, "application/octet-stream")])


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/items", b'{"a": "' + b"x" * 900 + b'"}', 200),
        ("/items", b'{"a": "' + b"x" * 1100 + b'"}', 413),
        ("/uploads/big", upload_of(40 * KiB), 200),
        ("/uploads/big", upload_of(70 * KiB), 413),
        ("/uploads/small", upload_of(3 * KiB), 200),
        ("/uploads/small", upload_of(5 * KiB), 413),
    ],
    ids=["app-fits", "app-over", "router-fits", "router-over", "route-fits", "route-over"],
)
async def test_the_most_specific_max_body_size_applies(serve, path, body, status):
    kind = "application/json" if path == "/items" else MULTIPART
    async with serve(limits_app()) as server:  # the server's own default is 1 MiB
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", path, headers={"content-type": kind}, body=body)
            )
            response = await client.read_response(method=b"POST")
        finally:
            await client.close()
    assert response.status_code == status, response.body


@pytest.mark.parametrize("path", ["/json", "/raw"], ids=["read-whole", "streamed"])
async def test_a_body_sent_with_its_head_keeps_the_servers_limit_where_its_route_sets_none(
    serve, path
):
    # One route's larger limit lets a body past the door; the routes without one
    # must still refuse more than the server's own limit, even when the whole body
    # arrived with the head (no reader left to enforce it).
    app = App()

    @app.post("/big", max_body_size=64 * KiB)
    async def big(item: dict):
        return {"keys": len(item)}

    @app.post("/json")
    async def json_body(item: dict):
        return {"keys": len(item)}

    @app.post("/raw")
    async def raw(request: Request):
        return {"size": len(await request.body())}

    body = b'{"a": "' + b"x" * (32 * KiB) + b'"}'
    async with serve(app, max_body_size=1 * KiB) as server:
        for target, status in (("/big", 200), (path, 413)):
            client = await RawClient.connect(server.port)
            try:
                await client.send(
                    request_bytes(
                        "POST", target, headers={"content-type": "application/json"}, body=body
                    )
                )
                response = await client.read_response(method=b"POST")
            finally:
                await client.close()
            assert response.status_code == status, (target, response.body)


async def test_a_route_may_take_more_than_the_server_default_and_others_keep_it(serve):
    app = App()

    @app.post("/upload", max_body_size=8 * MiB)
    async def upload(file: UploadFile):
        return {"size": file.size}

    @app.post("/json")
    async def json_body(item: dict):
        return item

    body = upload_of(3 * MiB)
    async with serve(app, max_body_size=1 * MiB) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/upload", headers={"content-type": MULTIPART}, body=body)
            )
            taken = await client.read_response(method=b"POST", timeout=30)
        finally:
            await client.close()
        client = await RawClient.connect(server.port)
        try:  # the declared length is over every limit but the upload route's: refused late
            await client.send(
                request_bytes("POST", "/json", headers={"content-length": str(2 * MiB)})
            )
            refused = await client.read_all()
        finally:
            await client.close()
        client = await RawClient.connect(server.port)
        try:  # over every route's limit: refused with the head, before routing
            await client.send(
                request_bytes("POST", "/json", headers={"content-length": str(9 * MiB)})
            )
            early = await client.read_all()
        finally:
            await client.close()
    assert (taken.status_code, taken.body) == (200, b'{"size":3145728}')
    assert split_head(refused)[0].startswith(b"HTTP/1.1 413 ")
    assert b"exceeds 1048576" in refused
    assert split_head(early)[0].startswith(b"HTTP/1.1 413 ")
    assert b"exceeds 8388608" in early


async def test_100_continue_is_sent_when_the_handler_first_reads_not_before(serve):
    reads = asyncio.Event()
    app = App()

    @app.post("/late")
    async def late(request: Request):
        await reads.wait()
        return PlainTextResponse(await request.body())

    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes(
                    "POST", "/late", headers={"expect": "100-continue", "content-length": "3"}
                )
            )
            with pytest.raises(TimeoutError):  # the handler has not asked for the body yet
                await client.read_some(timeout=0.3)
            reads.set()
            interim = await client.read_some()
            await client.send(b"abc")
            response = await client.read_response(method=b"POST")
        finally:
            await client.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
    assert response.body == b"abc"


async def test_a_route_that_answers_without_the_body_never_asks_for_it(serve):
    app = App()

    @app.post("/upload")
    async def upload(request: Request):
        return PlainTextResponse("no thanks", status_code=401)

    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes(
                    "POST", "/upload", headers={"expect": "100-continue", "content-length": "5000"}
                )
            )
            data = await client.read_all()
        finally:
            await client.close()
    assert data.startswith(b"HTTP/1.1 401 ")
    assert b"100 Continue" not in data
    assert split_head(data)[1][b"connection"] == b"close"


async def test_a_small_unread_rest_is_dropped_and_the_connection_carries_on(serve):
    async with serve(stream_app({})) as server:
        client = await RawClient.connect(server.port)
        try:
            rest = b"r" * (DRAIN_LIMIT // 2)
            await client.send(request_bytes("POST", "/ignore", body=rest))
            first = await client.read_response(method=b"POST")
            await client.send(request_bytes("GET", "/hello"))
            second = await client.read_response()
        finally:
            await client.close()
    assert (first.body, second.body) == (b"ignored", b"hello")


async def test_a_large_unread_rest_closes_the_connection_after_a_readable_response(serve):
    async with serve(stream_app({}), max_body_size=8 * MiB) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/ignore", headers={"content-length": str(4 * MiB)})
            )
            for piece in pattern(2 * MiB):  # the client goes on sending before it reads
                await client.send(piece)
            data = await client.read_all()
        finally:
            await client.close()
    status, _headers, body = split_head(data)
    assert status.startswith(b"HTTP/1.1 200 ")
    assert body == b"ignored"


async def test_a_body_that_grows_past_a_routes_limit_mid_stream_is_413(serve):
    app = App()

    @app.post("/stream", max_body_size=100 * KiB)
    async def stream(request: Request):
        async for _ in request.stream():
            pass
        return PlainTextResponse("all read")

    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            await client.send(
                request_bytes("POST", "/stream", headers={"transfer-encoding": "chunked"})
            )
            for _ in range(4):  # 4 x 32 KiB, over the route's 100 KiB
                await client.send(b"8000\r\n" + b"c" * 32 * KiB + b"\r\n")
            data = await client.read_all()
        finally:
            await client.close()
    assert split_head(data)[0].startswith(b"HTTP/1.1 413 ")
    assert b"exceeds 102400" in data


async def test_a_stalled_upload_is_refused_408_by_the_slow_body_rule(serve):
    app = App()

    @app.post("/upload")
    async def upload(file: UploadFile, note: Annotated[str, Form()] = ""):
        return {"size": file.size}

    async with serve(app, timeout_keep_alive=0.3, min_body_rate=1000) as server:
        client = await RawClient.connect(server.port)
        try:
            head = file_part_head("file", "f.bin")
            await client.send(
                request_bytes(
                    "POST",
                    "/upload",
                    headers={"content-type": MULTIPART, "content-length": str(10 * KiB)},
                )
                + head
            )
            for _ in range(20):  # 20 bytes/s: under the 1000 bytes/s the rule asks for
                await client.send(b"z")
                await asyncio.sleep(0.05)
            data = await client.read_all()
        finally:
            await client.close()
    assert split_head(data)[0].startswith(b"HTTP/1.1 408 ")
    assert b"too slow" in data


async def test_an_upload_sent_in_odd_sized_pieces_arrives_byte_for_byte_on_disk(serve):
    """A sanity check of the framing: the upload's bytes, reassembled, are the bytes sent."""
    app = App()

    @app.post("/upload", max_body_size=16 * MiB)
    async def upload(file: UploadFile):
        digest = hashlib.sha256()
        while chunk := await file.read(1 * MiB):
            digest.update(chunk)
        return {"size": file.size, "sha256": digest.hexdigest(), "memory": file.in_memory}

    size = 5 * MiB + 17
    expected = hashlib.sha256()
    head, tail = file_part_head("file", "f.bin"), file_part_tail()
    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        try:
            length = len(head) + size + len(tail)
            await client.send(
                request_bytes(
                    "POST",
                    "/upload",
                    headers={"content-type": MULTIPART, "content-length": str(length)},
                )
                + head
            )
            for piece in pattern(size, chunk=7 * KiB + 3):  # odd sizes: boundaries fall anywhere
                expected.update(piece)
                await client.send(piece)
            await client.send(tail)
            response = await client.read_response(method=b"POST", timeout=30)
        finally:
            await client.close()
    assert response.status_code == 200, response.body
    assert response.body == (
        b'{"size":%d,"sha256":"%s","memory":false}' % (size, expected.hexdigest().encode())
    )
