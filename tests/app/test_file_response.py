"""FileResponse on the wire: length, type, disposition, HEAD, chunks under flow control, errors."""

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import AsyncGenerator
from typing import ClassVar

import pytest

from rawbg import App, FileResponse
from rawbg.responses import FILE_CHUNK_SIZE
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes, split_head


class CountingFileResponse(FileResponse):
    """Records the size of every chunk read from the file, as it is read."""

    reads: ClassVar[list[int]] = []

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        async for piece in super().chunks():
            CountingFileResponse.reads.append(len(piece))
            yield piece


def file_app(path: str, **options) -> App:
    app = App()

    @app.get("/file")
    async def send():
        return FileResponse(path, **options)

    return app


async def test_a_file_is_sent_with_its_length_type_and_modification_time(tmp_path):
    video = tmp_path / "large-video-file.mp4"
    video.write_bytes(b"Fake video bytes")
    os.utime(video, (0, 784111777))
    async with serve_app(file_app(str(video))) as client:
        response = await client.get("/file")
    assert response.status_code == 200
    assert response.body == b"Fake video bytes"
    assert response.headers["content-length"] == "16"
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["last-modified"] == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert "content-disposition" not in response.headers
    assert "transfer-encoding" not in response.headers


async def test_text_files_get_a_charset_and_unknown_ones_text_plain(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "blob.unknownext").write_text("?")
    async with serve_app(file_app(str(tmp_path / "notes.txt"))) as client:
        assert (await client.get("/file")).headers["content-type"] == "text/plain; charset=utf-8"
    async with serve_app(file_app(str(tmp_path / "blob.unknownext"))) as client:
        assert (await client.get("/file")).headers["content-type"] == "text/plain; charset=utf-8"


async def test_a_filename_makes_it_an_attachment_named_safely(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"\x00\x01")
    async with serve_app(file_app(str(data), filename="report.csv")) as client:
        response = await client.get("/file")
        assert response.headers["content-disposition"] == 'attachment; filename="report.csv"'
        assert response.headers["content-type"] == "text/csv; charset=utf-8"  # from the filename
    app = file_app(str(data), filename="résumé.pdf", content_disposition_type="inline")
    async with serve_app(app) as client:
        response = await client.get("/file")
        assert response.headers["content-disposition"] == (
            "inline; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"
        )


async def test_response_class_file_response_sends_the_returned_path(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"abc")
    app = App()

    @app.get("/", response_class=FileResponse)
    async def main():
        return str(video)

    async with serve_app(app) as client:
        response = await client.get("/")
    assert (response.status_code, response.body) == (200, b"abc")


async def test_head_sends_the_files_headers_and_no_body(tmp_path):
    data = tmp_path / "page.html"
    data.write_bytes(b"<p>" * 1000)
    async with serve_app(file_app(str(data))) as client:
        raw = await RawClient.connect(client.port)
        # HEAD then GET on one connection: a body after the HEAD would corrupt the GET
        await raw.send(request_bytes("HEAD", "/file") + request_bytes("GET", "/file"))
        head = await raw.read_response(method=b"HEAD")
        get = await raw.read_response()
        await raw.close()
    assert head.status_code == 200
    assert (head.headers["content-length"], head.body) == ("3000", b"")
    assert head.headers["content-type"] == "text/html; charset=utf-8"
    assert get.body == b"<p>" * 1000


async def test_a_large_file_is_read_in_bounded_chunks_only_as_fast_as_the_client_reads(tmp_path):
    size = 32 * 1024 * 1024
    content = os.urandom(1024 * 1024) * 32
    big = tmp_path / "big.bin"
    big.write_bytes(content)
    CountingFileResponse.reads = []
    app = App()

    @app.get("/big")
    async def send():
        return CountingFileResponse(big)

    async with serve_app(app) as client:
        sock = socket.create_connection(("127.0.0.1", client.port))
        sock.setblocking(False)
        sock.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        # not reading: the server must stop reading the file once the socket buffers
        # are full (a few MiB: the kernel's send buffer grows to tcp_wmem's 4 MiB)
        stalled_at = -1
        async with asyncio.timeout(10):
            while stalled_at != len(CountingFileResponse.reads):
                stalled_at = len(CountingFileResponse.reads)
                await asyncio.sleep(0.3)
        read_ahead = sum(CountingFileResponse.reads)
        assert 0 < read_ahead < 12 * 1024 * 1024
        # now read it all: every byte arrives, in order
        loop = asyncio.get_running_loop()
        received = bytearray()
        head_end = -1
        async with asyncio.timeout(30):
            while head_end < 0 or len(received) - head_end < size:
                piece = await loop.sock_recv(sock, 1 << 20)
                assert piece, f"closed after {len(received)} bytes"
                received += piece
                if head_end < 0 and b"\r\n\r\n" in received:
                    head_end = received.index(b"\r\n\r\n") + 4
        sock.close()
    status_line, headers, body = split_head(bytes(received))
    assert status_line == b"HTTP/1.1 200 OK"
    assert headers[b"content-length"] == str(size).encode()
    assert hashlib.sha256(body).digest() == hashlib.sha256(content).digest()
    assert max(CountingFileResponse.reads) == FILE_CHUNK_SIZE
    assert sum(CountingFileResponse.reads) == size


async def test_a_missing_file_is_a_500_with_one_log_line_naming_the_route_and_path(
    tmp_path, caplog
):
    missing = tmp_path / "nope.txt"
    async with serve_app(file_app(str(missing))) as client:
        with caplog.at_level(logging.ERROR, logger="rawbg.app"):
            response = await client.get("/file")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
        assert (await client.get("/file")).status_code == 500  # and it keeps serving
    records = [r for r in caplog.records if r.name == "rawbg.app"]
    assert records[0].getMessage() == f"GET /file: FileResponse: no file at {missing}"
    assert records[0].exc_info is None  # one line, no traceback: the path says it all


async def test_a_directory_is_not_a_file_to_send(tmp_path, caplog):
    async with serve_app(file_app(str(tmp_path))) as client:
        response = await client.get("/file")
    assert response.status_code == 500
    assert f"FileResponse: {tmp_path} is not a regular file" in caplog.text


async def test_a_file_shorter_than_announced_ends_the_connection_before_the_length(
    tmp_path, caplog
):
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"x" * 10)
    large.write_bytes(b"y" * 100)
    # the stat of another file stands for a file that shrank after it was looked at
    app = file_app(str(small), stat_result=os.stat(large))
    async with serve_app(app) as client:
        raw = await RawClient.connect(client.port)
        await raw.send(request_bytes("GET", "/file"))
        data = await raw.read_all()
        await raw.close()
    _, headers, body = split_head(data)
    assert headers[b"content-length"] == b"100"
    assert body == b"x" * 10  # the client can tell: 10 of 100 bytes, then the close
    assert "shrank while it was sent (90 of 100 bytes missing)" in caplog.text


def test_a_file_response_must_be_prepared_before_it_is_sent(tmp_path):
    response = FileResponse(tmp_path / "x")
    with pytest.raises(RuntimeError, match=r"prepare\(\) must run"):
        response.head_fields()
