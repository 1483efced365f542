"""Form bodies built by hand, byte by byte, for the form and upload tests.

Independent of rawbg's own encoder (the test client's), so that a test of the
parser does not check the parser against itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from urllib.parse import quote_plus

BOUNDARY = "rawbgTestBoundary4f2a9c"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
URLENCODED = "application/x-www-form-urlencoded"

#: (name, value) for a text field; (name, filename, content, content type) for a file
Part = tuple[str, str] | tuple[str, str, bytes, str]


def multipart(parts: Iterable[Part], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body as a browser sends it (CRLF line ends, closing CRLF)."""
    out = bytearray()
    for part in parts:
        out += f"--{boundary}\r\n".encode()
        if len(part) == 2:
            name, value = part
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode()
        else:
            name, filename, content, content_type = part
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            out += content
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def urlencoded(fields: Iterable[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields).encode()


def file_part_head(name: str, filename: str, boundary: str = BOUNDARY) -> bytes:
    """The opening of a body with one file part, whose content follows (a streamed upload)."""
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def file_part_tail(boundary: str = BOUNDARY) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


def pattern(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """`size` bytes of a repeating, position-dependent pattern, in `chunk`-sized pieces
    (so that a byte out of place changes what a checksum sees)."""
    block = bytes(range(251)) * (chunk // 251 + 2)  # room for any offset
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        offset = sent % 251
        yield block[offset : offset + n]
        sent += n


def temp_files(directory: str | os.PathLike[str]) -> list[str]:
    """The temporary files in `directory`: its entries, and every file there this process
    holds open (an upload's file is unlinked at once, so it shows only as an open file
    descriptor, ``/proc/self/fd/N -> DIR/#123 (deleted)``, until it is closed)."""
    root = os.fspath(directory)
    found = [os.path.join(root, name) for name in os.listdir(root)]
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since listed (the listing's own descriptor, say)
            continue
        if target.startswith(root + os.sep):
            found.append(target)
    return found
