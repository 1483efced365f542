"""`LoopWatchdog`: a warning when something blocks the event loop, naming what.

An ``async def`` handler that calls ``time.sleep(2)`` (or parses a huge
document, or hashes a password) stalls every connection of the process for
2 s, and nothing else would say so. The watchdog does, at no cost per request:

1. **Heartbeat.** A timer on the loop stores ``time.monotonic()`` in
   `LoopWatchdog._beat` every quarter of the threshold. That is the only
   work the watchdog adds to the loop: a few callbacks a second.
2. **Watchdog thread.** A daemon thread looks at the heartbeat as often.
   When the last beat is older than threshold + beat interval, the loop has
   certainly been blocked for at least the threshold (a block of 1.5 x the
   threshold is always seen).
3. **Culprit.** While the loop is still blocked, the thread reads the loop
   thread's Python stack (``sys._current_frames``) and walks it outwards to
   the first frame that says what was running. The functions through which
   rawbg runs user code (a handler, a dependency, a background task, its
   clean-up) register beside their definitions how a frame of theirs is
   named (`rawbg.culprits`); this module knows none of them. It also notes
   the innermost frame (file:line in function), usually the line that
   blocks. Nothing is recorded per request for this: the stack is the record.
4. **Report.** When the heartbeat moves again, one warning gives how long
   the loop was blocked (to within a beat interval) and the culprit. With
   ``--trace`` the same event goes on the request's trace. A loop that stays
   blocked is reported after `STILL_BLOCKED_REPORT` and then at doubling
   intervals, so a hang is never silent.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from rawbg.culprits import STOP, Part, namer_of

if TYPE_CHECKING:
    from rawbg.trace import RequestTrace

logger = logging.getLogger("rawbg.watchdog")

# A loop that stays blocked is reported after 10 s, then at doubling intervals
# (20 s, 40 s, ...): a hung process is never silent, and never floods the log.
STILL_BLOCKED_REPORT = 10.0
trace_logger = logging.getLogger("rawbg.trace")


@dataclass(slots=True)
class Culprit:
    """What the loop was running when the watchdog found it blocked."""

    what: str  # "the handler hello of GET /hello"
    where: str  # the innermost frame: "app.py:12 in hello"
    trace: RequestTrace | None  # the request's trace, when it is traced


@dataclass(slots=True)
class _Block:
    last_beat: float  # the last heartbeat before the block: it began after this
    culprit: Culprit
    next_report: float  # when to say "still blocked" if it goes on


class LoopWatchdog:
    """Warns when the running loop is blocked for `threshold` seconds or more."""

    def __init__(self, *, threshold: float, trace: bool = False) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold!r}")
        self.threshold = threshold
        self._trace = trace  # also put each block on the --trace log
        self._interval = threshold / 4
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rawbg-watchdog", daemon=True)

    def start(self) -> None:
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (on the loop). A block the thread has seen and whose end it
        has not reported yet is reported now: the loop runs, so it has ended."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._beat = time.monotonic()  # a last heartbeat (it may be overdue still)
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _heartbeat(self) -> None:  # on the loop
        self._beat = time.monotonic()
        self._timer = self._loop.call_later(self._interval, self._heartbeat)

    # -- the watchdog thread -------------------------------------------------------

    def _watch(self) -> None:
        block: _Block | None = None
        while not self._stopped.wait(self._interval):
            beat = self._beat
            now = time.monotonic()
            if block is None:
                if now - beat > self.threshold + self._interval:
                    culprit = self._find_culprit()
                    if self._beat == beat:  # still blocked: the stack we read is the culprit's
                        block = _Block(beat, culprit, beat + STILL_BLOCKED_REPORT)
            elif beat != block.last_beat:  # the loop runs again
                self._report(block, beat - block.last_beat, still=False)
                block = None
            elif now >= block.next_report:
                self._report(block, now - block.last_beat, still=True)
                block.next_report = block.last_beat + 2 * (now - block.last_beat)
        # Stopped: a block that ended in the loop iteration that stopped the
        # server (a SIGTERM that came during it is handled as soon as the loop
        # runs again) is seen ended only now; its end is the loop's next beat.
        if block is not None and self._beat != block.last_beat:
            self._report(block, self._beat - block.last_beat, still=False)

    def _report(self, block: _Block, seconds: float, *, still: bool) -> None:
        culprit = block.culprit
        verb = "has been blocked for" if still else "was blocked for"
        logger.warning(
            "event loop %s %.3f s by %s (at %s)", verb, seconds, culprit.what, culprit.where
        )
        if culprit.trace is not None:
            culprit.trace.event(
                "event loop blocked",
                duration_ms=f"{seconds * 1000:.0f}",
                by=culprit.what,
                at=culprit.where,
            )
        elif self._trace:
            trace_logger.info(
                "loop  event loop blocked  duration_ms=%.0f by=%s at=%s",
                seconds * 1000,
                culprit.what,
                culprit.where,
            )

    def _find_culprit(self) -> Culprit:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return Culprit("an unknown callback", "?", None)
        try:
            return describe_stack(frame, asyncio.current_task(self._loop))
        except Exception:  # never let a surprise in a frame stop the watchdog
            logger.debug("could not describe the blocked loop's stack", exc_info=True)
            return Culprit("an unknown callback", location(frame), None)


def location(frame: FrameType) -> str:
    code = frame.f_code
    filename = code.co_filename.rsplit("/", 1)[-1]
    return f"{filename}:{frame.f_lineno} in {code.co_name}"


def describe_stack(innermost: FrameType, task: asyncio.Task[Any] | None) -> Culprit:
    """Name what the loop thread is running, from its stack (innermost frame first).

    The frames of the functions through which rawbg runs user code name
    themselves (`rawbg.culprits`: each registers a namer beside its
    definition); the first whole `Part` found walking outwards is the
    culprit, refined by an inner part seen on the way (a dependency of the
    handler whose frame names the route).
    """
    where = location(innermost)
    inner: Part | None = None
    frame: FrameType | None = innermost
    while frame is not None:
        namer = namer_of(frame.f_code)
        part = namer(frame) if namer is not None else None
        if part is STOP:
            break
        if part is not None:
            if not part.inner:
                return Culprit(part.describe(inner), where, part.trace)
            if inner is None:  # the innermost dependency is the one that blocks
                inner = part
        frame = frame.f_back
    if task is not None:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        return Culprit(f"the task {task.get_name()!r} running {name}", where, None)
    return Culprit("a callback", where, None)
