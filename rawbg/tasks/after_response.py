"""`AfterResponse`: what a request leaves behind once its response is written.

Its tasks, in order, then the clean-up of its generator dependencies; the one
owner of their count in `PendingWork`, and of their journal entries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Generator, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from rawbg.culprits import Part, names_frames
from rawbg.tasks.calls import BackgroundTask
from rawbg.tasks.failure_log import discarded_tasks, task_failures
from rawbg.tasks.journal.store import NewEntry
from rawbg.tasks.pending import PendingWork
from rawbg.tasks.policy import journal_record

if TYPE_CHECKING:
    from rawbg.tasks.journal.writer import JournalWriter
    from rawbg.trace import RequestTrace
    from rawbg.types import Cleanup

logger = logging.getLogger("rawbg.background")


def _name_task_frame(frame: FrameType) -> Part:
    """For the loop-block watchdog: a frame of `AfterResponse._attempts` runs one task."""
    local = frame.f_locals
    return Part(
        f"the background task {local['task'].name}", of=local["self"].label, trace=local["trace"]
    )


def _name_cleanup_frame(frame: FrameType) -> Part:
    """A frame of `AfterResponse._run_all` not inside `_attempts`: the dependency clean-up."""
    local = frame.f_locals
    return Part("the dependency clean-up", of=local["self"].label, trace=local["trace"])


def _name_single_task_frame(frame: FrameType) -> Part:
    """A frame of `AfterResponse.send`/`throw`: the one ``async def`` task it drives directly."""
    local = frame.f_locals
    name = getattr(local.get("running"), "__qualname__", "?")
    return Part(f"the background task {name}", of=local["self"].label)


class Owner(Protocol):
    """What runs a work as a task of its own (`WorkGroup`): told when the work ends."""

    def ended(self, work: AfterResponse) -> None: ...


class AfterResponse(Coroutine[Any, Any, None]):
    """A request's background work, and the one owner of its pending count.

    It is made by `App.handle` (the queued calls, the clean-up of the
    request's generator dependencies, a label for the log) and goes through
    three steps, each a method:

    1. `reserve`, before the response's first byte: count its units of work
       (one per task, one for the clean-up) in the process-wide `PendingWork`;
    2. `discard`, only if the response failed: drop the tasks (the clean-up
       still runs);
    3. run it, by awaiting it (``await work``, in the connection task) or as a
       task of its own (`WorkGroup.start`): its tasks in order, then the
       clean-up, a failure never stopping the rest.

    Its count is released on every path: as each task ends (done or failed;
    a journaled one once its done-mark is committed), and whatever is left
    when it is cancelled, before or after it started.

    It is a coroutine object itself, not an ``async def``: in the common case
    (one ``async def`` task, no clean-up, no trace) it passes each step
    straight to the user's coroutine, otherwise to `_run_all`. It keeps only
    the calls, the clean-up and the label, never the request. Why, measured:
    docs/ARCHITECTURE.md, "`AfterResponse` is a coroutine object".
    """

    __slots__ = (
        "_calls",
        "_cleanup",
        "_entry_ids",
        "_group",
        "_journal",
        "_pending",
        "_running",
        "_unreleased",
        "label",
    )

    def __init__(
        self,
        tasks: Iterable[BackgroundTask],
        cleanup: Cleanup | None,
        label: str,
    ) -> None:
        self._calls = tuple(tasks)  # a tuple: docs/ARCHITECTURE.md, "A pending task keeps little"
        self._cleanup = cleanup
        self.label = label
        self._pending: PendingWork | None = None
        #: what each step is passed to: the user's coroutine or `_run_all`
        self._running: Coroutine[Any, Any, Any] | None = None
        #: units counted in `PendingWork` for this work and not yet released
        self._unreleased = 0
        #: with a journal: the journal, and each call's entry id (None: not durable)
        self._journal: JournalWriter | None = None
        #: (an int for a single task, for the same reason as the tuple above)
        self._entry_ids: int | tuple[int | None, ...] | None = None
        #: the `WorkGroup` running it as a task, told when it ends (`_leave_group`)
        self._group: Owner | None = None

    @property
    def tasks(self) -> tuple[BackgroundTask, ...]:
        return self._calls

    @property
    def cleanup(self) -> Cleanup | None:
        return self._cleanup

    @property
    def units(self) -> int:
        """How many units of pending work this is: one per task, one for the clean-up."""
        return len(self._calls) + (self._cleanup is not None)

    # -- the three steps ------------------------------------------------------------

    def reserve(self, pending: PendingWork, trace: RequestTrace | None) -> None:
        """Count this work as pending; from here on it releases its count itself."""
        self._pending = pending
        self._unreleased = units = self.units
        pending.reserve(units)
        calls = self._calls
        if trace is not None or self._cleanup is not None or len(calls) != 1:
            self._running = self._run_all(trace)
        elif not calls[0].is_async or calls[0].policy.retries:
            self._running = self._run_all(None)
        # else: the single coroutine is made at the first step (`_start_single`)

    async def record(self, journal: JournalWriter, trace: RequestTrace | None) -> None:
        """Journal the durable tasks; return once committed. `JournalUnavailable` if not.

        A durable task made outside a request (no record yet) gets its record
        here; one that cannot be journaled raises `TypeError`.
        """
        calls = self._calls
        records = []
        for call in calls:
            if call.record is None and call.policy.durable:
                call.record = journal_record(call.func, call.args, call.kwargs)
            if call.record is not None:
                records.append(NewEntry(*call.record, self.label))
        if not records:
            return
        started = 0.0 if trace is None else time.monotonic()
        ids = iter(await journal.record(records))
        self._journal = journal
        if len(calls) == 1:
            self._entry_ids = next(ids)
        else:
            self._entry_ids = tuple(None if call.record is None else next(ids) for call in calls)
        for call in calls:
            call.record = None  # kept in the journal now, not in memory
        if trace is not None:
            trace.event("journaled", entries=len(records), since=started)

    def run_by(self, owner: Owner) -> None:
        """It is about to run as a task of `owner`'s, which it tells when it ends."""
        self._group = owner

    def recovered(self, journal: JournalWriter, entry_id: int) -> None:
        """This work is a journal entry run again: mark it in the journal when it ends."""
        self._journal = journal
        self._entry_ids = entry_id

    def discard(self, why: str = "its response failed") -> int:
        """The response failed: drop the tasks, release their count; return how many."""
        dropped = len(self._calls)
        if dropped:
            discarded_tasks.log(
                logging.WARNING,
                f"background tasks of {self.label} discarded: {why}",
                "discarding %d background task(s) of %s: %s",
                dropped,
                self.label,
                why,
            )
            for index in range(dropped):  # already journaled: dropped there too, not run later
                self._mark_finished(index, failed=False, started=False)
            self._entry_ids = None
            self._calls = ()
            self._release(dropped)
        return dropped

    # -- running: the coroutine protocol ---------------------------------------------

    def __await__(self) -> Generator[Any, None, None]:
        return self  # type: ignore[return-value]  # this object is its own iterator

    def __next__(self) -> Any:
        return self.send(None)

    @names_frames(_name_single_task_frame)
    def send(self, value: Any) -> Any:
        running = self._running
        if running is None:
            running = self._start_single()
        try:
            return running.send(value)
        except StopIteration:
            return self._finished(None)
        except Exception as exc:  # only the user's coroutine raises: `_run_all` catches
            return self._finished(exc)
        except BaseException:  # cancelled
            self._end()
            raise

    @names_frames(_name_single_task_frame)
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        running = self._running
        error = typ if val is None else val
        if running is None:  # cancelled before its first step: it never started
            self._end()
            raise error
        try:
            return running.throw(error)
        except StopIteration:
            return self._finished(None)
        except Exception as exc:
            return self._finished(exc)
        except BaseException:
            self._end()
            raise

    def close(self) -> None:
        if self._running is not None:
            self._running.close()
        self._end()

    # -- inside --------------------------------------------------------------------

    def _start_single(self) -> Coroutine[Any, Any, Any]:
        """The user's coroutine of the only task; the call itself may fail (wrong arguments)."""
        calls, self._calls = self._calls, ()  # the coroutine holds what it needs
        if not calls:  # discarded before it started
            return _done()
        call = calls[0]
        journal, entry_id = self._journal, self._entry_ids
        if journal is not None and type(entry_id) is int:
            admitted = journal.admit(entry_id)
            if admitted is False:  # another process's now: not run, not marked
                self._entry_ids = None
                return _done()
            if admitted is None:  # not yet: the general path waits for the lease
                self._calls = calls
                waiting = self._run_all(None)
                self._running = waiting
                return waiting
        try:
            running = call.start()
        except Exception as exc:
            log_task_failure(call.name, self.label, exc)
            running = _done()
        self._running = running  # type: ignore[assignment]
        return running  # type: ignore[return-value]

    def _finished(self, error: Exception | None) -> Any:
        """The coroutine it drives (the single task's, or `_run_all`) has ended."""
        if error is not None:
            running = self._running
            log_task_failure(getattr(running, "__qualname__", "?"), self.label, error)
        if self._mark_finished(0, failed=error is not None, then=self._marked):
            # Journaled: its task (and its group's wait) ends now; its count
            # once the mark is committed, when the journal calls `_marked`.
            self._entry_ids = None  # marked
            self._leave_group()
        else:
            self._end()
        raise StopIteration

    def _marked(self) -> None:
        """The journal has committed the done-mark of its single task."""
        self._release(self._unreleased)

    def _mark_finished(
        self,
        index: int,
        *,
        failed: bool,
        started: bool = True,
        then: Callable[[], None] | None = None,
    ) -> bool:
        """Tell the journal the task at `index` ended (not when it was cancelled: it stays).

        True if the task is journaled: `then` is called once the mark is
        committed, and the work must not end before, so that a crash
        repeats only work that had not ended.
        """
        entry_id = self._entry_id(index)
        if entry_id is not None and self._journal is not None:
            self._journal.finished(entry_id, failed=failed, started=started, then=then)
            return True
        return False

    def _entry_id(self, index: int) -> int | None:
        ids = self._entry_ids
        if ids is None or type(ids) is int:
            return ids
        assert isinstance(ids, tuple)
        return ids[index] if index < len(ids) else None

    def _end(self) -> None:
        """It has ended, on whichever path: release what is left, tell its group."""
        self._release(self._unreleased)
        self._leave_group()

    def _leave_group(self) -> None:
        group = self._group
        if group is not None:
            self._group = None
            group.ended(self)

    def _release(self, units: int) -> None:
        if units and self._pending is not None:
            self._unreleased -= units
            self._pending.release(units)

    @names_frames(_name_cleanup_frame)
    async def _run_all(self, trace: RequestTrace | None) -> None:
        """Each task in order, then the clean-up; a failure never stops the rest."""
        label = self.label
        try:
            ran = False
            # read when it starts: `discard` may have emptied it
            for index, task in enumerate(self._calls):
                try:
                    failed = await self._attempts(index, task, trace, continuing=ran)
                    if failed is not None:  # it ran (None: another process's to run)
                        ran = True
                        if self._entry_id(index) is not None and self._journal is not None:
                            committed = asyncio.get_running_loop().create_future()
                            then = functools.partial(_resolve, committed)
                            self._mark_finished(index, failed=failed, then=then)
                            await committed
                finally:
                    self._release(1)
            self._entry_ids = None  # each was marked as it ended
        finally:
            # Also when cancelled (a forced shutdown): the dependencies the
            # tasks used are still closed, and nothing stays counted as pending.
            if self._cleanup is not None:
                try:
                    await self._cleanup()
                except Exception:
                    logger.exception("clean-up of the dependencies of %s failed", label)
                finally:
                    self._release(1)
                if trace is not None:
                    trace.event("dependency clean-up done", route=label)

    @names_frames(_name_task_frame)
    async def _attempts(
        self, index: int, task: BackgroundTask, trace: RequestTrace | None, *, continuing: bool
    ) -> bool | None:
        """Run `task` until it succeeds or its policy's attempts are spent; True if it failed.

        None if it did not run: its journal entry is another process's now
        (`JournalWriter.admit`). `continuing`: an earlier task of this work ran.
        """
        first = attempt = task.attempts + 1
        last = max(task.policy.attempts, attempt)  # a recovered entry gets at least one more
        entry_id = self._entry_id(index)
        journal = self._journal if entry_id is not None else None
        while True:
            if journal is not None and entry_id is not None:
                again = attempt > first
                admitted = journal.admit(
                    entry_id, continuing=continuing or again, first_attempt=not again
                )
                while admitted is None:  # its lease is to be renewed first
                    await journal.lease_changed()
                    admitted = journal.admit(
                        entry_id, continuing=continuing or again, first_attempt=not again
                    )
                if not admitted:
                    if trace is not None:
                        trace.event("background task left to another node", task=task.name)
                    return None
            started = (
                0.0 if trace is None else trace.event("background task started", task=task.name)
            )
            try:
                await task.start()
            except Exception as exc:
                if trace is not None:
                    trace.event(
                        "background task failed", task=task.name, error=repr(exc), since=started
                    )
                if attempt >= last:
                    log_task_failure(task.name, self.label, exc)
                    return True
                await self._retry_later(index, task, attempt, last, exc, trace)
                attempt += 1
            else:
                if trace is not None:
                    trace.event("background task finished", task=task.name, since=started)
                return False

    async def _retry_later(
        self,
        index: int,
        task: BackgroundTask,
        attempt: int,
        last: int,
        error: Exception,
        trace: RequestTrace | None,
    ) -> None:
        """Attempt `attempt` of `last` failed: say so (log, journal, trace), wait the backoff."""
        delay = task.policy.delay_before(attempt + 1)
        logger.warning(
            "background task %s of %s failed (attempt %d of %d): %r; retrying in %.3g s",
            task.name,
            self.label,
            attempt,
            last,
            error,
            delay,
        )
        entry_id = self._entry_id(index)
        if entry_id is not None and self._journal is not None:
            self._journal.attempted(entry_id, attempt)
        if trace is not None:
            trace.event("retry", task=task.name, attempt=attempt + 1, delay_s=delay)
        await asyncio.sleep(delay)


async def _done() -> None:
    """A coroutine with nothing to do: what a discarded or failed-to-start task becomes."""


def _resolve(future: asyncio.Future[None]) -> None:
    """A done-mark of `_run_all` is committed: its wait ends (unless it was cancelled)."""
    if not future.done():
        future.set_result(None)


def log_task_failure(name: str, label: str, error: BaseException) -> None:
    """The one place a failed task is logged: its name, its route, its traceback.

    One traceback per failure site per minute, then a count (`rawbg.tasks.failure_log`).
    """
    task_failures.task_failed(name, label, error)
