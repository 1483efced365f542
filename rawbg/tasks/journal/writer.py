"""The task journal at work: group commit from a writer thread, batched done-marks, leases.

The event loop never touches the disk. For each request with durable tasks,
`JournalWriter.record` returns a future; the connection task awaits it
before the response's first byte (docs/ARCHITECTURE.md, where the commit
sits and why). The entries of all the requests that call `record` in the
same loop iteration are handed to the writer thread together; the writer
thread takes everything that is waiting, writes it in **one transaction**
(one commit, one fsync with ``--task-journal-sync full``), then resolves all
those futures with one wake-up of the loop. While it commits, the next group
gathers. So the cost of a commit is shared by every request that finished
handling in the same ~millisecond, and under load a commit costs each
request little.

Finished tasks are marked done the same way: `finished` queues the mark
and returns a future, and the marks of one loop iteration ride along with
the next commit, in a batch. A task's work ends only when that future
resolves: a process killed in between runs the task again (the promise is
*at least once*), but then it was, to rawbg, still running. With no done-mark
window of its own, nothing finished is left unmarked for longer than one
commit (docs/ARCHITECTURE.md, "Done-marks in batches"). A mark whose commit
fails (a full disk) keeps its future waiting: it is tried again with the next
commit, or after `MARK_RETRY` seconds, so the task's work has not ended, and
stays counted as pending, until its mark is in the file.

The writer thread also renews this process's lease every third of
``task_journal_lease``, and every `ORPHAN_CHECK` seconds claims the entries of
owners that are gone (`TaskStore.claim_orphans`, which a store makes cheap
when there is nothing to claim), handing them to the server to run: a
sibling of a killed process takes its tasks over within a second, not at its
next renewal (5.1-9.2 s with the default lease, issue 24).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from asyncio import Future
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rawbg.tasks.failure_log import journal_failures
from rawbg.tasks.journal.store import (
    JournalError,
    JournalUnavailable,
    NewEntry,
    Outcome,
    StoredEntry,
    TaskStore,
)
from rawbg.tasks.policy import resolve_function

logger = logging.getLogger("rawbg.journal")

_STOP = object()

# Done-marks whose commit failed are tried again after this long when no other
# commit comes first: often enough that a disk freed again ends the waiting
# work within a second, rarely enough to cost nothing while it stays full.
MARK_RETRY = 1.0

# How often the writer thread looks for the entries of owners that are gone:
# a process of this host that died is seen at once (its pid), so its tasks
# wait at most this long for a live sibling. The store answers from its small
# owners table when nobody is gone, without a write.
ORPHAN_CHECK = 1.0

#: the journal of the server whose connection task is running; BackgroundTask
#: reads it to refuse, at `add_task`, a durable task that cannot be journaled
ACTIVE_JOURNAL: contextvars.ContextVar[JournalWriter | None] = contextvars.ContextVar(
    "rawbg_active_journal", default=None
)

# What the loop hands the writer thread at the end of an iteration: the
# requests' entry groups, each with the future of its ids, and the futures of
# the done-marks made in that iteration.
Group = tuple[list[NewEntry], Future[list[int]]]
Marks = list[Future[None]]
#: a group's ids once committed, or the error that refused it
CommitResult = list[int] | Exception


@dataclass(frozen=True, slots=True)
class RecoveredTask:
    """A journal entry ready to run again: its function imported, its arguments decoded."""

    entry_id: int
    func: Callable[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]
    label: str
    attempts: int


class JournalWriter:
    """The one writer of the task journal: the loop's side, and its writer thread."""

    def __init__(self, store: TaskStore, *, lease: float, group_commit: bool = True) -> None:
        self.store = store
        self.lease = lease
        self.group_commit = group_commit
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.on_orphans: Callable[[list[RecoveredTask]], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # loop side: what this loop iteration recorded and marked, until `_hand_over`
        self._gathering: list[Group] = []
        self._marking: Marks = []
        self._hand_over_due = False
        # shared: the marks themselves (a deque's append and popleft are thread-safe)
        self._finished: collections.deque[Outcome] = collections.deque()
        self._attempts: collections.deque[tuple[int, int]] = collections.deque()
        # thread side
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: futures of done-marks not committed yet (their commit failed)
        self._held_marks: Marks = []
        self.commits = 0  # transactions that carried new entries, for tests and benchmarks

    # -- start-up and stop (blocking parts run before the loop serves) -------------------

    def open(self) -> list[RecoveredTask]:
        """Open the store, claim what dead owners left; `JournalError` if unusable."""
        self.store.open(owner=self.owner, lease_until=time.time() + self.lease)
        try:
            claimed = self.store.claim_orphans(owner=self.owner, now=time.time())
        except Exception as exc:  # what the store could not read is a start-up error too
            self.store.close()
            raise JournalError(f"its unfinished tasks cannot be read: {exc}") from None
        return self._prepare(claimed)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="rawbg-journal", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Write what is queued, give up the lease, close. Unfinished entries stay."""
        self._hand_over()
        self._inbox.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # -- the loop's side ------------------------------------------------------------------

    def record(self, entries: list[NewEntry]) -> asyncio.Future[list[int]]:
        """Journal `entries`; the future gives their ids once committed, or `JournalUnavailable`."""
        future: asyncio.Future[list[int]] = self._soon_handed_over().create_future()
        self._gathering.append((entries, future))
        return future

    def finished(self, entry_id: int, *, failed: bool) -> asyncio.Future[None]:
        """Mark a task done (deleted) or failed (kept); the future resolves once committed.

        It resolves even if the commit failed (logged): the task has run, and
        at worst it runs again after a crash.
        """
        self._finished.append(Outcome(entry_id, failed))
        future: asyncio.Future[None] = self._soon_handed_over().create_future()
        self._marking.append(future)
        return future

    def attempted(self, entry_id: int, attempts: int) -> None:
        """Note a failed attempt of a task that will be retried (with the next commit)."""
        self._attempts.append((entry_id, attempts))
        self._soon_handed_over()

    def _soon_handed_over(self) -> asyncio.AbstractEventLoop:
        """Make sure this iteration's records and marks go to the writer; return the loop."""
        loop = self._loop
        assert loop is not None, "the journal writer is not started"
        if not self._hand_over_due:
            self._hand_over_due = True
            loop.call_soon(self._hand_over)  # after every request of this iteration has added
        return loop

    def _hand_over(self) -> None:
        self._hand_over_due = False
        if self._gathering or self._marking or self._attempts:
            self._inbox.put((self._gathering, self._marking))
            self._gathering, self._marking = [], []

    def _deliver(self, results: list[tuple[Future[list[int]], CommitResult]], marks: Marks) -> None:
        """On the loop: give each group its ids or its error; end the done-marks' waits."""
        for future, result in results:
            if future.done():  # its request was cancelled while it waited
                continue
            if isinstance(result, BaseException):
                future.set_exception(JournalUnavailable(f"the task journal failed: {result}"))
            else:
                future.set_result(result)
        for mark in marks:
            if not mark.done():
                mark.set_result(None)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        lease_due = time.monotonic() + self.lease / 3
        claim_due = time.monotonic() + ORPHAN_CHECK
        while True:
            wake_at = min(lease_due, claim_due)
            if self._held_marks:
                wake_at = min(wake_at, time.monotonic() + MARK_RETRY)
            try:  # asleep until there is work, the lease is due, or marks wait for a retry
                item = self._inbox.get(timeout=max(0.0, wake_at - time.monotonic()))
            except queue.Empty:
                item = None
            groups: list[Group] = []
            marks: Marks = []
            stopping = False
            while item is not None:  # take everything that is waiting: one group commit
                if item is _STOP:
                    stopping = True
                else:
                    groups.extend(item[0])
                    marks.extend(item[1])
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    item = None
            self._held_marks.extend(marks)
            results, marked = self._write(groups)
            marks = []
            if marked:  # every mark queued so far is committed: their work has ended
                marks, self._held_marks = self._held_marks, []
            if results or marks:
                self._post(results, marks)
            if stopping:
                self._close()
                return
            now = time.monotonic()
            if now >= lease_due:
                lease_due = now + self.lease / 3
                self._renew()
            if now >= claim_due:
                claim_due = now + ORPHAN_CHECK
                self._claim()

    def _write(
        self, groups: list[Group]
    ) -> tuple[list[tuple[Future[list[int]], CommitResult]], bool]:
        """Commit the groups (in one transaction, or one each without group commit) and the marks.

        Returns each group's future with its ids, or with the error that
        refused it; and whether the marks were committed (False: they wait
        for the next commit).
        """
        if not (groups or self._finished or self._attempts):
            return [], True
        finished = _drain(self._finished)
        attempts = _drain(self._attempts)
        batches = [groups] if self.group_commit or not groups else [[group] for group in groups]
        results: list[tuple[Future[list[int]], CommitResult]] = []
        marked = True
        for batch in batches:
            try:
                ids = self.store.write(
                    [entries for entries, _ in batch],
                    owner=self.owner,
                    finished=finished,
                    attempts=attempts,
                )
            except Exception as exc:
                # once a minute, with a count: a full disk fails every commit
                journal_failures.log(
                    logging.ERROR,
                    f"the task journal could not commit: {exc}",
                    "the task journal could not commit: %s",
                    exc,
                )
                # the new entries are refused; the marks need not wait for them
                if (finished or attempts) and not (batch and self._write_marks(finished, attempts)):
                    self._finished.extend(finished)  # kept for the next commit
                    self._attempts.extend(attempts)
                    marked = False
                results.extend((future, exc) for _, future in batch)
            else:
                if batch:
                    self.commits += 1
                results.extend(
                    (future, found) for (_, future), found in zip(batch, ids, strict=True)
                )
            finished, attempts = [], []
        return results, marked

    def _write_marks(self, finished: list[Outcome], attempts: list[tuple[int, int]]) -> bool:
        """Commit done-marks and attempts alone (their entries' group was refused); False
        if that fails too."""
        try:
            self.store.write([], owner=self.owner, finished=finished, attempts=attempts)
        except Exception:
            return False
        return True

    def _post(self, results: list[tuple[Future[list[int]], CommitResult]], marks: Marks) -> None:
        """Hand the outcome of a commit to the loop, in one wake-up."""
        if self._loop is not None:
            # a closed loop raises RuntimeError: nobody waits any more
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver, results, marks)

    def _renew(self) -> None:
        try:
            self.store.renew(owner=self.owner, lease_until=time.time() + self.lease)
        except Exception as exc:  # once a minute, with a count, as commit failures
            journal_failures.log(
                logging.WARNING,
                f"the task journal could not renew this process's lease: {exc}",
                "the task journal could not renew this process's lease: %s",
                exc,
            )

    def _claim(self) -> None:
        try:
            claimed = self.store.claim_orphans(owner=self.owner, now=time.time())
        except Exception as exc:
            journal_failures.log(
                logging.WARNING,
                f"the task journal could not look for orphaned tasks: {exc}",
                "the task journal could not look for orphaned tasks: %s",
                exc,
            )
            return
        if not claimed:
            return
        recovered = self._prepare(claimed)
        if recovered and self.on_orphans is not None and self._loop is not None:
            logger.info(
                "took over %d task(s) from the journal, left by a process that is gone",
                len(recovered),
            )
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.on_orphans, recovered)

    def _close(self) -> None:
        try:
            self.store.retire(owner=self.owner)
        except Exception as exc:
            logger.warning("the task journal could not release this process's lease: %s", exc)
        self.store.close()

    def _prepare(self, claimed: Sequence[StoredEntry]) -> list[RecoveredTask]:
        """Import each entry's function and decode its arguments; set aside what cannot run."""
        ready = []
        for entry in claimed:
            try:
                decoded = json.loads(entry.arguments)
                args, kwargs = decoded
                if not isinstance(args, list) or not isinstance(kwargs, dict):
                    raise ValueError("arguments are not [list, object]")
            except (ValueError, TypeError) as exc:
                self._set_aside(entry, f"corrupt entry: {exc}")
                continue
            try:
                func = resolve_function(str(entry.function))
            except Exception as exc:
                self._set_aside(entry, f"function {entry.function} no longer imports: {exc!r}")
                continue
            ready.append(
                RecoveredTask(entry.id, func, args, kwargs, str(entry.label), int(entry.attempts))
            )
        return ready

    def _set_aside(self, entry: StoredEntry, why: str) -> None:
        logger.error("task journal entry %d set aside (kept, not run): %s", entry.id, why)
        try:
            self.store.set_aside(entry.id, why)
        except Exception as exc:
            logger.error("could not set aside task journal entry %d: %s", entry.id, exc)


def _drain(items: collections.deque[Any]) -> list[Any]:
    taken = []
    while items:
        taken.append(items.popleft())
    return taken
