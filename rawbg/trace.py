"""The lifecycle trace behind ``python -m rawbg --trace``.

Each connection gets a `ConnectionTrace` when tracing is on, and nothing when
it is off: every trace point in the server is ``if trace is not None: ...``,
one comparison, so a server that does not trace pays nothing else.

Each request gets a `RequestTrace` from its connection's, so that the lines of
a request's background tasks still name that request while the connection has
moved on to the next one.

A line reads ``conn 3 req 2 +1.234 ms  event  key=value ...``: the connection's
number, the request's number on it, the time since the connection was
accepted (monotonic clock), the event and its details.
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

    __slots__ = ("_requests", "label", "started")

    def __init__(self, label: str | None = None) -> None:
        self.label = label or f"conn {next(_connection_numbers)}"
        self.started = time.monotonic()
        self._requests = 0

    def next_request(self) -> RequestTrace:
        self._requests += 1
        return RequestTrace(self, self._requests)

    def event(self, what: str, *, since: float | None = None, **details: Any) -> float:
        """Log `what` with its details; return the event's time, for a later `since=`."""
        return _emit(self.label, self.started, what, since, details)


class RequestTrace:
    """The trace of one request on a traced connection."""

    __slots__ = ("label", "started")

    def __init__(self, connection: ConnectionTrace, number: int) -> None:
        self.label = f"{connection.label} req {number}"
        self.started = connection.started

    def event(self, what: str, *, since: float | None = None, **details: Any) -> float:
        return _emit(self.label, self.started, what, since, details)


def _emit(
    label: str, started: float, what: str, since: float | None, details: dict[str, Any]
) -> float:
    now = time.monotonic()
    if since is not None:
        details["duration_ms"] = f"{(now - since) * 1000:.3f}"
    fields = " ".join(f"{key}={value}" for key, value in details.items())
    logger.info(
        "%s +%.3f ms  %s%s", label, (now - started) * 1000, what, f"  {fields}" if fields else ""
    )
    return now
