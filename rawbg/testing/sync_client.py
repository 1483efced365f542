"""`TestClient`: test an app from plain synchronous code, over a real socket.

    from rawbg.testclient import TestClient

    def test_notification_is_written():
        with TestClient(app) as client:
            response = client.post("/send-notification/a@b.c")
            assert response.status_code == 200
        # the request's background tasks have run by the time post() returned

It is FastAPI's ``TestClient`` in shape (``client.get(url, params=, headers=,
cookies=, json=, data=)``, ``response.json()``, cookies kept between
requests, redirects followed), but not in mechanism: the app is served by a
real rawbg `Server` on an ephemeral port of 127.0.0.1, in a thread of its own
with its own event loop, and each request is a real HTTP/1.1 exchange on a new
connection. After each response the client waits until the server has no
background work left, so a test reads what the tasks wrote without sleeping,
as it would with Starlette's in-process client (``wait_for_background=False``
to look at the response while the tasks still run).

Used without ``with``, the server starts at the first request and stops when
the client is closed (`close`) or garbage-collected.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json as jsonlib
import mimetypes
import os
import secrets
import threading
import weakref
from collections.abc import Iterable, Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from rawbg import status
from rawbg.requests import Headers
from rawbg.server.server import serving

__all__ = ["TestClient", "TestResponse"]

QueryParams = Mapping[str, Any] | Iterable[tuple[str, Any]]
#: httpx's ``files=``: name -> a file, bytes, or (filename, content[, content type[, headers]])
Files = Mapping[str, Any] | Iterable[tuple[str, Any]]

# Redirect statuses a client follows, and how many in a row before it gives up
# (httpx's default is 20).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Who the app sees as the client: Starlette's test client says ("testclient",
# 50000), and FastAPI's tests expect it. The request really comes from
# 127.0.0.1; the test server reports this instead (ServerConfig.client_address),
# with no header the app could see. A test may send its own X-Forwarded-For
# (127.0.0.1 is a trusted proxy by default, --forwarded-allow-ips).
TEST_CLIENT_ADDRESS = ("testclient", 50000)
# The headers Starlette's test client (httpx's defaults, its own user agent)
# sends with every request, in its order: what an app that reads every header
# (a header parameter model) sees. ``client.headers.clear()`` drops them.
DEFAULT_HEADERS = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "user-agent": "testclient",
}
MAX_REDIRECTS = 20


#: each status code rawbg.status names -> that very int object. FastAPI's test client hands
#: back the int the app answered with (often one of these constants) and tests compare
#: it with ``is`` (``expect(response.status_code).to(be(status.HTTP_302_FOUND))``); a
#: number parsed from the wire is a new object above 256.
STATUS_OBJECTS: dict[int, int] = {
    code: code for name, code in vars(status).items() if name.startswith("HTTP_")
}


class TestResponse:
    """A response as the client received it."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        status_code: int,
        headers: Headers,
        body: bytes,
        http_version: str,
        *,
        url: str = "",
        reason_phrase: str = "",
    ) -> None:
        self.status_code = STATUS_OBJECTS.get(status_code, status_code)
        self.headers = headers
        self.body = body
        self.http_version = http_version
        self.url = url
        self.reason_phrase = reason_phrase

    @property
    def content(self) -> bytes:
        return self.body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies this response set (``set-cookie``), name to value."""
        jar: dict[str, str] = {}
        for line in self.headers.getlist("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(line)
            jar.update((name, morsel.value) for name, morsel in parsed.items())
        return jar

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECT_STATUSES and "location" in self.headers

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise AssertionError(f"{self.status_code} {self.reason_phrase}: {self.text[:200]}")

    def __repr__(self) -> str:
        return f"<TestResponse {self.status_code} {self.body[:60]!r}>"


class _ServerThread:
    """A `Server` for one app, running in a thread with its own event loop."""

    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: Any = None
        self._thread = threading.Thread(target=self._run, name="rawbg-testclient", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    @property
    def port(self) -> int:
        return int(self._server.port)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that started us
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving(self._app, **self._options) as server:
            self._server = server
            self._ready.set()
            await self._stop.wait()

    def wait_background_idle(self, timeout: float) -> None:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._server.wait_background_idle(), self._loop)
        future.result(timeout)

    def stop(self) -> None:
        """Shut the server down gracefully (its background work drains) and join the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        if self._failure is not None:
            raise self._failure


class CookieJar(dict[str, str]):
    """The client's cookies, name to value, with httpx's ``set``/``delete`` spelling."""

    def set(self, name: str, value: str) -> None:
        self[name] = value

    def delete(self, name: str) -> None:
        self.pop(name, None)


