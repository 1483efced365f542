"""Responses: a status, headers, a body, and optionally work to run after it.

A `Response` holds its whole body as bytes; `StreamingResponse` yields it in
pieces and is sent with chunked encoding (or close-delimited to HTTP/1.0
clients), since its length is unknown. The connection task does the sending:
nothing here touches a socket.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import json
import re
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from .background import BackgroundTask, BackgroundTasks

Background = BackgroundTask | BackgroundTasks


class Response:
    """A response whose body is known in full: ``Response(content, status_code, ...)``."""

    media_type: str | None = None
    charset: ClassVar[str] = "utf-8"

    def __init__(
        self,
        content: Any = b"",
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: Background | None = None,
    ) -> None:
        self.status_code = status_code
        self.media_type = media_type if media_type is not None else type(self).media_type
        self.headers: dict[str, str] = dict(headers or {})
        self.background = background
        self.body = self.render(content)

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode(self.charset)
        if content is None:
            return b""
        return bytes(content)

    @property
    def fields_checked(self) -> bool:
        """True when `head_fields` holds only fields rawbg built and checked itself.

        Then h11 need not validate them again (its ``_parsed`` shortcut, as for
        the fields its own parser produced): 38k of the 608k instructions per
        request of the benchmark endpoint. Headers the app set are checked by h11.
        """
        return not self.headers and type(self.status_code) is int

    def head_fields(self) -> list[tuple[bytes, bytes]]:
        """The header fields to send, with ``content-type`` and ``content-length``."""
        fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        given = {k.lower() for k in self.headers} if self.headers else ()
        if self.media_type is not None and "content-type" not in given:
            fields.append(_content_type(self.media_type, self.charset))
        if (
            "content-length" not in given
            and self.status_code >= 200
            and self.status_code
            not in (
                204,
                304,
            )
        ):
            fields.append((b"content-length", b"%d" % len(self.body)))
        return fields

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status_code}>"


class PlainTextResponse(Response):
    media_type = "text/plain"


class HTMLResponse(Response):
    media_type = "text/html"


class JSONResponse(Response):
    """Compact JSON, UTF-8. Encodes dataclasses, UUIDs, enums, dates and sets too."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)


class StreamingResponse(Response):
    """A body produced piece by piece from an (async) iterable of bytes or str."""

    def __init__(
        self,
        content: Iterable[bytes | str] | AsyncIterable[bytes | str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: Background | None = None,
    ) -> None:
        super().__init__(b"", status_code, headers, media_type, background)
        self.body_iterator = content

    def head_fields(self) -> list[tuple[bytes, bytes]]:
        # no content-length: h11 picks chunked (HTTP/1.1) or close-delimited (1.0)
        return [(k, v) for k, v in super().head_fields() if k != b"content-length"]

    async def chunks(self) -> AsyncIterable[bytes]:
        content = self.body_iterator
        if isinstance(content, AsyncIterable):
            async for piece in content:
                yield piece if isinstance(piece, bytes) else piece.encode(self.charset)
        else:
            for piece in content:
                yield piece if isinstance(piece, bytes) else piece.encode(self.charset)


# What RFC 9110 5.5 allows in a field value: visible characters, spaces, tabs
_FIELD_VALUE = re.compile(r"[\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?")


@functools.lru_cache(maxsize=64)
def _content_type(media_type: str, charset: str) -> tuple[bytes, bytes]:
    """The ``content-type`` field, checked here once per media type.

    Checked because the connection hands h11 a response's fields unchecked
    when they are all rawbg's own (`Response.fields_checked`), and a media type
    is the app's: a CR or LF in it would otherwise inject a header.
    """
    if media_type.startswith("text/") and "charset=" not in media_type:
        media_type += f"; charset={charset}"
    if not _FIELD_VALUE.fullmatch(media_type):
        raise ValueError(f"media type {media_type!r} is not a valid header value")
    return (b"content-type", media_type.encode("latin-1"))


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=False
)

# `JSONEncoder.encode` builds a new C encoder for every call: 3.9 µs for the
# tutorial's response, against 0.9 µs for one C encoder made once and reused
# (without the circular-reference check: a cycle is a RecursionError instead,
# a 500 either way).
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)  # None without _json
_c_encoder: Callable[[Any, int], Sequence[str]] | None = (
    None
    if _make_c_encoder is None
    else _make_c_encoder(
        None, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def encode_json(content: Any) -> bytes:
    if _c_encoder is None:  # a Python without the _json accelerator
        return _encoder.encode(content).encode("utf-8")
    return "".join(_c_encoder(content, 0)).encode("utf-8")
