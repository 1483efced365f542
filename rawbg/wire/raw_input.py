"""The checks on raw input that h11 leaves out: a head's bytes, a request line's start, chunk lines.

h11 parses a head only once it is complete, and then hands over values with
obs-fold already unfolded; it looks at nothing but the first byte before
that. It takes any byte but LF after a chunk size's ``;`` and drops it. So
rawbg looks at the bytes themselves, in three ways, each costing a request
only where it needs it:

* **A complete head** (`check_head_bytes`): a few searches over the copy of
  the input that the connection keeps once per head
  (`Connection._next_event`), up to the head's blank line. It refuses
  control characters (RFC 9110 5.5: a field value is VCHAR, obs-text, SP and
  HTAB; RFC 9112 3: no CTL in a request line) and obs-fold (RFC 9112 5.2
  lets a server refuse it or unfold it; rawbg refuses).
* **A head still arriving** (`HeadScanner`): the same rules, fed each piece
  of input as it arrives, plus the request line's start: as soon as the bytes
  can no longer begin ``method SP target SP HTTP/d.d`` (binary garbage, a
  JSON document, an HTTP/0.9 line) the request is refused, not left to the
  head's 408 seconds later (RFC 9112 2.2). Linear in the head's size: it
  never looks at a byte twice.
* **A chunked body** (`ChunkedScanner`): follows the chunked framing (RFC
  9112 7.1) over the bytes as they pass into h11, checking each chunk line
  (size, extensions as RFC 9112 7.1.1 writes them, no whitespace after the
  size but before a ``;``) and the trailer lines, and skipping chunk data by
  arithmetic. Only chunked requests pay for it.

Each records the first problem in ``error``; the connection refuses the
request with 400 when it sees it (rawbg/server/connection.py).
"""

from __future__ import annotations

import re
from typing import Literal, Protocol

# RFC 9110 5.6.2
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN_RUN = re.compile(_TCHAR + rb"*")
# h11's request-target: visible ASCII (obs-text and CTLs are refused there)
_TARGET_RUN = re.compile(rb"[\x21-\x7e]*")
# every prefix of "HTTP/d.d" followed by an optional CR
_VERSION_PREFIX = re.compile(rb"(?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?")
_VERSION_LINE = re.compile(rb"HTTP/[0-9]\.[0-9]\r?\n")

# RFC 9110 5.5 and RFC 9112 3: no control character but HTAB (CR and LF end
# lines, which h11 checks: a bare CR is its 400)
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CTL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])

#: For the check on every request (`head_may_be_malformed`): each control
#: character becomes NUL and HTAB becomes SP, so that one ``in`` finds any
#: control character and one finds any obs-fold (LF then SP).
HEAD_SCREEN = bytes(0 if b in _CTL_BYTES else 0x20 if b == 0x09 else b for b in range(256))
#: The copy is screened whole up to this size; a larger one (a long head, or
#: a body that came with it) gets the exact check, which stops at the head.
HEAD_SCREEN_SIZE = 4096

# A request method longer than this is refused as malformed (400), not left to
# fill --max-head-size (431, which says the header fields were too large). The
# longest method IANA registers is 17 bytes (UPDATEREDIRECTREF); 1 KiB leaves
# any private method room.
MAX_METHOD_LENGTH = 1024

# RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*"
    + _TCHAR
    + rb"+(?:[ \t]*=[ \t]*(?:"
    + _TCHAR
    + rb"+|"
    + _QUOTED
    + rb"))?)*\r\n"
)
# A chunk line longer than this is refused: h11 bounds a head, not a chunk
# line, and a valid one is a size and a few short extensions. 4 KiB is what
# nginx allows a whole request line by default (client_header_buffer_size 1k,
# large_client_header_buffers 4 8k: half of one).
MAX_CHUNK_LINE = 4096
# A size no signed 64-bit integer holds is not one a client meant: a peer
# that parses it into 64 bits frames another body (the smuggling shape).
MAX_LENGTH = 2**63 - 1

CR, LF, SP, HTAB = 13, 10, 32, 9


