"""Small value types a handler meets: `URL`, `State`, `Headers` and `MutableHeaders`.

`URL` is what ``request.url`` and ``request.base_url`` return: the URL as a
string, split into its parts on demand. `State` is the attribute bag behind
``app.state`` (the app's, for the whole process) and ``request.state`` (one
per request, for middleware and dependencies to pass values on).
`Headers` is ``request.headers`` (read-only), `MutableHeaders` is
``response.headers``; `header_field` is the one rule every header the app
sets must pass before it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from rawbg.errors import InvalidResponseHead


class URL:
    """An absolute (or relative) URL: ``str(url)`` is the whole of it.

    ``url.path`` is the path as it appears in the URL, percent-escapes and
    all (``request.path`` is the decoded one).
    """

    __slots__ = ("_parts", "_url")

    def __init__(self, url: str = "") -> None:
        self._url = url
        self._parts: SplitResult | None = None

    @property
    def components(self) -> SplitResult:
        if self._parts is None:
            self._parts = urlsplit(self._url)
        return self._parts

    @property
    def scheme(self) -> str:
        return self.components.scheme

    @property
    def netloc(self) -> str:
        return self.components.netloc

    @property
    def path(self) -> str:
        return self.components.path

    @property
    def query(self) -> str:
        return self.components.query

    @property
    def fragment(self) -> str:
        return self.components.fragment

    @property
    def hostname(self) -> str | None:
        return self.components.hostname

    @property
    def port(self) -> int | None:
        return self.components.port

    @property
    def is_secure(self) -> bool:
        return self.scheme in ("https", "wss")

    def replace(self, **parts: str) -> URL:
        """A copy with some of `scheme`, `netloc`, `path`, `query`, `fragment` replaced."""
        unknown = set(parts) - {"scheme", "netloc", "path", "query", "fragment"}
        if unknown:
            raise TypeError(f"URL.replace() got unknown parts: {', '.join(sorted(unknown))}")
        return URL(self.components._replace(**parts).geturl())

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"URL({self._url!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (URL, str)):
            return self._url == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._url)


class State:
    """An object to hang attributes on: ``app.state.db = ...``; ``request.state.user``.

    Reading an attribute nobody set raises `AttributeError` naming it.
    """

    def __init__(self, **initial: Any) -> None:
        self.__dict__.update(initial)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup failed: a clearer message than the default
        raise AttributeError(f"this State has no attribute {name!r} (nothing set it)")

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"State({fields})"


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


class MutableHeaders(MutableMapping[str, str]):
    """A response's headers: case-insensitive names, repeatable with `append`.

    ``headers["x-a"] = "1"`` replaces every ``x-a`` there was; ``append`` adds
    one more (``set-cookie`` is sent once per cookie). Names are sent as given.
    Names and values are kept as given: whether HTTP can carry them is
    decided once, for every header of the response, when its head is made
    (`header_field`, called by ``Response.head_fields``).
    """

    __slots__ = ("_items",)

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._items: list[tuple[str, str]] = list(initial.items()) if initial else []

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        for item_name, value in self._items:
            if item_name.lower() == key:
                return value
        raise KeyError(name)

    def __setitem__(self, name: str, value: str) -> None:
        key = name.lower()
        self._items = [kept for kept in self._items if kept[0].lower() != key]
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [item for item in self._items if item[0].lower() != key]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.lower() for name, _ in self._items))

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._items})

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(item_name.lower() == key for item_name, _ in self._items)

    def append(self, name: str, value: str) -> None:
        """Add a header line, keeping the ones of the same name."""
        self._items.append((name, value))

    def getlist(self, name: str) -> list[str]:
        key = name.lower()
        return [value for item_name, value in self._items if item_name.lower() == key]

    def items_all(self) -> list[tuple[str, str]]:
        """Every header line in order, repeated names included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"MutableHeaders({self._items!r})"


# The one rule for a header field the app sets (RFC 9110 5.1 and 5.5): the
# name is a token; the value is visible characters (latin-1's upper half, the
# obs-text of RFC 9110, included) with spaces and tabs only between them. No
# CR or LF (they would end the field and start another: header injection), no
# other control character, nothing beyond latin-1 (a header is bytes).
# Stricter than h11's own check, which lets the other control characters
# through; the connection hands h11 these fields without a second check.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(
    r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
)
_CONTROL_NAMES = {"\r": "CR", "\n": "LF", "\x00": "NUL", "\t": "a tab"}


def header_field(name: str, value: str) -> tuple[bytes, bytes]:
    """A header field the app set, as bytes, if it passes the one rule; else `InvalidResponseHead`.

    Every header a response carries that rawbg did not write itself goes
    through here (``headers=``, ``response.headers``, the ``response``
    parameter, middleware, cookies, the media type), when the response's head
    is made: before any byte of it is sent.
    """
    if (
        isinstance(name, str)
        and isinstance(value, str)
        and _TOKEN.fullmatch(name)
        and _FIELD_VALUE.fullmatch(value)
    ):
        return name.encode("latin-1"), value.encode("latin-1")
    raise InvalidResponseHead(f"header {name!r}: {value!r} cannot be sent: {_why(name, value)}")


def _why(name: object, value: object) -> str:
    """What `header_field` found wrong, in words."""
    if not isinstance(name, str):
        return f"a header name is a str, not {type(name).__name__}"
    if not _TOKEN.fullmatch(name):
        bad = next((c for c in name if not _TOKEN.fullmatch(c)), "")
        what = _CONTROL_NAMES.get(bad, repr(bad)) if name else "it is empty"
        return f"the name holds {what}, which a header name (a token) cannot"
    if not isinstance(value, str):
        return f"a header value is a str, not {type(value).__name__}"
    if value != value.strip(" \t"):
        return "a value cannot begin or end with a space or a tab"
    for at, char in enumerate(value):
        if ord(char) > 0xFF:
            return f"{char!r} at {at} is not latin-1 (a header is bytes)"
        if char != "\t" and (ord(char) < 0x20 or ord(char) == 0x7F):
            return f"{_CONTROL_NAMES.get(char, repr(char))} at {at} is a control character"
    return "it is not a field value (RFC 9110 5.5)"
