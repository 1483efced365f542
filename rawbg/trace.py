"""The lifecycle trace behind ``python -m rawbg --trace``.

Each connection gets a `ConnectionTrace` when tracing is on, and nothing when
it is off: every trace point in the server is ``if trace is not None: ...``,
one comparison, so a server that does not trace pays nothing else.

A line reads ``conn 3 +1.234 ms  event  key=value ...``: the connection's
number, the time since it was accepted (monotonic), the event and its details.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

logger = logging.getLogger("rawbg.trace")

_connection_numbers = itertools.count(1)


class ConnectionTrace:
    """Writes one log line per lifecycle event of one connection."""

    __slots__ = ("number", "request_number", "started")

    def __init__(self) -> None:
        self.number = next(_connection_numbers)
        self.request_number = 0
        self.started = time.monotonic()

    def event(self, what: str, *, since: float | None = None, **details: Any) -> float:
        """Log `what` with its details; return the event's time, for a later `since=`."""
        now = time.monotonic()
        if since is not None:
            details["duration_ms"] = f"{(now - since) * 1000:.3f}"
        fields = " ".join(f"{key}={value}" for key, value in details.items())
        request = f" req {self.request_number}" if self.request_number else ""
        logger.info(
            "conn %d%s +%.3f ms  %s%s",
            self.number,
            request,
            (now - self.started) * 1000,
            what,
            f"  {fields}" if fields else "",
        )
        return now
