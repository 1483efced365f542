"""`Request`: what a handler sees of one HTTP request.

The connection task builds it from h11's `Request` event and the body it has
already read (bodies are read whole, up to ``max_body_size``, before the handler
runs), so everything here is plain data: no I/O, no reference to the socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote

from rawbg.datastructures import URL, State
from rawbg.errors import HTTPException

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


class Headers(Mapping[str, str]):
    """Request headers: case-insensitive, in arrival order, with repeated names kept.

    ``headers["x"]`` is the first value; `getlist` returns them all.
    """

    __slots__ = ("_dict", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        #: the headers as h11 gives them: lower-case names, raw values
        self.raw = raw
        self._dict: dict[str, str] | None = None

    def _mapping(self) -> dict[str, str]:
        if self._dict is None:
            mapping: dict[str, str] = {}
            for name, value in self.raw:
                mapping.setdefault(name.decode("latin-1"), value.decode("latin-1"))
            self._dict = mapping
        return self._dict

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._mapping().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._mapping()

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def getlist(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for n, value in self.raw if n == key]

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"


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

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


class Request:
    """One HTTP request, with its body already received."""

    __slots__ = (
        "_body",
        "_cookies",
        "_query_params",
        "_state",
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
        "scheme",
        "target",
    )

    def __init__(
        self,
        *,
        method: str,
        target: str,
        headers: Headers,
        body: bytes = b"",
        http_version: str = "1.1",
        client: tuple[str, int] | None = None,
        scheme: str = "http",
        root_path: str = "",
    ) -> None:
        self.method = method
        #: the request target as sent, e.g. ``/items/3?q=x``
        self.target = target
        raw_path, _, self.query_string = target.partition("?")
        if not raw_path.startswith("/") and "://" in raw_path:
            # absolute-form (RFC 9112 3.2.2): keep only the path
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        self.path = unquote(raw_path) if "%" in raw_path else raw_path
        self.headers = headers
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
        self._body = body
        self._query_params: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._state: State | None = None
        self._url: URL | None = None

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
            body=self._body,
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

    async def body(self) -> bytes:
        return self._body

    @property
    def body_bytes(self) -> bytes:
        """The whole body, as received: rawbg reads it before the handler runs.

        `body` is the same, awaitable as in Starlette; this is the door for
        code that runs synchronously (reading body parameters).
        """
        return self._body

    async def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a 400 with the reason."""
        try:
            return decode_json(self._body)
        except InvalidJSON as exc:
            raise HTTPException(400, f"request body is not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


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