class InputScanner(Protocol):
    """What `HttpProtocol` feeds each piece of input to, before h11 parses it."""

    #: the first problem found (a refusal's reason), or None
    error: str | None

    def feed(self, data: bytes) -> None:
        """Look at the next `data` of the connection's input."""
        ...


def check_head_bytes(raw: bytes) -> str | Literal[False] | None:
    """The problem with the head at the start of `raw`, if any.

    None: the head is fine. A string: why it is refused. False: `raw` does not
    hold the whole head (its end came later), so it cannot tell.

    On every request: a few searches in C over the head, no regex over each
    byte (an alternation tried at each byte cost ~14,000 instructions a request).
    """
    end = raw.find(b"\n\r\n")  # the blank line, as h11 finds it
    bare = raw.find(b"\n\n", 0, len(raw) if end < 0 else end)
    if bare >= 0:
        end = bare
    if end < 0:
        return False
    head = raw[:end]
    if b"\n " in head or b"\n\t" in head:
        return "obs-fold (a header line that begins with whitespace) is not accepted"
    if len(head.translate(None, _CTL_BYTES)) != len(head):
        found = _CTL.search(head)
        return f"control character {found.group() if found else b'?'!r} in the request head"
    return None


def head_may_be_malformed(raw: bytes) -> bool:
    """False if `raw`, a copy holding a whole head, certainly has neither a control
    character nor obs-fold in it; True if `check_head_bytes` must look.

    The check every request pays: one ``translate`` and two ``in`` over the
    copy (which may also hold a body: its bytes can only make this say True).
    """
    if len(raw) > HEAD_SCREEN_SIZE:
        return True
    screened = raw.translate(HEAD_SCREEN)
    return b"\x00" in screened or b"\n " in screened


def values_problem(fields: list[tuple[bytes, bytes]]) -> str | None:
    """A control character in a field value: the check when no copy of the head was kept."""
    for name, value in fields:
        if _CTL.search(value) is not None:
            return f"control character in the value of {name.decode('latin-1')!r}"
    return None


def request_line_problem(prefix: bytes) -> str | None:
    """Why `prefix`, the start of a head, cannot begin a request; None if it can."""
    scanner = HeadScanner()
    scanner.feed(prefix)
    return scanner.error


def content_length_problem(length: int) -> str | None:
    """A Content-Length no 64-bit peer would read as the same number is malformed (400)."""
    if length > MAX_LENGTH:
        return f"Content-Length {length} overflows 64 bits"
    return None


_METHOD, _TARGET, _VERSION, _FIELDS, _DONE = range(5)