Headers_ = Mapping[str, str] | Iterable[tuple[str, str]]


class TestClient:
    """A synchronous HTTP client for one app, served for real on 127.0.0.1.

    Options not named here (``max_body_size=``, ``timeout_keep_alive=`` ...)
    are `ServerConfig` fields for the server it starts.

    ``root_path="/api/v1"`` stands for a proxy that serves the app under that
    prefix: the server has it as its ``root_path`` (``request.root_path``,
    ``url_for``), and a URL under the prefix (``client.get("/api/v1/items")``)
    reaches the app without it, as Starlette's client routes it.

    With ``raise_server_exceptions`` (the default, as Starlette's), an
    exception that ended in a 500 on the server is raised again from the call
    that made the request, so a test sees the app's own error; with False,
    the test gets the 500 response.
    """

    __test__ = False

    def __init__(
        self,
        app: Any,
        base_url: str = "http://testserver",
        *,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        wait_for_background: bool = True,
        timeout: float = 30.0,
        raise_server_exceptions: bool = True,
        root_path: str = "",
        **server_options: Any,
    ) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        #: the prefix the client's stand-in proxy strips (`ServerConfig.root_path`)
        self.root_path = root_path
        given = {name.lower(): value for name, value in (headers or {}).items()}
        self.headers: dict[str, str] = {**DEFAULT_HEADERS, **given}
        self.cookies = CookieJar(cookies or {})
        self.follow_redirects = follow_redirects
        self.wait_for_background = wait_for_background
        self.timeout = timeout
        self.raise_server_exceptions = raise_server_exceptions
        self._server_errors: list[Exception] = []  # appended by the server's thread
        server_options.setdefault("port", 0)
        server_options.setdefault("access_log", False)
        server_options.setdefault("client_address", TEST_CLIENT_ADDRESS)
        server_options["root_path"] = root_path
        self._server_options = server_options
        self._server: _ServerThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- life of the server --------------------------------------------------------

    def __enter__(self) -> TestClient:
        self._ensure_server()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server: in-flight requests finish and background work drains."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._server = None

    def _ensure_server(self) -> _ServerThread:
        if self._server is None:
            hook = self._server_errors.append
            hooks = getattr(self.app, "server_error_hooks", None)
            if hooks is not None and self.raise_server_exceptions:
                hooks.append(hook)
            self._server = _ServerThread(self.app, self._server_options)
            self._finalizer = weakref.finalize(self, _stop, self._server, hooks, hook)
        return self._server

    # -- requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Headers_ | None = None,
        cookies: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | bytes | str | None = None,
        files: Files | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        follow_redirects: bool | None = None,
    ) -> TestResponse:
        fields = {k.lower(): v for k, v in self.headers.items()}
        repeated: list[tuple[str, str]] = []  # a header given twice, as a list of pairs
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        for name, value in pairs:
            if name.lower() in fields and name.lower() not in self.headers:
                repeated.append((name.lower(), value))
            else:
                fields[name.lower()] = value
        if files is not None:
            body = encode_multipart(fields, data, files)
        else:
            body = _encode_body(fields, content=content, data=data, json=json)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            fields.setdefault("authorization", f"Basic {token}")
        jar = {**self.cookies, **(cookies or {})}
        if jar:
            fields.setdefault("cookie", "; ".join(f"{k}={v}" for k, v in jar.items()))
        target = _target(url, params)
        response = self._exchange(method.upper(), target, fields, body, repeated)
        self.cookies.update(response.cookies)
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        for _ in range(MAX_REDIRECTS):
            if not (follow and response.is_redirect):
                break
            target = urljoin(target, response.headers["location"])
            if urlsplit(target).netloc not in ("", urlsplit(self.base_url).netloc):
                break  # off this app: nothing here can answer it
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method.upper() == "POST"
            ):
                method, body = "GET", b""
                fields.pop("content-type", None)
                fields.pop("content-length", None)
            response = self._exchange(method.upper(), _path_of(target), fields, body, repeated)
            self.cookies.update(response.cookies)
        return response

    def _exchange(
        self,
        method: str,
        target: str,
        fields: dict[str, str],
        body: bytes,
        repeated: Iterable[tuple[str, str]] = (),
    ) -> TestResponse:
        server = self._ensure_server()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=self.timeout)
        try:
            sent = _under(target, self.root_path)
            connection.putrequest(method, sent, skip_host=True, skip_accept_encoding=True)
            connection.putheader("host", urlsplit(self.base_url).netloc or "testserver")
            if self.base_url.startswith("https:") and "x-forwarded-proto" not in fields:
                # the server is plain HTTP: say https the way a trusted local proxy would
                connection.putheader("x-forwarded-proto", "https")
            for name, value in [*fields.items(), *repeated]:
                connection.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                connection.putheader("content-length", str(len(body)))
            connection.endheaders(body or None)  # one connection per request: closed below
            answer = connection.getresponse()
            payload = answer.read()
            if (answer.getheader("content-encoding") or "").lower() == "gzip" and payload:
                payload = gzip.decompress(payload)  # as httpx decodes it; headers kept
            raw = [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.getheaders()
            ]
            response = TestResponse(
                answer.status,
                Headers(raw),
                payload,
                "1.1" if answer.version == 11 else "1.0",
                url=self.base_url + target,
                reason_phrase=answer.reason,
            )
        finally:
            connection.close()
        if self.wait_for_background:
            server.wait_background_idle(self.timeout)
        if self._server_errors:
            error = self._server_errors.pop(0)
            self._server_errors.clear()
            raise error
        return response

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", url, **kwargs)


