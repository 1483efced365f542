"""`Request`: what a handler sees of one HTTP request.

The connection task builds it from h11's `Request` event. Its head is plain
data. Its body is either bytes already there, or a `BodySource` (the
connection, which reads it as it arrives, under flow control, within the
route's ``max_body_size``): `body` and `json` read it whole, `stream` gives the
chunks as they come, `form` parses them (`rawbg.forms`). A source is read
once; the whole body, once read, is kept.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, quote, unquote

from rawbg.datastructures import (
    URL,
    Headers as Headers,  # its old home: still importable here
    State,
)
from rawbg.errors import HTTPException
from rawbg.forms import DEFAULT_LIMITS, FormLimits, parse_form
from rawbg.uploads import FormData

# How deeply a JSON request body may nest arrays and objects. json.loads
# recurses once per level and fails with RecursionError near Python's
# recursion limit (1000 frames, shared with the handler's own stack), so the
# real limit would depend on where it is called from; a documented bound well
# below it is checked first. 256: real documents nest a dozen levels; orjson
# stops at 1024, serde_json at 128.
MAX_JSON_DEPTH = 256


class Address(NamedTuple):
    """The client's address: the peer's, or the one a trusted proxy forwarded.

    A plain tuple too, so ``host, port = request.client`` works. A forwarded
    address without a port has port 0.
    """

    host: str
    port: int


class QueryParams(Mapping[str, str]):
    """The parsed query string. ``params["k"]`` is the last value; `getlist` gives all."""

    __slots__ = ("_items", "_last")

    def __init__(self, query_string: str) -> None:
        self._items = parse_qsl(query_string, keep_blank_values=True)
        self._last = dict(self._items)

    def __getitem__(self, key: str) -> str:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getlist(self, key: str) -> list[str]:
        return [value for k, value in self._items if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (key, value) pair in order, repeated keys included (Starlette's name)."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


class BodySource(Protocol):
    """A request body still arriving: what a `Request` reads its body from.

    The connection implements it (rawbg/server/request_body.py): each chunk
    is read from the socket when asked for, never ahead, so a body is never
    held whole unless the app asks for it whole.
    """

    #: the most bytes the body may have: `receive` raises past it
    limit: int

    async def receive(self) -> bytes:
        """The next piece of the body; ``b""`` once it is complete.

        Raises `rawbg.errors.BodyTooLarge` (413) past `limit`,
        `rawbg.errors.RequestTimeout` (408) for a body that stalls or trickles,
        `rawbg.errors.ClientDisconnected` if the client went away.
        """
        ...


class Request:
    """One HTTP request: its head, and its body (received, or still arriving)."""

    __slots__ = (
        "_body",
        "_cookies",
        "_form",
        "_query_params",
        "_source",
        "_state",
        "_stream_consumed",
        "_url",
        "app",
        "client",
        "headers",
        "http_version",
        "method",
        "path",
        "path_params",
        "query_string",
        "root_path",
        "route",
        "scheme",
        "target",
    )

    def __init__(
        self,
        scope: Mapping[str, Any] | None = None,
        receive: Any = None,
        *,
        method: str = "GET",
        target: str = "/",
        headers: Headers | None = None,
        body: bytes = b"",
        http_version: str = "1.1",
        client: tuple[str, int] | None = None,
        scheme: str = "http",
        root_path: str = "",
        source: BodySource | None = None,
    ) -> None:
        if scope is not None:  # ``Request(request.scope, request.receive)``, as in Starlette
            self._copy(scope)
            return
        self.method = method
        #: the request target as sent, e.g. ``/items/3?q=x``
        self.target = target
        raw_path, _, self.query_string = target.partition("?")
        if not raw_path.startswith("/") and "://" in raw_path:
            # absolute-form (RFC 9112 3.2.2): keep only the path
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        self.path = unquote(raw_path) if "%" in raw_path else raw_path
        self.headers = headers if headers is not None else Headers([])
        self.http_version = http_version
        #: None over a Unix socket (no peer address) unless a trusted proxy said who it is
        self.client = client if client is None or type(client) is Address else Address(*client)
        #: "http", or what a trusted proxy's X-Forwarded-Proto said ("https")
        self.scheme = scheme
        #: the prefix a proxy strips before forwarding (``--root-path``); not part of `path`
        self.root_path = root_path
        #: the `App` handling the request (set by `App.handle`); typed Any, as
        #: Starlette's is, since this plain-data module sits below the app
        self.app: Any = None
        #: the values of the route's ``{name}`` segments, filled in by the router
        self.path_params: dict[str, str] = {}
        #: the route that matched (set by `App.handle`), None until then or if none did
        self.route: Any = None
        #: the whole body; None while it is still to be read from `_source`
        self._body: bytes | None = body if source is None else None
        self._source = source
        self._stream_consumed = False
        self._form: FormData | None = None
        self._query_params: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._state: State | None = None
        self._url: URL | None = None

    def _copy(self, scope: Mapping[str, Any]) -> None:
        """This request, made from another's `scope`: the same request, in another class.

        A custom route's handler wraps the request in a subclass of its own
        (``GzipRequest(request.scope, request.receive)``). The copy reads its
        body from the original; its own ``_body`` starts unset, so that a
        subclass keeping what its ``body()`` made there (Starlette's idiom)
        finds nothing there yet.
        """
        source = scope.get("rawbg.request")
        if not isinstance(source, Request):
            raise TypeError(
                "Request(scope, receive) takes the scope of a rawbg request (request.scope); "
                "rawbg is not ASGI and makes no request from a scope of its own"
            )
        for name in Request.__slots__:
            if name not in ("_body", "_source", "_stream_consumed") and hasattr(source, name):
                setattr(self, name, getattr(source, name))
        self._source = _Replay(source)
        self._stream_consumed = False

    @property
    def query_params(self) -> QueryParams:
        if self._query_params is None:
            self._query_params = QueryParams(self.query_string)
        return self._query_params

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header's name/value pairs (the last wins for a repeated name)."""
        if self._cookies is None:
            self._cookies = parse_cookie_header(self.headers.getlist("cookie"))
        return self._cookies

    @property
    def url(self) -> URL:
        """The URL the client asked for: scheme, the ``Host`` header, path and query."""
        if self._url is None:
            query = f"?{self.query_string}" if self.query_string else ""
            raw_path = self.target.partition("?")[0]
            if not raw_path.startswith("/"):  # absolute-form or "*": keep what we routed on
                raw_path = self.path
            self._url = URL(f"{self.scheme}://{self._host()}{self.root_path}{raw_path}{query}")
        return self._url

    @property
    def base_url(self) -> URL:
        """The URL of the application's root: ``scheme://host/`` (with the root path)."""
        return URL(f"{self.scheme}://{self._host()}{self.root_path}/")

    def url_for(self, name: str, /, **path_params: Any) -> URL:
        """The absolute URL of the app's route (or mount) `name`: see `App.url_path_for`."""
        if self.app is None:
            raise RuntimeError("request.url_for needs the app: only in a request being handled")
        path = self.app.url_path_for(name, **path_params)
        return URL(f"{self.scheme}://{self._host()}{self.root_path}{path}")

    def mounted_at(self, prefix: str) -> Request:
        """This request as an app mounted at `prefix` sees it: `prefix` moved to `root_path`."""
        raw_path, query_mark, query = self.target.partition("?")
        if raw_path.startswith(prefix):
            raw_rest = raw_path[len(prefix) :]
        else:  # the prefix was percent-encoded: rebuild the rest from the decoded path
            raw_rest = quote(self.path[len(prefix) :], safe="/:@!$&'()*+,;=~")
        inner = Request(
            method=self.method,
            target=(raw_rest or "/") + query_mark + query,
            headers=self.headers,
            body=self._body or b"",
            source=self._source if self._body is None else None,  # still to be read: by the mount
            http_version=self.http_version,
            client=self.client,
            scheme=self.scheme,
            root_path=self.root_path + prefix,
        )
        inner._state = self._state
        return inner

    def _host(self) -> str:
        # HTTP/1.1 requires Host (h11 refuses a request without it); an HTTP/1.0
        # request may lack it, and then the URL says "localhost".
        return self.headers.get("host") or "localhost"

    @property
    def state(self) -> State:
        """An attribute bag for this request: middleware and dependencies leave values here.

        It starts with a copy of what the app's lifespan yielded, as in Starlette.
        """
        if self._state is None:
            app = self.app
            self._state = State(**app.lifespan_state) if app is not None else State()
        return self._state

    @property
    def scope(self) -> Mapping[str, Any]:
        """The request as an ASGI scope reads, for code written against one: read-only.

        ``type`` (``"http"``), ``http_version``, ``method``, ``scheme``,
        ``path`` (the root path and the decoded path, as uvicorn gives it),
        ``raw_path``, ``query_string`` (bytes), ``root_path``, ``headers``
        (``(name, value)`` bytes, names in lower case), ``client``,
        ``server`` (from the ``Host`` header: rawbg does not look up its
        socket's address), ``path_params``, ``app``, ``route``. rawbg is not
        ASGI: changing it changes nothing, so it cannot be changed. Made anew
        at each use (kept, it would hold the request that holds it: a cycle
        only the garbage collector frees).
        """
        raw_path = self.target.partition("?")[0]
        if not raw_path.startswith("/"):
            raw_path = self.path
        scope = {
            "type": "http",
            "http_version": self.http_version,
            "method": self.method,
            "scheme": self.scheme,
            "path": self.root_path + self.path,
            "raw_path": (self.root_path + raw_path).encode("latin-1"),
            "query_string": self.query_string.encode("latin-1"),
            "root_path": self.root_path,
            "headers": list(self.headers.raw),
            "client": self.client,
            "server": self._server(),
            "path_params": self.path_params,
            "app": self.app,
            "route": self.route,
            "rawbg.request": self,  # what ``Request(request.scope, ...)`` copies
        }
        return MappingProxyType(scope)

    def _server(self) -> tuple[str, int] | None:
        """(host, port) the client asked for, from ``Host``; None without one."""
        host = self.headers.get("host")
        if not host:
            return None
        url = URL(f"{self.scheme}://{host}/")
        try:
            port = url.port
        except ValueError:  # not a port: not an address to report
            return None
        if url.hostname is None:
            return None
        return url.hostname, port if port is not None else (443 if self.scheme == "https" else 80)

    async def receive(self) -> dict[str, Any]:
        """The whole body as ASGI's one ``http.request`` message."""
        return {"type": "http.request", "body": await self.body(), "more_body": False}

    async def body(self) -> bytes:
        """The whole body, read now if it was not yet (and kept)."""
        body = getattr(self, "_body", None)  # a copy (`_copy`) starts without it
        if body is None:
            if self._stream_consumed:
                raise RuntimeError("the request body was already read by request.stream()")
            self._stream_consumed = True
            source = self._source
            assert source is not None  # no body bytes without a source
            chunks = []
            while chunk := await source.receive():
                chunks.append(chunk)
            body = self._body = b"".join(chunks)
        return body

    @property
    def body_bytes(self) -> bytes:
        """The whole body, once read (`body`): the door for code that runs synchronously.

        rawbg reads the body of most routes before the handler runs; a route
        that streams it (forms, uploads, a `Request` parameter) has it only
        after ``await request.body()``.
        """
        if self._body is None:
            raise RuntimeError("the request body has not been read: await request.body() first")
        return self._body

    @property
    def body_received(self) -> int:
        """Bytes of the body the request holds (all of it, once read)."""
        return len(self._body) if self._body is not None else 0

    @property
    def body_pending(self) -> bool:
        """The body is still to be read from the connection (no part of it taken yet)."""
        return self._body is None and not self._stream_consumed

    def limit_body(self, max_size: int) -> None:
        """The body may have at most `max_size` bytes (the route's ``max_body_size``)."""
        if self._source is not None:
            self._source.limit = max_size

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive, then ``b""``; read once (Starlette's API).

        Nothing is kept: a body streamed cannot be read again by `body`.
        """
        if self._body is not None:
            if self._body:
                yield self._body
            yield b""
            return
        if self._stream_consumed:
            raise RuntimeError("the request body was already read")
        self._stream_consumed = True
        source = self._source
        assert source is not None
        while chunk := await source.receive():
            yield chunk
        yield b""

    def form(
        self,
        *,
        max_files: int = DEFAULT_LIMITS.max_files,
        max_fields: int = DEFAULT_LIMITS.max_fields,
        max_part_size: int = DEFAULT_LIMITS.max_part_size,
        limits: FormLimits | None = None,
    ) -> FormReading:
        """The body parsed as a form: ``await request.form()``, or ``async with`` it.

        Parsed once, as the body arrives (`rawbg.forms`); later calls give the
        same `FormData`. The three limits are Starlette's arguments; `limits`
        (rawbg's `FormLimits`, every limit) replaces them. ``async with``
        closes the form's files at its end; otherwise they are closed once
        the response is sent and the request's background tasks have run.
        """
        if limits is None:
            limits = FormLimits(
                max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
            )
        return FormReading(self, limits)

    async def read_form(self, limits: FormLimits) -> FormData:
        """The form (parsed now, with `limits`, if it was not yet)."""
        form = self._form
        if form is None:
            form = await parse_form(self.headers.get("content-type"), self.stream(), limits)
            self._form = form
        return form

    @property
    def parsed_form(self) -> FormData | None:
        """The form, if something parsed it: its files are closed after the response."""
        return self._form

    async def close(self) -> None:
        """Close the files of the form, if one was parsed."""
        if self._form is not None:
            await self._form.close()

    async def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a 400 with the reason."""
        body = await self.body()
        try:
            return decode_json(body)
        except InvalidJSON as exc:
            raise HTTPException(400, f"request body is not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


class _Replay:
    """The body source of a copied request (`Request._copy`): the original's body, once."""

    __slots__ = ("_done", "_original", "limit")

    def __init__(self, original: Request) -> None:
        self._original = original
        self._done = False
        self.limit = getattr(original._source, "limit", 0)

    async def receive(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        return await self._original.body()


class FormReading:
    """What `Request.form` returns: awaited, the form; used with ``async with``, the form,
    its files closed at the block's end (Starlette's ``AwaitableOrContextManager``)."""

    __slots__ = ("_limits", "_request")

    def __init__(self, request: Request, limits: FormLimits) -> None:
        self._request = request
        self._limits = limits

    def __await__(self) -> Generator[Any, None, FormData]:
        return self._request.read_form(self._limits).__await__()

    async def __aenter__(self) -> FormData:
        return await self._request.read_form(self._limits)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._request.close()


class InvalidJSON(ValueError):
    """Raised by `decode_json` for a body that is not JSON, or nests too deeply."""


def decode_json(raw: bytes) -> Any:
    """Parse a request body as JSON: the one decoder of `Request.json` and body parameters.

    A document may nest arrays and objects `MAX_JSON_DEPTH` levels deep.
    `json.loads` itself recurses once per level and gives up with a
    `RecursionError` near the interpreter's recursion limit, at a depth that
    depends on the caller's stack; so the bound is checked here, after
    decoding, and holds the same wherever it is called from. It costs nothing
    for a body with fewer brackets than the bound (it cannot nest deeper: one
    ``bytes.count`` each) and, for the rest, a walk over the decoded containers
    measured at 0.05-0.6x the decoding itself (docs/server-behavior.md).
    """
    try:
        document = json.loads(raw)
    except RecursionError:  # far deeper than the bound: json.loads could not even finish
        raise InvalidJSON(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidJSON(str(exc)) from exc
    # In UTF-8, -16 and -32 alike, every "[" or "{" holds one such byte.
    if (
        raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
        and nesting_depth(document, stop_above=MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    ):
        raise InvalidJSON(f"nested more than {MAX_JSON_DEPTH} levels deep")
    return document


def nesting_depth(document: Any, *, stop_above: int) -> int:
    """How deeply lists and dicts nest in `document` (a scalar is 0); stops past `stop_above`.

    Iterative, so that it cannot itself run into the recursion limit.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children: Iterable[Any]
        if type(value) is dict:
            children = value.values()
        elif type(value) is list:
            children = value
        else:
            continue
        if depth > deepest:
            deepest = depth
            if depth > stop_above:
                break
        pending.extend((child, depth + 1) for child in children if type(child) in (list, dict))
    return deepest


def cookie_pieces(values: list[str]) -> Iterator[tuple[str, bool, str]]:
    """Each ``;``-separated piece of ``Cookie`` header `values`: (name, had an ``=``, value).

    Names and values are stripped, a value in double quotes is unquoted, and
    nothing is percent-decoded. What a piece without a name (or without
    ``=``) means is up to the caller.
    """
    for value in values:
        for piece in value.split(";"):
            name, equals, content = piece.partition("=")
            name, content = name.strip(), content.strip()
            if len(content) >= 2 and content[0] == content[-1] == '"':
                content = content[1:-1]
            yield name, bool(equals), content


def parse_cookie_header(values: list[str]) -> dict[str, str]:
    """``a=1; b="x y"`` to ``{"a": "1", "b": "x y"}``; pieces without a name are skipped.

    Values are kept as sent (no percent-decoding), as Starlette does.
    """
    cookies: dict[str, str] = {}
    for name, equals, content in cookie_pieces(values):
        if equals and name:
            cookies[name] = content
    return cookies


def client_label(client: Address | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"