class HeadScanner:
    """Checks a request head as its pieces arrive (see the module docstring).

    Follows the request line part by part (method, target, version) and then
    the field lines, each byte looked at once; stops at the head's blank line.
    """

    __slots__ = ("_at_line_start", "_cr", "_length", "_part", "_version", "error")

    def __init__(self) -> None:
        self.error: str | None = None
        self._part = _METHOD
        self._length = 0  # bytes of the method, then of the target, so far
        self._version = b""  # the version part so far (a few bytes)
        self._at_line_start = False  # in the fields: the next byte begins a line
        self._cr = False  # ... and a CR began it

    @property
    def done(self) -> bool:
        """The head's end (or a problem) was seen: nothing more to check."""
        return self._part == _DONE or self.error is not None

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and self.error is None:
            part = self._part
            if part in (_METHOD, _TARGET):
                is_method = part == _METHOD
                found = (_TOKEN_RUN if is_method else _TARGET_RUN).match(data, pos)
                run = pos if found is None else found.end()  # (a `*` always matches)
                self._length += run - pos
                pos = run
                if is_method and self._length > MAX_METHOD_LENGTH:
                    self.error = f"request method longer than {MAX_METHOD_LENGTH} bytes"
                elif pos < end:
                    if data[pos] != SP or not self._length:
                        self.error = (
                            "these bytes cannot begin an HTTP request"
                            if is_method
                            else "malformed request line"
                        )
                    else:
                        self._part = _TARGET if is_method else _VERSION
                        self._length = 0
                        pos += 1
            elif part == _VERSION:
                newline = data.find(b"\n", pos, pos + 11 - len(self._version))
                stop = end if newline < 0 else newline + 1
                version = self._version = self._version + data[pos:stop]
                pos = stop
                if newline >= 0:
                    if _VERSION_LINE.fullmatch(version) is None:
                        self.error = "malformed request line (no HTTP version)"
                    self._part = _FIELDS
                    self._at_line_start = True
                elif _VERSION_PREFIX.fullmatch(version) is None:
                    self.error = "malformed request line (no HTTP version)"
            elif part == _FIELDS:
                pos = self._fields(data, pos, end)
            else:
                return

    def _fields(self, data: bytes, pos: int, end: int) -> int:
        """The field lines from `pos`: no obs-fold, no control character; the blank line ends it."""
        if self._at_line_start:
            byte = data[pos]
            if self._cr:
                self._part = _DONE  # CRLF: the blank line (a bare CR is h11's 400)
                return end
            if byte == CR:
                self._cr = True
                return pos + 1
            if byte == LF:
                self._part = _DONE
                return end
            if byte in (SP, HTAB):
                self.error = "obs-fold (a header line that begins with whitespace) is not accepted"
                return end
            self._at_line_start = False
        newline = data.find(b"\n", pos)
        stop = end if newline < 0 else newline
        problem = _CTL.search(data, pos, stop)
        if problem is not None:
            self.error = f"control character {problem.group()!r} in the request head"
            return end
        if newline < 0:
            return end
        self._at_line_start = True
        return newline + 1


_SIZE_LINE, _DATA, _DATA_END, _TRAILERS, _BODY_DONE = range(5)


class ChunkedScanner:
    """Follows a chunked body's framing over its raw bytes, checking every line of it.

    Fed the body's bytes from the first one on (what h11 had buffered after
    the head, then each piece as it arrives). `done` once the last chunk's
    trailer section has ended: what follows is the next request's.
    """

    __slots__ = ("_line", "_remaining", "_state", "error")

    def __init__(self) -> None:
        self.error: str | None = None
        self._state = _SIZE_LINE
        self._line = b""  # the part of a line that came in an earlier piece
        self._remaining = 0  # bytes of chunk data still to come

    @property
    def done(self) -> bool:
        return self._state == _BODY_DONE or self.error is not None

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and self.error is None:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                self._remaining -= take
                pos += take
                if not self._remaining:
                    self._state = _DATA_END
                continue
            if state == _BODY_DONE:
                return
            newline = data.find(b"\n", pos)
            if newline < 0:
                self._line += data[pos:]
                if len(self._line) > MAX_CHUNK_LINE:
                    self.error = f"chunk line longer than {MAX_CHUNK_LINE} bytes"
                return
            line = data[pos : newline + 1]
            if self._line:
                line, self._line = self._line + line, b""
            pos = newline + 1
            self._line_ended(line)

    def _line_ended(self, line: bytes) -> None:
        state = self._state
        if len(line) > MAX_CHUNK_LINE:
            self.error = f"chunk line longer than {MAX_CHUNK_LINE} bytes"
        elif state == _SIZE_LINE:
            found = _CHUNK_LINE.fullmatch(line)
            if found is None:
                self.error = f"malformed chunk line {line[:100]!r}"
                return
            size = int(found.group(1), 16)
            if size > MAX_LENGTH:
                self.error = "chunk size overflows 64 bits"
            elif size:
                self._remaining = size
                self._state = _DATA
            else:
                self._state = _TRAILERS
        elif state == _DATA_END:
            if line != b"\r\n":
                self.error = "chunk data not followed by CRLF"
            else:
                self._state = _SIZE_LINE
        elif line in (b"\r\n", b"\n"):  # _TRAILERS: the blank line ends the body
            self._state = _BODY_DONE
        elif line[0] in (SP, HTAB):
            self.error = "obs-fold in the trailer section is not accepted"
        elif _CTL.search(line) is not None:
            self.error = "control character in the trailer section"
