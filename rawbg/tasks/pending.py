"""`PendingWork`: the process-wide count of queued background tasks, and its bound."""

from __future__ import annotations

import asyncio


class PendingWork:
    """The process-wide count of queued background tasks, and the bound on it.

    The connection task reserves a request's tasks *before* writing its
    response, and each is released when it finishes. While the count is at or
    above `limit`, connection tasks wait in `wait_for_room` before reading the
    next request, so queued work is never dropped and never grows without bound.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = False
        #: set once the count is under `_below_mark` (`wait_below`)
        self._below: asyncio.Event | None = None
        self._below_mark = 0

    def reserve(self, n: int) -> None:
        self.count += n
        if self.count:
            self._idle.clear()
        if self.count >= self.limit and not self._stopped:
            self._room.clear()

    def release(self, n: int = 1) -> None:
        self.count -= n
        if self.count < self.limit:
            self._room.set()
            below = self._below
            if below is not None and self.count < self._below_mark:
                below.set()
        if self.count == 0:
            self._idle.set()

    @property
    def has_room(self) -> bool:
        return self.count < self.limit or self._stopped

    def stop_waiting(self) -> None:
        """Shutdown: wake every connection waiting for room, so that it can close."""
        self._stopped = True
        self._room.set()
        if self._below is not None:
            self._below.set()

    async def wait_below(self, mark: int) -> None:
        """Return once fewer than `mark` units are pending (or shutdown has begun).

        For work that must leave the rest of the bound to requests: the
        journal's recovered backlog is admitted only under a share of it.
        """
        while self.count >= mark and not self._stopped:
            self._below_mark = mark
            below = self._below = asyncio.Event()
            try:
                await below.wait()
            finally:
                self._below = None

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def wait_idle(self) -> None:
        """Return once no background work is queued or running (used by tests)."""
        await self._idle.wait()
