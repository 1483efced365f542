"""One traceback per failure site per interval, and a count of the repeats.

A background task that fails on every request would write its full traceback
(about 570 B) per request: 10 000 failures, 5.7 MB of log that says one
thing. `FailureLog` logs the first failure of each *site* with its traceback,
counts the ones like it that follow within `FAILURE_LOG_INTERVAL`, and then
logs one line with the count: the fact that each task failed is never lost,
only its repeated traceback.

A site is the task's name, its route, the exception's type and the line that
raised it: a new bug, or the same exception from another line, gets its own
traceback at once.

The count is written when the interval ends (a timer on the running loop),
when the next failure of the site comes after it, when the server shuts down
(`flush`), or when a new event loop starts reporting (each `asyncio.run`
begins with a clean slate).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from dataclasses import dataclass

# A failing background task logs its traceback once per site (task, route,
# exception type, raising line) per this many seconds, then a count of the
# repeats: a task failing on every request at 1000 req/s writes two lines a
# minute, not 570 kB/s, and an operator still sees each new failure at once.
FAILURE_LOG_INTERVAL = 60.0

# Distinct failure sites tracked at once; past it every count is written out
# and tracking starts over. Sites are bounded by the code's raise statements,
# so 1000 is never reached by a real app, only bounds memory if it were.
MAX_FAILURE_SITES = 1000

Site = tuple[str, str, type[BaseException], str, int]


@dataclass(slots=True)
class _Window:
    """What one site did since its traceback was logged."""

    name: str
    label: str
    opened_at: float
    repeats: int = 0
    last: str = ""  # repr of the last repeated exception
    timer: asyncio.TimerHandle | None = None


class FailureLog:
    """Logs task failures to `logger`, one traceback per site per `interval` seconds."""

    def __init__(self, logger: logging.Logger, *, interval: float = FAILURE_LOG_INTERVAL) -> None:
        self._logger = logger
        self._interval = interval
        self._windows: dict[Site, _Window] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def task_failed(self, name: str, label: str, error: BaseException) -> None:
        """Task `name` of route `label` raised `error`."""
        loop = _running_loop()
        if loop is not self._loop:  # a new loop: the old one's timers will never fire
            self.flush()
            self._loop = loop
        site = _site(name, label, error)
        now = time.monotonic()
        window = self._windows.get(site)
        if window is not None and now - window.opened_at < self._interval:
            window.repeats += 1
            window.last = _short_repr(error)
            if window.timer is None and loop is not None:
                window.timer = loop.call_later(
                    window.opened_at + self._interval - now, self._close, site
                )
            return
        if window is not None:
            self._close(site)
        if len(self._windows) >= MAX_FAILURE_SITES:
            self.flush()
        self._windows[site] = _Window(name, label, now)
        self._logger.error("background task %s of %s failed", name, label, exc_info=error)

    def flush(self) -> None:
        """Log the count of every open window, and forget them all."""
        for site in list(self._windows):
            self._close(site)

    def _close(self, site: Site) -> None:
        window = self._windows.pop(site, None)
        if window is None:
            return
        if window.timer is not None:
            window.timer.cancel()
        if window.repeats:
            self._logger.error(
                "background task %s of %s failed ... and %d more like it in the last %.0f s"
                " (the last: %s)",
                window.name,
                window.label,
                window.repeats,
                self._interval,
                window.last,
            )


def _site(name: str, label: str, error: BaseException) -> Site:
    traceback = error.__traceback__
    filename, line = "", 0
    if traceback is not None:
        while traceback.tb_next is not None:
            traceback = traceback.tb_next
        filename, line = traceback.tb_frame.f_code.co_filename, traceback.tb_lineno
    return (name, label, type(error), filename, line)


def _short_repr(error: BaseException) -> str:
    text = repr(error)
    return text if len(text) <= 200 else text[:197] + "..."


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class RepeatedLines:
    """One log line per kind of event per `interval` seconds, then a count of the repeats.

    For failures that repeat with every request while their cause lasts: a
    full disk makes every request with durable tasks be refused, and each
    refusal discards its tasks (issue 24 counted 7,433 lines in 6 s, with the
    journal's failed commits, which the writer logs once per streak). The
    first of a kind is logged at once; the ones like it that follow within
    the interval are counted, and the count is logged with the next one after
    it (or at `flush`). Thread-safe.
    """

    def __init__(self, logger: logging.Logger, *, interval: float = FAILURE_LOG_INTERVAL) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        #: per kind: when its window opened, its level, and the repeats since
        self._windows: dict[str, tuple[float, int, int]] = {}

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        """Log `message` unless a line of `kind` was logged less than `interval` ago."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(kind)
            if window is not None and now - window[0] < self._interval:
                self._windows[kind] = (window[0], window[1], window[2] + 1)
                return
            if len(self._windows) >= MAX_FAILURE_SITES:
                self._flush_locked()
            self._windows[kind] = (now, level, 0)
        if window is not None:
            self._say_repeats(kind, window)
        self._logger.log(level, message, *args)

    def flush(self) -> None:
        """Log the count of every open window, and forget them all."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        windows, self._windows = self._windows, {}
        for kind, window in windows.items():
            self._say_repeats(kind, window)

    def _say_repeats(self, kind: str, window: tuple[float, int, int]) -> None:
        _, level, repeats = window
        if repeats:
            self._logger.log(
                level,
                "... and %d more like it in the last %.0f s: %s",
                repeats,
                self._interval,
                kind,
            )


#: the process's log of failed background tasks (`rawbg.background.log_task_failure`)
task_failures = FailureLog(logging.getLogger("rawbg.background"))
#: tasks discarded for the same reason, request after request (a full journal)
discarded_tasks = RepeatedLines(logging.getLogger("rawbg.background"))


def flush_all() -> None:
    """Write every count still open (at a server's shutdown, and at exit)."""
    task_failures.flush()
    discarded_tasks.flush()


# counts still open when the process ends (without a server shutdown) are written too
atexit.register(flush_all)
