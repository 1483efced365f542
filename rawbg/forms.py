"""A request body parsed as a form, as it arrives, within limits.

Two encodings, chosen by ``Content-Type`` (any other gives an empty form, as
in Starlette, so that a JSON body sent to a form route is "field missing"):

* ``application/x-www-form-urlencoded``: split on ``&`` as the chunks come,
  each complete piece parsed by the standard library (``parse_qsl``); only
  the unfinished last field is kept between chunks.
* ``multipart/form-data``: defnull's ``multipart`` package (the ``forms``
  extra, ``pip install 'rawbg[forms]'``), its ``PushMultipartParser`` fed
  chunk by chunk (sans-I/O: it never reads, it is given bytes). Text parts
  are held in memory, file parts written to an `UploadFile` (spooled to an
  anonymous temporary file past `SPOOL_MAX_SIZE`).

Every limit is in `FormLimits`, with its reason; going past one, or a body
that is not the form it claims to be, is a `FormError` (400, FastAPI's status
for both) and nothing more is kept: the files made so far are closed on every
way out, a cancellation included. Why this parser and not python-multipart,
measured: docs/forms.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

from rawbg.datastructures import Headers
from rawbg.errors import HTTPException
from rawbg.uploads import SPOOL_MAX_SIZE, FormData, FormValue, UploadFile

KiB = 1024
MiB = 1024 * KiB

INSTALL_HINT = "pip install 'rawbg[forms]'"

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"

# RFC 2046 5.1.1: a boundary is 1 to 70 characters. A longer one is refused
# (with room to spare for sloppy clients): the parser looks for it in every
# chunk, so its length is work per byte received.
MAX_BOUNDARY = 200

# File data is handed to the file in batches of about this much, so that a
# file on disk costs one trip to the thread pool per batch rather than per
# chunk of the socket (64 KiB) and memory holds at most one batch per upload.
WRITE_BATCH = 256 * KiB


@dataclass(frozen=True, slots=True, kw_only=True)
class FormLimits:
    """How much of a form is accepted; every field has a default and the reason for it.

    ``max_fields``, ``max_files`` and ``max_part_size`` are FastAPI's
    ``form_limits=`` keys (and Starlette's ``request.form()`` arguments), with
    their defaults. The whole body is bounded apart from these, by the
    route's ``max_body_size``.
    """

    #: text fields (parts without a filename): Starlette's default. Each costs a
    #: few hundred bytes of Python objects, so this bounds the bookkeeping of a
    #: body made of tiny fields.
    max_fields: int = 1000
    #: file parts: Starlette's default. Each can cost a temporary file.
    max_files: int = 1000
    #: bytes of one text field, which is held in memory: Starlette's 1 MiB.
    #: Files are not held in memory and have no limit but the body's.
    max_part_size: int = 1 * MiB
    #: bytes of all text fields together (rawbg's own): without it, a route
    #: that accepts a large body could be made to hold max_fields x
    #: max_part_size (1000 MiB) of text in memory. 16 MiB is far above any form
    #: a person fills in, and far below a worker's memory.
    max_fields_size: int = 16 * MiB
    #: one header line of a part: 8 KiB (a browser's Content-Disposition with a
    #: long non-ASCII filename stays under 1 KiB; nginx allows 8 KiB per line).
    max_part_header_size: int = 8 * KiB
    #: header lines of one part: RFC 7578 uses three (Content-Disposition,
    #: Content-Type, Content-Transfer-Encoding); 8 is the parser's own default.
    max_part_headers: int = 8
    #: bytes of a file kept in memory before it moves to a temporary file
    spool_max_size: int = SPOOL_MAX_SIZE

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"form limit {field.name} must be an int >= 0, got {value!r}")

    def merged(self, overrides: Mapping[str, int] | None) -> FormLimits:
        """These limits with `overrides` (FastAPI's dict: ``{"max_fields": 5}``) applied."""
        if not overrides:
            return self
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"unknown form limit(s) {', '.join(unknown)}; the limits are "
                f"{', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **overrides)


DEFAULT_LIMITS = FormLimits()


class FormError(HTTPException):
    """Raised while parsing a form that breaks a `FormLimits` limit or is malformed.

    An `HTTPException` with status 400, as FastAPI answers both, and a
    ``detail`` that says which limit (or what is wrong), so it goes through
    the app's exception handlers like any other.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


def load_multipart() -> ModuleType | None:
    """defnull's ``multipart``, imported now; None when the forms extra is not installed."""
    try:
        import multipart
    except ImportError:
        return None
    if not hasattr(multipart, "PushMultipartParser"):  # 1.x without the push parser
        return None
    module: ModuleType = multipart
    return module


def why_no_multipart() -> str:
    """Why `load_multipart` found no parser, and what to install: for an error message."""
    try:
        import multipart
    except ImportError:
        return f"rawbg's forms extra (defnull's multipart) is not installed: {INSTALL_HINT}"
    if hasattr(multipart, "create_form_parser"):
        # python-multipart before 0.0.13 (FastAPI's form parser) is a package named
        # `multipart` too, found before defnull's module; later releases step aside
        return (
            "the module named `multipart` here is python-multipart "
            f"{getattr(multipart, '__version__', '')} (FastAPI's form parser), which takes "
            "the name of defnull's multipart, rawbg's forms extra: pip uninstall "
            f"python-multipart (or upgrade it to 0.0.13 or later), then {INSTALL_HINT}"
        )
    return f"the multipart module here has no PushMultipartParser (2.0 or later): {INSTALL_HINT}"


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


async def parse_form(
    content_type: str | None, chunks: AsyncIterator[bytes], limits: FormLimits = DEFAULT_LIMITS
) -> FormData:
    """The form a body encodes, read from `chunks` as they come; `FormError` if it cannot be.

    A body of another media type is not read, and gives an empty form.
    """
    kind = media_type(content_type)
    if kind == URLENCODED:
        return await _parse_urlencoded(chunks, limits)
    if kind == MULTIPART:
        multipart = load_multipart()
        if multipart is None:
            raise RuntimeError(f"parsing multipart/form-data: {why_no_multipart()}")
        reader = MultipartReader(multipart, boundary_of(multipart, content_type or ""), limits)
        try:
            async for chunk in chunks:
                if chunk:
                    await reader.feed(chunk)
            return await reader.finish()
        except BaseException:
            reader.abandon()
            raise
    return FormData()


# -- application/x-www-form-urlencoded ---------------------------------------------------


async def _parse_urlencoded(chunks: AsyncIterator[bytes], limits: FormLimits) -> FormData:
    reader = UrlencodedReader(limits)
    async for chunk in chunks:
        if chunk:
            reader.feed(chunk)
    return FormData(reader.finish())


class UrlencodedReader:
    """``a=1&b=2`` parsed as it arrives: complete pieces now, the last one when it ends.

    The field still arriving is kept as its pieces, joined once its ``&``
    (or the end) comes: a long field costs one copy, not one per chunk.
    """

    __slots__ = ("_count", "_limits", "_size", "_tail", "_tail_size", "items")

    def __init__(self, limits: FormLimits) -> None:
        self._limits = limits
        self._tail: list[bytes] = []  # the field still arriving
        self._tail_size = 0
        self._count = 0
        self._size = 0
        self.items: list[tuple[str, FormValue]] = []

    def feed(self, chunk: bytes) -> None:
        last = chunk.rfind(b"&")
        if last < 0:
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            # A field's raw form is at most 3x its value (every byte as %XX), plus its name.
            limits = self._limits
            if self._tail_size > 3 * limits.max_part_size + limits.max_part_header_size:
                raise FormError(f"a form field is over {limits.max_part_size} bytes")
            return
        self._add(b"".join([*self._tail, chunk[:last]]))
        rest = chunk[last + 1 :]
        self._tail, self._tail_size = [rest], len(rest)

    def finish(self) -> list[tuple[str, FormValue]]:
        self._add(b"".join(self._tail))
        self._tail, self._tail_size = [], 0
        return self.items

    def _add(self, raw: bytes) -> None:
        limits = self._limits
        text = raw.decode("utf-8", "replace")
        pairs = parse_qsl(text, keep_blank_values=True, separator="&", errors="replace")
        for name, value in pairs:
            self._count += 1
            if self._count > limits.max_fields:
                raise FormError(f"too many form fields: the limit is {limits.max_fields}")
            size = len(value.encode())
            if size > limits.max_part_size:
                raise FormError(f"form field {name!r} is over {limits.max_part_size} bytes")
            self._size += size
            if self._size > limits.max_fields_size:
                raise FormError(f"the form's fields are over {limits.max_fields_size} bytes")
            self.items.append((name, value))


# -- multipart/form-data -----------------------------------------------------------------


def boundary_of(multipart: ModuleType, content_type: str) -> bytes:
    """The boundary a ``multipart/form-data`` Content-Type names; `FormError` if unusable."""
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if not boundary:
        raise FormError("multipart/form-data without a boundary in its Content-Type")
    if len(boundary) > MAX_BOUNDARY or not boundary.isascii() or "\r" in boundary:
        raise FormError(f"unusable multipart boundary (at most {MAX_BOUNDARY} ASCII characters)")
    encoded: bytes = boundary.encode("ascii")
    return encoded


class MultipartReader:
    """A multipart body fed chunk by chunk to the push parser, its parts made into a form."""

    def __init__(self, multipart: ModuleType, boundary: bytes, limits: FormLimits) -> None:
        self._errors = (multipart.ParserLimitReached, multipart.MultipartError)
        self._limit_reached = multipart.ParserLimitReached
        self._parser = multipart.PushMultipartParser(
            boundary,
            max_header_size=limits.max_part_header_size,
            max_header_count=limits.max_part_headers,
            max_segment_count=limits.max_fields + limits.max_files,
        )
        self._limits = limits
        self._opening: bytes | None = b""  # the first bytes, until they show the boundary
        self._delimiter = b"--" + boundary
        self.items: list[tuple[str, FormValue]] = []
        self._fields = 0
        self._files = 0
        self._fields_size = 0
        # The part being received: its segment, and where its bytes go
        self._segment: Any = None
        self._text: bytearray | None = None
        self._upload: UploadFile | None = None
        self._batch: list[bytes] = []
        self._batched = 0

    async def feed(self, chunk: bytes) -> None:
        if self._opening is not None:
            self._check_opening(chunk)
        await self._parse(chunk)

    async def finish(self) -> FormData:
        await self._parse(b"")  # the parser says if the closing boundary never came
        for upload in self._uploads():
            await upload.seek(0)
        return FormData(self.items)

    def abandon(self) -> None:
        """The form failed (or was cancelled): close every file it made, now."""
        for upload in self._uploads():
            upload.close_now()

    def _uploads(self) -> list[UploadFile]:
        made = [value for _, value in self.items if isinstance(value, UploadFile)]
        if self._upload is not None and self._upload not in made:
            made.append(self._upload)
        return made

    def _check_opening(self, chunk: bytes) -> None:
        """The body must open with its boundary: no client sends a MIME preamble, and
        refusing one at once is what stops an endless preamble (the parser would skip it)."""
        head = (self._opening or b"") + chunk
        if len(head) < len(self._delimiter) + 2:
            self._opening = head  # at most a delimiter's length is kept
        elif head.removeprefix(b"\r\n").startswith(self._delimiter):
            self._opening = None
        else:
            raise FormError("the multipart body does not open with its boundary")

    async def _parse(self, chunk: bytes) -> None:
        parser = self._parser
        if parser.closed:
            return  # past the closing boundary: the epilogue is ignored
        try:
            for event in parser.parse(chunk):
                if event is None:
                    await self._end_part()
                elif isinstance(event, bytes):
                    await self._data(event)
                else:
                    self._start_part(event)
        except self._limit_reached as exc:
            raise FormError(self._limit_message(str(exc))) from None
        except self._errors as exc:
            raise FormError(f"malformed multipart body: {exc}") from None

    def _limit_message(self, parser_says: str) -> str:
        """The parser's limit error, in the words of the `FormLimits` field it enforces."""
        limits = self._limits
        if "header length" in parser_says:
            return f"a part header line is over {limits.max_part_header_size} bytes"
        if "header count" in parser_says:
            return f"a part has more than {limits.max_part_headers} header lines"
        if "segment count" in parser_says:
            return f"too many parts: the limit is {limits.max_fields + limits.max_files}"
        return f"multipart body over a limit: {parser_says}"

    def _start_part(self, segment: Any) -> None:
        limits = self._limits
        self._segment = segment
        if segment.filename is None:
            self._fields += 1
            if self._fields > limits.max_fields:
                raise FormError(f"too many form fields: the limit is {limits.max_fields}")
            self._text = bytearray()
            return
        self._files += 1
        if self._files > limits.max_files:
            raise FormError(f"too many files: the limit is {limits.max_files}")
        headers = Headers(
            [(name.lower().encode(), value.encode()) for name, value in segment.headerlist]
        )
        self._upload = UploadFile.spooled(
            filename=segment.filename, headers=headers, spool_max_size=limits.spool_max_size
        )

    async def _data(self, data: bytes) -> None:
        text = self._text
        if text is not None:
            limits = self._limits
            if len(text) + len(data) > limits.max_part_size:
                name = self._segment.name
                raise FormError(f"form field {name!r} is over {limits.max_part_size} bytes")
            self._fields_size += len(data)
            if self._fields_size > limits.max_fields_size:
                raise FormError(f"the form's fields are over {limits.max_fields_size} bytes")
            text += data
            return
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        upload = self._upload
        assert upload is not None  # data is batched only while a file part is open
        batch, self._batch, self._batched = self._batch, [], 0
        await upload.write_many(batch)

    async def _end_part(self) -> None:
        segment = self._segment
        name = segment.name or ""
        if self._text is not None:
            self.items.append((name, _decode(bytes(self._text), segment.charset)))
            self._text = None
        elif self._upload is not None:
            if self._batch:
                await self._flush()
            self.items.append((name, self._upload))
            self._upload = None
        self._segment = None


def _decode(raw: bytes, charset: str | None) -> str:
    """A text part's value: in its declared charset (UTF-8 if none), else latin-1,
    which decodes any bytes (Starlette's fallback too)."""
    try:
        return raw.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")
