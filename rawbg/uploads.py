"""`UploadFile` and `FormData`: what a parsed form gives a handler.

A form's text fields are strings held in memory; each file is an `UploadFile`
whose bytes are *spooled*: kept in memory up to `SPOOL_MAX_SIZE`, then moved
to an anonymous temporary file (``tempfile.SpooledTemporaryFile``). The
temporary file has no name in the directory once it is made (Linux's
``O_TMPFILE``, or made and unlinked at once elsewhere), so closing it, or the
process ending however it ends, frees its space: there is nothing to remove.

The methods that touch a file on disk (`UploadFile.read`, ``write``, ``seek``,
``close``) run in rawbg's thread pool, so that a slow disk does not hold the
event loop; while the bytes are in memory they run in place, as Starlette's do.

Who closes them: the request that parsed the form, once its response is sent
and its background tasks have run (`rawbg.app.application`): a task that was
handed an `UploadFile` can still read it. `rawbg.forms` closes the files of a
form that failed half-way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from rawbg.datastructures import Headers
from rawbg.threadpool import run_in_thread

# 1 MiB: Starlette's spool size. A file up to this size never touches the disk;
# a larger one costs one temporary file. Small enough that 1000 concurrent small
# uploads hold at most 1 GiB in memory, large enough that the common avatar or
# CSV does not pay for a file.
SPOOL_MAX_SIZE = 1024 * 1024


class UploadFile:
    """A file received in a ``multipart/form-data`` body (Starlette's and FastAPI's API).

    ``filename`` is what the client sent, never a path to write to (it may
    hold ``../``); ``content_type`` is the part's ``Content-Type`` header, and
    ``headers`` all of its headers. ``size`` is the number of bytes received.
    ``file`` is the spooled file itself, for code that wants a plain file
    object (``shutil.copyfileobj(upload.file, out)``).
    """

    def __init__(
        self,
        file: IO[bytes],
        *,
        size: int | None = None,
        filename: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.file = file
        self.size = size
        self.filename = filename
        self.headers = headers if headers is not None else Headers([])

    @classmethod
    def spooled(
        cls, *, filename: str | None, headers: Headers, spool_max_size: int = SPOOL_MAX_SIZE
    ) -> UploadFile:
        """An empty upload to write a part into: in memory until `spool_max_size` bytes."""
        # closed by its owner (the request, or a failed form): not a with block
        file = tempfile.SpooledTemporaryFile(max_size=spool_max_size, mode="w+b")  # noqa: SIM115
        return cls(file, size=0, filename=filename, headers=headers)

    @property
    def content_type(self) -> str | None:
        value: str | None = self.headers.get("content-type")
        return value

    @property
    def in_memory(self) -> bool:
        """The bytes are still in memory (a spooled file not rolled over to disk)."""
        rolled = getattr(self.file, "_rolled", True)
        return not rolled

    @property
    def closed(self) -> bool:
        return bool(self.file.closed)

    async def write(self, data: bytes) -> None:
        await self.write_many([data])

    async def write_many(self, pieces: list[bytes]) -> None:
        """Write `pieces` in order: one trip to the thread pool for all of them when on disk.

        The write that moves a spooled file to disk (copying what was in
        memory) runs in the thread pool too.
        """
        added = sum(map(len, pieces))
        if self.size is not None:
            self.size += added
        if self.in_memory and not self._rolls_over(added):
            self.file.writelines(pieces)
        else:
            await run_in_thread(self.file.writelines, pieces)

    def _rolls_over(self, added: int) -> bool:
        limit = getattr(self.file, "_max_size", 0)
        return bool(limit) and self.file.tell() + added > limit

    async def read(self, size: int = -1) -> bytes:
        if self.in_memory:
            return self.file.read(size)
        return await run_in_thread(self.file.read, size)

    async def seek(self, offset: int) -> None:
        if self.in_memory:
            self.file.seek(offset)
        else:
            await run_in_thread(self.file.seek, offset)

    async def close(self) -> None:
        if self.closed:
            return
        if self.in_memory:
            self.file.close()
        else:
            await run_in_thread(self.file.close)

    def close_now(self) -> None:
        """Close on the spot, without the thread pool: for clean-up that may be cancelled."""
        self.file.close()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """For pydantic (a form model's field, a ``TypeAdapter``): an instance, as it is."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(filename={self.filename!r}, size={self.size!r}, "
            f"headers={self.headers!r})"
        )


FormValue = str | UploadFile


class FormData(Mapping[str, FormValue]):
    """A parsed form: field names to strings or `UploadFile`s, repeated names kept.

    ``form["name"]`` is the *last* value of that name (Starlette's rule);
    `getlist` gives them all, `multi_items` every pair in the order sent.
    """

    __slots__ = ("_items", "_last")

    def __init__(self, items: Iterable[tuple[str, FormValue]] = ()) -> None:
        self._items = list(items)
        self._last = dict(self._items)

    def __getitem__(self, key: str) -> FormValue:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getlist(self, key: str) -> list[FormValue]:
        return [value for name, value in self._items if name == key]

    def multi_items(self) -> list[tuple[str, FormValue]]:
        return list(self._items)

    def uploads(self) -> list[UploadFile]:
        return [value for _, value in self._items if isinstance(value, UploadFile)]

    async def close(self) -> None:
        """Close every file of the form (their temporary files go with them)."""
        try:
            for upload in self.uploads():
                await upload.close()
        except BaseException:  # cancelled (a forced shutdown), say: the rest close now
            self.close_now()
            raise

    def close_now(self) -> None:
        for upload in self.uploads():
            upload.close_now()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"
