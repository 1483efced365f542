"""`StaticFiles`: the files of one directory, mounted under a path (``app.mount``).

``app.mount("/static", StaticFiles(directory="static"), name="static")``
serves ``static/css/site.css`` at ``/static/css/site.css``, as Starlette's
class (which FastAPI re-exports) does, on rawbg's `Request` and `FileResponse`:

* GET and HEAD only (405 otherwise); a file is streamed from disk in the thread
  pool, with ``Content-Length``, ``Last-Modified``, an ``ETag`` (size and
  modification time) and ``Accept-Ranges: bytes``;
* conditional requests (RFC 9110 13): ``If-None-Match`` (weak comparison,
  ``*``), else ``If-Modified-Since``, answer 304 with no body;
* a range (RFC 9110 14): ``Range: bytes=first-last``, ``bytes=first-`` or
  ``bytes=-suffix`` gives 206 with ``Content-Range``; a range that starts past
  the end gives 416 with ``Content-Range: bytes */size``. A Range of several
  ranges, or one that does not parse, is ignored and the whole file sent (the
  RFC lets a server ignore Range; no multipart/byteranges here), and so is a
  Range whose ``If-Range`` does not match the file as it is now;
* ``html=True``: a directory answers with its ``index.html`` (``/docs``
  redirects to ``/docs/`` first, so that relative links resolve), and a path
  with no file answers with ``404.html`` if there is one.

Nothing outside the directory is ever served: a path with a ``..`` segment
(however it was percent-encoded) or a NUL is a 404, and so is a file whose
real path, symlinks resolved, lies outside the directory's real path, unless
``follow_symlink=True``, which trusts symlinks inside the directory to point
where they like (Starlette's option of the same name).
"""

from __future__ import annotations

import email.utils
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from rawbg.errors import HTTPException
from rawbg.requests import Request
from rawbg.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

__all__ = ["StaticFiles"]

#: the methods that read a file; any other is a 405
READ_METHODS = frozenset({"GET", "HEAD"})


class StaticFiles:
    """Serve the files under `directory` (a mount: the request's path is the file's)."""

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        html: bool = False,
        check_dir: bool = True,
        follow_symlink: bool = False,
    ) -> None:
        if directory is None:
            raise TypeError(
                "StaticFiles needs directory=; rawbg does not serve packages= (a package's "
                "files: give their directory, e.g. importlib.resources.files(pkg) / 'statics')"
            )
        self.directory = os.fspath(directory)
        self.html = html
        self.follow_symlink = follow_symlink
        if check_dir and not os.path.isdir(self.directory):
            raise RuntimeError(f"Directory '{self.directory}' does not exist")

    async def __call__(self, request: Request) -> Response:
        """The answer to `request`, whose path is relative to the mount point."""
        if request.method not in READ_METHODS:
            return PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"allow": "GET, HEAD"}
            )
        found = self.lookup(request.path)
        if found is not None and stat.S_ISDIR(found.stat.st_mode) and self.html:
            if not request.path.endswith("/"):  # relative links need the slash
                return RedirectResponse(_with_slash(request), status_code=307)
            found = self._find(os.path.join(found.path, "index.html"))
        if found is not None and stat.S_ISREG(found.stat.st_mode):
            return file_response(found, request.headers, method=request.method)
        if self.html:
            page = self._find(os.path.join(self.directory, "404.html"))
            if page is not None and stat.S_ISREG(page.stat.st_mode):
                return FileResponse(page.path, status_code=404, stat_result=page.stat)
        raise HTTPException(status_code=404)

    def lookup(self, path: str) -> Found | None:
        """The file or directory `path` (decoded, relative) names inside the directory, or None."""
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if any(part == ".." or "\0" in part or "\\" in part for part in parts):
            return None  # never above the directory, whatever the encoding was
        return self._find(os.path.join(self.directory, *parts))

    def _find(self, full_path: str) -> Found | None:
        try:
            real = os.path.realpath(full_path)
            if not self.follow_symlink:
                root = os.path.realpath(self.directory)
                if os.path.commonpath([root, real]) != root:
                    return None  # a symlink that leads out of the directory
                full_path = real
            return Found(full_path, os.stat(full_path))
        except (OSError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Found:
    path: str
    stat: os.stat_result


def _with_slash(request: Request) -> str:
    url = request.url
    return str(url.replace(path=url.path + "/"))


def entity_tag(info: os.stat_result) -> str:
    """A strong validator that changes when the file does: its size and mtime, in hex."""
    return f'"{info.st_size:x}-{info.st_mtime_ns:x}"'


def file_response(found: Found, headers: Mapping[str, str], *, method: str) -> Response:
    """The file, whole, as a 304, or as the range asked for (RFC 9110 13 and 14)."""
    info = found.stat
    etag = entity_tag(info)
    last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
    validators = {"etag": etag, "last-modified": last_modified, "accept-ranges": "bytes"}
    if not_modified(headers, etag, info.st_mtime):
        return Response(status_code=304, headers={"etag": etag})
    size = info.st_size
    wanted = headers.get("range")
    if method == "GET" and wanted is not None and if_range_holds(headers, etag, last_modified):
        span = byte_range(wanted, size)
        if span is UNSATISFIABLE:
            return PlainTextResponse(
                "Range Not Satisfiable",
                status_code=416,
                headers={"content-range": f"bytes */{size}", **validators},
            )
        if isinstance(span, tuple):
            first, last = span
            response = FileResponse(
                found.path, status_code=206, headers=validators, stat_result=info
            )
            response.send_range(first, last)
            return response
    return FileResponse(found.path, headers=validators, stat_result=info)


def _tags(value: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()]


def not_modified(headers: Mapping[str, str], etag: str, mtime: float) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides (weakly) when sent, else If-Modified-Since."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = _tags(if_none_match)
        return "*" in tags or etag in tags
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110 13.1.3)
    return int(mtime) <= since


def if_range_holds(headers: Mapping[str, str], etag: str, last_modified: str) -> bool:
    """RFC 9110 13.1.5: no If-Range, or one that names the file as it is (strongly)."""
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    return if_range.strip() in (etag, last_modified)


#: a range that starts past the end of the file: 416
UNSATISFIABLE = object()


def byte_range(value: str, size: int) -> tuple[int, int] | object | None:
    """``bytes=...`` to (first, last) inclusive, `UNSATISFIABLE`, or None to send it all."""
    unit, _, ranges = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return None  # another unit, or several ranges: ignored (RFC 9110 14.2)
    first_text, dash, last_text = ranges.strip().partition("-")
    if not dash or not (first_text or last_text):
        return None
    if not all(text.isdigit() for text in (first_text, last_text) if text):
        return None
    if not first_text:  # the last N bytes
        suffix = int(last_text)
        if suffix == 0:
            return UNSATISFIABLE
        return (max(size - suffix, 0), size - 1) if size else UNSATISFIABLE
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid: ignored
    if first >= size:
        return UNSATISFIABLE
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)
