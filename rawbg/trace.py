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

The same events can go to a file (``--trace-file``) as Chrome trace-event
JSON, which Perfetto (ui.perfetto.dev) and ``chrome://tracing`` open as they
are: a `TraceFile`. There each connection is a track (the connection's life,
and each request on it from head parsed to response flushed, as spans), and
each background task is a track of its own, a span from its start to its end.
`SPANS` says which events open and close which span; every other event is an
instant mark. ``python -m benchmarks.timeline FILE`` draws such a file.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from typing import Any, TextIO

logger = logging.getLogger("rawbg.trace")

_connection_numbers = itertools.count(1)


# Which events open ("B") and close ("E") a span in a trace file, and which
# span: the connection's life, a request on it, or a background task.
SPANS: dict[str, tuple[str, str]] = {
    "connection accepted": ("B", "connection"),
    "connection closed": ("E", "connection"),
    "request head parsed": ("B", "request"),
    "response flushed": ("E", "request"),
    "request rejected": ("E", "request"),
    "background task started": ("B", "task"),
    "background task finished": ("E", "task"),
    "background task failed": ("E", "task"),
}


class TraceFile:
    """Trace events as Chrome trace-event JSON (its array form), one event a line.

    The array's closing bracket is written by `close`; Perfetto and
    chrome://tracing also open a file cut short without it (a killed server).
    """

    def __init__(self, path: str) -> None:
        self._file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._file.write("[\n")
        self._pid = os.getpid()
        self._tracks = itertools.count(1)
        self._lock = threading.Lock()  # the thread pool's tasks trace too

    def new_track(self, name: str) -> int:
        """A new track (a "thread" in the format) named `name`; returns its id."""
        track = next(self._tracks)
        self._write({"ph": "M", "name": "thread_name", "tid": track, "args": {"name": name}})
        return track

    def mark(self, phase: str, track: int, name: str, at: float, args: dict[str, Any]) -> None:
        """Write one event: `phase` "B"/"E" (span begin/end) or "i" (instant), at monotonic `at`."""
        event: dict[str, Any] = {"ph": phase, "name": name, "tid": track, "ts": at * 1e6}
        if phase == "i":
            event["s"] = "t"
        if args:
            event["args"] = {key: str(value) for key, value in args.items()}
        self._write(event)

    def _write(self, event: dict[str, Any]) -> None:
        event["pid"] = self._pid
        line = json.dumps(event, separators=(",", ":"))
        with self._lock:
            if not self._file.closed:
                self._file.write(line + ",\n")

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                name = {"name": "rawbg"}
                last = {"ph": "M", "name": "process_name", "pid": self._pid, "tid": 0, "args": name}
                self._file.write(json.dumps(last, separators=(",", ":")) + "\n]\n")
                self._file.close()


class ConnectionTrace:
    """The trace of one connection: log lines (``--trace``), trace-file events, or both."""

    __slots__ = ("_requests", "file", "label", "log", "open_request", "started", "track")

    def __init__(
        self, *, log: bool = True, file: TraceFile | None = None, label: str | None = None
    ) -> None:
        self.label = label or f"conn {next(_connection_numbers)}"
        self.started = time.monotonic()
        self._requests = 0
        self.log = log
        self.file = file
        self.track = 0 if file is None else file.new_track(self.label)
        self.open_request = False  # a request span is open on this track

    def next_request(self) -> RequestTrace:
        self._requests += 1
        return RequestTrace(self, self._requests)

    def request_started(self, method: bytes, target: bytes) -> RequestTrace:
        """The trace of the request whose head was just parsed, its first event traced."""
        trace = self.next_request()
        trace.event("request head parsed", method=method.decode(), target=target.decode("latin-1"))
        return trace

    def event(self, what: str, *, since: float | None = None, **details: Any) -> float:
        """Trace `what` with its details; return the event's time, for a later `since=`."""
        now = _emit(self.log, self.label, self.started, what, since, details)
        if self.file is not None:
            self.to_file(what, now, details)
        return now

    def to_file(self, what: str, now: float, details: dict[str, Any]) -> None:
        assert self.file is not None
        phase, span = SPANS.get(what, ("i", ""))
        if span == "request":
            if phase == "B":
                name = f"{details.get('method', '')} {details.get('target', '')}".strip()
                self.file.mark("B", self.track, name or "request", now, details)
                self.open_request = True
                return
            if not self.open_request:  # rejected before its head was parsed
                self.file.mark("i", self.track, what, now, details)
                return
            self.open_request = False
        elif span == "connection" and phase == "E" and self.open_request:
            self.file.mark("E", self.track, "request", now, {"why": "connection closed"})
            self.open_request = False
        self.file.mark(phase, self.track, span or what, now, details)


class RequestTrace:
    """The trace of one request on a traced connection."""

    __slots__ = ("_task_track", "connection", "label", "started")

    def __init__(self, connection: ConnectionTrace, number: int) -> None:
        self.label = f"{connection.label} req {number}"
        self.started = connection.started
        self.connection = connection
        self._task_track = 0  # the track of the background task running now

    def event(self, what: str, *, since: float | None = None, **details: Any) -> float:
        connection = self.connection
        now = _emit(connection.log, self.label, self.started, what, since, details)
        file = connection.file
        if file is not None:
            phase, span = SPANS.get(what, ("i", ""))
            if span == "task":
                if phase == "B":
                    self._task_track = file.new_track(f"{self.label} {details.get('task', 'task')}")
                file.mark(phase, self._task_track, str(details.get("task", "task")), now, details)
            else:
                connection.to_file(what, now, details)
        return now


def _emit(
    log: bool,
    label: str,
    started: float,
    what: str,
    since: float | None,
    details: dict[str, Any],
) -> float:
    now = time.monotonic()
    if since is not None:
        details["duration_ms"] = f"{(now - since) * 1000:.3f}"
    if log:
        fields = " ".join(f"{key}={value}" for key, value in details.items())
        logger.info(
            "%s +%.3f ms  %s%s",
            label,
            (now - started) * 1000,
            what,
            f"  {fields}" if fields else "",
        )
    return now