def _stop(server: _ServerThread, hooks: list[Any] | None, hook: Any) -> None:
    """Stop `server`, and stop hearing of the app's errors."""
    if hooks is not None and hook in hooks:
        hooks.remove(hook)
    server.stop()


def _target(url: str, params: QueryParams | None) -> str:
    """The request target for `url` (absolute or a path) with `params` appended."""
    path = _path_of(url)
    if params:
        items = params.items() if isinstance(params, Mapping) else params
        pairs: list[tuple[str, str]] = []
        for key, value in items:
            values = value if isinstance(value, list | tuple) else [value]
            pairs.extend((key, _param_text(v)) for v in values)
        path += ("&" if "?" in path else "?") + urlencode(pairs)
    return path


def _under(target: str, root_path: str) -> str:
    """`target` as a proxy serving the app under `root_path` forwards it: the prefix dropped."""
    if not root_path or not target.startswith(root_path):
        return target
    rest = target[len(root_path) :]
    if not rest or rest[0] in "?#":
        return "/" + rest
    return rest if rest[0] == "/" else target  # "/api/v10" is not under "/api/v1"


def _param_text(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    return path + (f"?{parts.query}" if parts.query else "")


def _encode_body(
    fields: dict[str, str],
    *,
    content: bytes | str | None,
    data: Mapping[str, Any] | bytes | str | None,
    json: Any,
) -> bytes:
    if json is not None:
        fields.setdefault("content-type", "application/json")
        # compact, as httpx (since 0.28) writes it: an app that echoes its body sees the same
        return jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
    if isinstance(data, Mapping):
        fields.setdefault("content-type", "application/x-www-form-urlencoded")
        return urlencode(list(data.items()), doseq=True).encode()
    raw = content if content is not None else data
    if isinstance(raw, str):
        return raw.encode()
    return raw or b""


def encode_multipart(fields: dict[str, str], data: Any, files: Files) -> bytes:
    """A ``multipart/form-data`` body of `data`'s fields then `files`, as httpx encodes them.

    A file is a file object (its name's last part is the filename), bytes or
    a str, or a tuple ``(filename, content[, content_type[, headers]])``; a
    filename of None makes a plain field. The content type of a named file
    is guessed from its name, as httpx guesses it.
    """
    boundary = secrets.token_hex(16)
    fields["content-type"] = f"multipart/form-data; boundary={boundary}"
    parts: list[bytes] = []
    if isinstance(data, Mapping):
        for name, value in data.items():
            for item in value if isinstance(value, list | tuple) else [value]:
                parts.append(_part(boundary, name, None, None, {}, _param_text(item).encode()))
    for name, value in files.items() if isinstance(files, Mapping) else files:
        filename, content, content_type, headers = _file_tuple(value)
        parts.append(_part(boundary, name, filename, content_type, headers, content))
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def _file_tuple(value: Any) -> tuple[str | None, bytes, str | None, dict[str, str]]:
    if not isinstance(value, tuple):
        name = getattr(value, "name", None)
        value = (os.path.basename(name) if isinstance(name, str) else "upload", value)
    filename, content, *rest = value
    content_type = rest[0] if rest else None
    headers = dict(rest[1]) if len(rest) > 1 else {}
    if content_type is None and filename:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if hasattr(content, "read"):
        content = content.read()
    if isinstance(content, str):
        content = content.encode()
    return filename, bytes(content), content_type, headers


def _part(
    boundary: str,
    name: str,
    filename: str | None,
    content_type: str | None,
    headers: dict[str, str],
    content: bytes,
) -> bytes:
    disposition = f'form-data; name="{_quoted(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quoted(filename)}"'
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{key}: {value}" for key, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content + b"\r\n"


def _quoted(text: str) -> str:
    """A name or filename inside double quotes, escaped as browsers and httpx do."""
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
