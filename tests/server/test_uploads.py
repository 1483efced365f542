"""Uploads spooled to temporary files: they outlive the response for the tasks that use them,
and no temporary file is left on any path (each test counts them).

The server runs in this process with `tempfile.tempdir` pointed at a fresh
directory, so `temp_files` sees exactly the uploads' files: the directory's
entries and the unlinked files still held open there.
"""

import asyncio
import contextlib
import hashlib
import socket
import struct
import tempfile
from collections.abc import Callable
from typing import Annotated

import pytest

from rawbg import App, BackgroundTasks, Form, UploadFile
from rawbg.uploads import SPOOL_MAX_SIZE
from tests.support.forms import (
    MULTIPART,
    file_part_head,
    multipart,
    pattern,
    temp_files,
)
from tests.support.wire import WAIT, RawClient, request_bytes, split_head

KiB = 1024
MiB = 1024 * KiB
ON_DISK = SPOOL_MAX_SIZE + 512 * KiB  # an upload this large has left memory for a file


class Spool:
    """Where the server's uploads go, and every upload it made (held here, so that the
    garbage collector cannot close one the server forgot: only rawbg's own clean-up can)."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.made: list[UploadFile] = []

    def files(self) -> list[str]:
        return temp_files(self.directory)

    def all_closed(self) -> bool:
        return bool(self.made) and all(upload.closed for upload in self.made)


@pytest.fixture
def spool(tmp_path, monkeypatch):
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    kept = Spool(directory)
    make = UploadFile.spooled.__func__

    def spooled(cls, **options):
        upload = make(cls, **options)
        kept.made.append(upload)
        return upload

    monkeypatch.setattr(UploadFile, "spooled", classmethod(spooled))
    yield kept
    for upload in kept.made:  # whatever a failing test left open
        upload.close_now()


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def no_connections(server) -> None:
    await until(lambda: not server.connection_tasks)


async def post_upload(port: int, path: str, body: bytes):
    """One multipart upload on a fresh connection; its response."""
    client = await RawClient.connect(port)
    try:
        await client.send(upload_head(path, len(body)) + body)
        return await client.read_response(method=b"POST", timeout=30)
    finally:
        await client.close()


def upload_head(path: str, length: int | None) -> bytes:
    framing = {"content-length": str(length)} if length else {"transfer-encoding": "chunked"}
    return request_bytes("POST", path, headers={"content-type": MULTIPART, **framing})


# -- uploads handed to background tasks ----------------------------------------------------


def task_app(log: dict) -> App:
    app = App()

    async def digest_later(upload: UploadFile) -> None:
        log["open while the task ran"] = not upload.closed
        await log["release"].wait()
        digest = hashlib.sha256()
        while chunk := await upload.read(256 * KiB):
            digest.update(chunk)
        log["digest"] = digest.hexdigest()
        log["upload"] = upload
        if log.get("fail"):
            raise RuntimeError("the task failed after reading")

    async def never_ends(upload: UploadFile) -> None:
        log["upload"] = upload
        log["started"].set()
        await asyncio.Event().wait()

    @app.post("/later", max_body_size=16 * MiB)
    async def later(file: UploadFile, tasks: BackgroundTasks):
        tasks.add_task(digest_later, file)
        return {"queued": file.filename}

    @app.post("/forever", max_body_size=16 * MiB)
    async def forever(file: UploadFile, tasks: BackgroundTasks):
        tasks.add_task(never_ends, file)
        return {"queued": file.filename}

    return app


def upload_body(size: int) -> tuple[bytes, str]:
    content = b"".join(pattern(size))
    body = multipart([("file", "data.bin", content, "application/octet-stream")])
    return body, hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("fails", [False, True], ids=["task-succeeds", "task-fails"])
async def test_an_upload_given_to_a_task_stays_open_until_the_task_ends_then_is_removed(
    serve, spool, fails
):
    log: dict = {"release": asyncio.Event(), "fail": fails}
    body, expected = upload_body(2 * MiB)
    async with serve(task_app(log)) as server:
        response = await post_upload(server.port, "/later", body)
        assert response.status_code == 200
        # the response is out; the task holds the upload, which is still on disk
        await until(lambda: "open while the task ran" in log)
        assert log["open while the task ran"]
        assert len(spool.files()) == 1
        log["release"].set()
        await server.wait_background_idle()
        assert log["digest"] == expected  # the task read every byte, after the response
        assert log["upload"].closed
        assert spool.files() == []
    assert spool.all_closed()


async def test_shutdown_while_a_task_holds_an_upload_closes_and_removes_it(serve, spool):
    log: dict = {"started": asyncio.Event()}
    body, _ = upload_body(2 * MiB)
    async with serve(task_app(log), timeout_graceful_shutdown=0.2) as server:
        response = await post_upload(server.port, "/forever", body)
        assert response.status_code == 200
        async with asyncio.timeout(WAIT):
            await log["started"].wait()
        assert len(spool.files()) == 1
    # the server has stopped: the task was cancelled at the graceful timeout
    assert log["upload"].closed
    assert spool.files() == []
    assert spool.all_closed()


# -- every way an upload can fail ------------------------------------------------------------


def failing_app() -> App:
    app = App()

    @app.post("/upload", max_body_size=4 * MiB, form_limits={"max_files": 1})
    async def upload(files: list[UploadFile], mode: Annotated[str, Form()] = "ok"):
        if mode == "raise":
            raise RuntimeError("the handler failed after the upload")
        return {"sizes": [f.size for f in files]}

    return app


async def send_until_spooled(client: RawClient, spool, head: bytes, *, chunked: bool) -> None:
    """Send a request head and the first part's opening, then file data until the
    server has moved the upload to a temporary file."""
    await client.send(head + (b"%x\r\n" % len(file_part_head("files", "a"))) * chunked)
    opening = file_part_head("files", "a") + (b"\r\n" if chunked else b"")
    await client.send(opening)
    for piece in pattern(ON_DISK):
        await client.send((b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece)
    await until(lambda: len(spool.files()) == 1)


def reset(client: RawClient) -> None:
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.transport.abort()


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_a_client_that_leaves_mid_upload_leaves_no_temporary_file(serve, spool, how):
    async with serve(failing_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await send_until_spooled(client, spool, upload_head("/upload", 3 * MiB), chunked=False)
        finally:
            if how == "reset":
                reset(client)
            else:
                await client.close()
        await no_connections(server)
        assert spool.files() == []
    assert spool.all_closed()


async def test_an_upload_over_the_routes_body_limit_gets_413_and_leaves_no_file(serve, spool):
    async with serve(failing_app()) as server:
        client = await RawClient.connect(server.port)
        try:
            await send_until_spooled(client, spool, upload_head("/upload", None), chunked=True)
            for piece in pattern(4 * MiB):  # past the route's 4 MiB, still chunked
                await client.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            data = await client.read_all(timeout=30)
        except ConnectionResetError:
            data = b""
        finally:
            await client.close()
        await no_connections(server)
    assert split_head(data)[0].startswith(b"HTTP/1.1 413 ")
    assert spool.files() == []
    assert spool.all_closed()


async def test_an_upload_past_a_form_limit_gets_400_and_leaves_no_file(serve, spool):
    first = b"".join(pattern(ON_DISK))
    body = multipart(
        [
            ("files", "a", first, "application/octet-stream"),
            ("files", "b", b"second file", "application/octet-stream"),
        ]
    )
    async with serve(failing_app()) as server:
        response = await post_upload(server.port, "/upload", body)
        await no_connections(server)
    assert (response.status_code, response.body) == (
        400,
        b'{"detail":"too many files: the limit is 1"}',
    )
    assert spool.files() == []
    assert spool.all_closed()


async def test_a_handler_that_raises_after_an_upload_leaves_no_file(serve, spool):
    body = multipart(
        [("mode", "raise"), ("files", "a", b"".join(pattern(ON_DISK)), "application/x")]
    )
    async with serve(failing_app()) as server:
        response = await post_upload(server.port, "/upload", body)
        await no_connections(server)
    assert response.status_code == 500
    assert spool.files() == []
    assert spool.all_closed()


async def test_a_server_shutting_down_mid_upload_answers_408_and_leaves_no_file(serve, spool):
    async def trickle(client: RawClient) -> None:  # alive, so that only shutdown ends it
        with contextlib.suppress(ConnectionError):
            while True:
                await client.send(b"t")
                await asyncio.sleep(0.05)

    async with serve(failing_app(), timeout_keep_alive=0.5) as server:
        client = await RawClient.connect(server.port)
        await send_until_spooled(client, spool, upload_head("/upload", 3 * MiB), chunked=False)
        sending = asyncio.create_task(trickle(client))
        # leave the block: the server shuts down with the upload half-way
    try:
        data = await client.read_all()
    finally:
        sending.cancel()
        await client.close()
    assert split_head(data)[0].startswith(b"HTTP/1.1 408 ")
    assert b"shut down" in data
    assert spool.files() == []
    assert spool.all_closed()


async def test_a_completed_upload_is_closed_once_the_response_is_sent(serve, spool):
    body = multipart([("files", "a", b"".join(pattern(ON_DISK)), "application/x")])
    async with serve(failing_app()) as server:
        response = await post_upload(server.port, "/upload", body)
        await server.wait_background_idle()
        assert spool.files() == []
    assert spool.all_closed()
    assert response.body == b'{"sizes":[%d]}' % ON_DISK
