"""StaticFiles mounted on an App, over a real socket: files, HEAD, ETag/Last-Modified and
304, Range (RFC 9110 14), html=True, and nothing outside the directory, however asked."""

import email.utils
import os

import pytest

from rawbg import App
from rawbg.staticfiles import StaticFiles
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes

CONTENT = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "data.bin").write_bytes(CONTENT)
    (root / "style.css").write_text("body { color: green; }")
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(root / "style.css", root / "alias.css")
    return root


def static_app(root, **options) -> App:
    app = App()

    @app.get("/static/own")
    async def own():  # a route wins over the mount under it
        return "route"

    app.mount("/static", StaticFiles(directory=root, **options), name="static")
    return app


async def raw_get(port: int, target: str, headers: dict[str, str] | None = None, method="GET"):
    client = await RawClient.connect(port)
    try:
        await client.send(request_bytes(method, target, headers=headers))
        return await client.read_response(method=method.encode())
    finally:
        await client.close()


async def test_a_file_is_served_with_its_validators(site):
    async with serve_app(static_app(site)) as client:
        response = await client.get("/static/style.css")
        head = await client.head("/static/style.css")
        own = await client.get("/static/own")
    assert response.status_code == 200
    assert response.body == b"body { color: green; }"
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["content-length"] == "22"
    assert response.headers["accept-ranges"] == "bytes"
    mtime = os.stat(site / "style.css").st_mtime
    assert response.headers["last-modified"] == email.utils.formatdate(mtime, usegmt=True)
    assert response.headers["etag"].startswith('"')
    assert (head.status_code, head.body, head.headers["content-length"]) == (200, b"", "22")
    assert head.headers["etag"] == response.headers["etag"]
    assert own.body == b'"route"'


async def test_a_missing_file_or_a_directory_without_html_is_404_and_post_is_405(site):
    async with serve_app(static_app(site)) as client:
        assert (await client.get("/static/nothing.txt")).status_code == 404
        assert (await client.get("/static/docs/")).status_code == 404
        refused = await client.post("/static/style.css")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


async def test_if_none_match_and_if_modified_since_answer_304(site):
    async with serve_app(static_app(site)) as client:
        first = await client.get("/static/style.css")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        by_tag = await client.get("/static/style.css", headers={"if-none-match": f'"x", W/{etag}'})
        by_date = await client.get("/static/style.css", headers={"if-modified-since": modified})
        other_tag = await client.get(
            "/static/style.css", headers={"if-none-match": '"x"', "if-modified-since": modified}
        )
        earlier = await client.get(
            "/static/style.css", headers={"if-modified-since": "Mon, 01 Jan 1990 00:00:00 GMT"}
        )
    assert (by_tag.status_code, by_tag.body, by_tag.headers["etag"]) == (304, b"", etag)
    assert "content-length" not in by_tag.headers
    assert by_date.status_code == 304
    assert other_tag.status_code == 200  # If-None-Match decides when it is sent (RFC 9110 13.2.2)
    assert earlier.status_code == 200


@pytest.mark.parametrize(
    ("range_", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, 1023), ("bytes=-24", 1000, 1023),
     ("bytes=1000-5000", 1000, 1023), ("bytes=-5000", 0, 1023)],
)  # fmt: skip
async def test_a_range_is_answered_with_206_and_only_its_bytes(site, range_, first, last):
    async with serve_app(static_app(site)) as server:
        response = await raw_get(server.port, "/static/data.bin", {"range": range_})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/1024"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.body == CONTENT[first : last + 1]


@pytest.mark.parametrize("range_", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
async def test_a_range_past_the_end_is_416_with_the_size(site, range_):
    async with serve_app(static_app(site)) as server:
        response = await raw_get(server.port, "/static/data.bin", {"range": range_})
    assert (response.status_code, response.headers["content-range"]) == (416, "bytes */1024")


@pytest.mark.parametrize(
    "range_", ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=a-b", "bytes=-", "bytes"]
)
async def test_a_range_it_does_not_serve_is_ignored_and_the_whole_file_sent(site, range_):
    async with serve_app(static_app(site)) as server:
        response = await raw_get(server.port, "/static/data.bin", {"range": range_})
    assert (response.status_code, response.body) == (200, CONTENT)


async def test_if_range_that_no_longer_matches_sends_the_whole_file(site):
    async with serve_app(static_app(site)) as server:
        etag = (await raw_get(server.port, "/static/data.bin")).headers["etag"]
        same = await raw_get(
            server.port, "/static/data.bin", {"range": "bytes=0-0", "if-range": etag}
        )
        old = await raw_get(
            server.port, "/static/data.bin", {"range": "bytes=0-0", "if-range": '"old"'}
        )
    assert (same.status_code, same.body) == (206, CONTENT[:1])
    assert (old.status_code, old.body) == (200, CONTENT)


async def test_html_mode_serves_index_redirects_to_the_slash_and_serves_404_html(site):
    (site / "404.html").write_text("<p>none</p>")
    async with serve_app(static_app(site, html=True)) as client:
        index = await client.get("/static/docs/")
        redirect = await client.get("/static/docs?x=1")
        missing = await client.get("/static/nothing")
    assert (index.status_code, index.body) == (200, b"<p>docs</p>")
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith("/static/docs/?x=1")
    assert (missing.status_code, missing.body) == (404, b"<p>none</p>")


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/docs/..%2f..%2fsecret.txt",
        "/static/.%2e/secret.txt",
        "/static/..%5csecret.txt",
        "/static/leak.txt",  # a symlink to a file outside the directory
        "/static/x%00.txt",
    ],
)
async def test_nothing_outside_the_directory_is_served(site, target):
    async with serve_app(static_app(site)) as server:
        response = await raw_get(server.port, target)
    assert response.status_code == 404
    assert b"secret" not in response.body


async def test_a_symlink_inside_the_directory_is_served_and_follow_symlink_trusts_any(site):
    async with serve_app(static_app(site)) as client:
        assert (await client.get("/static/alias.css")).status_code == 200
    async with serve_app(static_app(site, follow_symlink=True)) as server:
        assert (await raw_get(server.port, "/static/leak.txt")).body == b"secret"
        assert (await raw_get(server.port, "/static/%2e%2e/secret.txt")).status_code == 404


def test_a_missing_directory_is_an_error_unless_check_dir_is_false(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist"):
        StaticFiles(directory=tmp_path / "none")
    StaticFiles(directory=tmp_path / "none", check_dir=False)  # created later, say


async def test_a_directory_created_after_the_mount_is_served(tmp_path):
    later = tmp_path / "later"
    app = static_app(later, check_dir=False)
    async with serve_app(app) as client:
        assert (await client.get("/static/a.txt")).status_code == 404
        later.mkdir()
        (later / "a.txt").write_text("a")
        assert (await client.get("/static/a.txt")).body == b"a"
