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
with what to call once it is committed, and the marks of one loop iteration
ride along with the next commit, in a batch. A task's work ends only when
that call is made: a process killed in between runs the task again (the
promise is *at least once*), but then it was, to rawbg, still running. With
no done-mark window of its own, nothing finished is left unmarked for longer
than one commit (docs/ARCHITECTURE.md, "Done-marks in batches"). A mark whose
commit fails (a full disk) is not called back: it is tried again with the
next commit, or after `MARK_RETRY` seconds, so the task's work has not ended,
and stays counted as pending, until its mark is in the file.

The writer thread also renews this process's lease (`TaskStore.renewals_per_lease`
times per ``task_journal_lease``) and, at the same time, claims the entries
of owners that are gone (`TaskStore.claim_orphans`), handing them to the
server to run; with a store that says when another owner's lease ends, or
that another process released entries, it looks again then. With a store
that does not fence (SQLite), it also looks every `ORPHAN_CHECK` seconds, which
that store answers from its owners table when nobody is gone: a sibling of a
killed process takes its tasks over within a second, not at its next
renewal (5.1-9.2 s with the default lease, issue 24).

With a store that fences (PostgreSQL, shared by several machines), three
more duties fall on the loop's side:

* **admission** (`admit`): a journaled task starts only while this process's
  lease holds by its own clock (its last successful renewal's send time +
  the lease), and only if its entry is still this process's
  (`TaskStore.holds`): a process back from a pause waits for its next
  renewal, and drops what was taken over meanwhile;
* **a deadline per commit** (`TaskStore.commit_deadline`): a group not
  committed within it is answered 503 at once, whatever the writer thread is
  stuck on; if its commit succeeds after all, its entries are deleted;
* **release at a stop** (`release_unstarted`): from the stop on, a task that
  has not started is given to the other processes (`TaskStore.release`),
  not run here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import math
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

from rawbg.tasks.journal.store import (
    JournalError,
    JournalUnavailable,
    LeaseLost,
    NewEntry,
    Outcome,
    StoredEntry,
    TaskStore,
)
from rawbg.tasks.policy import resolve_function

logger = logging.getLogger("rawbg.journal")

_STOP = object()
_CLAIM = object()  # look for orphans now (entries were released, or room was made)
# Done-marks whose commit failed are tried again after this long when no other
# commit comes first: often enough that a disk freed again ends the waiting
# work within a second, rarely enough to cost nothing while it stays full.
MARK_RETRY = 1.0
# How often a writer whose store does not fence looks for the entries of
# owners that are gone: a process of this host that died is seen at once (its
# pid), so its tasks wait at most this long for a live sibling.
ORPHAN_CHECK = 1.0
# A claim pass at another owner's lease end comes this long after it, so that
# the database's clock has passed it too.
EXPIRY_MARGIN = 0.05

#: the journal of the server whose connection task is running; BackgroundTask
#: reads it to refuse, at `add_task`, a durable task that cannot be journaled
ACTIVE_JOURNAL: contextvars.ContextVar[JournalWriter | None] = contextvars.ContextVar(
    "rawbg_active_journal", default=None
)

# What the loop hands the writer thread at the end of an iteration: the
# requests' entry groups, each with the future of its ids, and what to call
# once the done-marks made in that iteration are committed.
Group = tuple[list[NewEntry], Future[list[int]]]
Marks = list[Callable[[], None]]
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
        #: how many more tasks the server takes on now (claims take no more)
        self.room: Callable[[], int] | None = None
        #: with --trace: called on the loop at each renewal with the counts below
        self.on_counts: Callable[[dict[str, int]], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # loop side: what this loop iteration recorded and marked, until `_hand_over`
        self._gathering: list[Group] = []
        self._marking: Marks = []
        self._hand_over_due = False
        # loop side: groups handed over and not answered yet, with their deadline
        self._outstanding: collections.deque[tuple[float, list[Group]]] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        # loop side, fencing: admission (`admit`)
        self._fencing = store.fencing
        self._lease_deadline = 0.0 if store.fencing else math.inf  # monotonic
        self._lease_waiter: asyncio.Future[None] | None = None
        self._releasing = False
        # loop side: entries held (acknowledged or claimed, not finished), running, taken over
        self.held = 0
        self.running = 0
        self.taken_over = 0
        # shared: the marks themselves (a deque's append and popleft are thread-safe)
        self._finished: collections.deque[Outcome] = collections.deque()
        self._attempts: collections.deque[tuple[int, int]] = collections.deque()
        self._released: collections.deque[int] = collections.deque()
        # thread side
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._next_expiry = math.inf  # monotonic: when another owner's lease ends
        self._failing: dict[str, int] = {}  # what failed, and how often since it last worked
        #: the calls of done-marks not committed yet (their commit failed)
        self._held_marks: Marks = []
        self.commits = 0  # transactions that carried new entries, for tests and benchmarks

    # -- start-up and stop (blocking parts run before the loop serves) -------------------

    def open(self) -> list[RecoveredTask]:
        """Open the store, claim what dead owners left; `JournalError` if unusable."""
        self.store.on_release(self.claim_soon)
        sent = time.monotonic()
        self.store.open(owner=self.owner, lease_until=time.time() + self.lease)
        self._renewed(sent)
        try:
            claimed = self.store.claim_orphans(
                owner=self.owner, now=time.time(), limit=self._claim_limit()
            )
        except Exception as exc:  # what the store could not read is a start-up error too
            self.store.close()
            raise JournalError(f"its unfinished tasks cannot be read: {exc}") from None
        recovered = self._prepare(claimed)
        self.held += len(recovered)
        self.taken_over += len(recovered)
        return recovered

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

    def finished(
        self,
        entry_id: int,
        *,
        failed: bool,
        started: bool = True,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Mark a task done (deleted) or failed (kept); `then` is called once committed.

        `then` is called on the loop, with the calls of the other marks of
        the same commit, never twice. A failed commit is tried again (with the
        next one, or after `MARK_RETRY`): until then the task's work has not
        ended, and a crash runs it again, as it would a running one. `started`
        is False for a task dropped before it started (its response failed).
        """
        self.held -= 1
        self.running -= started
        self._finished.append(Outcome(entry_id, failed))
        if then is not None:
            self._marking.append(then)
        self._soon_handed_over()

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
        if self._gathering or self._marking or self._finished or self._attempts or self._released:
            deadline = self.store.commit_deadline
            if deadline is not None and self._gathering and self._loop is not None:
                self._outstanding.append((self._loop.time() + deadline, self._gathering))
                if self._expiry is None:
                    self._expiry = self._loop.call_at(self._outstanding[0][0], self._expire)
            self._inbox.put((self._gathering, self._marking))
            self._gathering, self._marking = [], []

    def _expire(self) -> None:
        """On the loop: groups past the commit deadline are refused (503) now."""
        self._expiry = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        outstanding = self._outstanding
        while outstanding and outstanding[0][0] <= now:
            for _, future in outstanding.popleft()[1]:
                if not future.done():
                    future.set_exception(
                        JournalUnavailable(
                            f"the task journal did not commit within "
                            f"{self.store.commit_deadline:g} s"
                        )
                    )
        if outstanding:
            self._expiry = loop.call_at(outstanding[0][0], self._expire)

    def _deliver(self, results: list[tuple[Future[list[int]], CommitResult]], marks: Marks) -> None:
        """On the loop: give each group its ids or its error; call back the committed marks."""
        for future, result in results:
            if future.done():  # cancelled, or refused at its deadline
                if not future.cancelled() and isinstance(result, list):
                    # refused, then committed after all: its tasks must not run
                    self._finished.extend(Outcome(entry_id, False) for entry_id in result)
                    self._soon_handed_over()
                continue
            if isinstance(result, BaseException):
                future.set_exception(JournalUnavailable(f"the task journal failed: {result}"))
            else:
                self.held += len(result)
                future.set_result(result)
        for then in marks:
            then()
        outstanding = self._outstanding
        while outstanding and all(future.done() for _, future in outstanding[0][1]):
            outstanding.popleft()

    # -- admission, for a store that fences (on the loop) ----------------------------

    def admit(
        self, entry_id: int, *, continuing: bool = False, first_attempt: bool = True
    ) -> bool | None:
        """May the journaled task `entry_id` start now? None: not yet (`lease_changed`).

        False: never here (its entry was taken over, or given away at a stop):
        the caller drops it, unmarked. `continuing`: its work already ran a
        task (or this one's earlier attempt), so a stop lets it go on.
        """
        if self._fencing:
            dropped = not self.store.holds(entry_id)
            if not dropped and self._releasing and not continuing:
                self._released.append(entry_id)
                self._soon_handed_over()
                dropped = True
            if dropped:
                self.held -= 1
                self.running -= not first_attempt
                return False
            if time.monotonic() >= self._lease_deadline:
                return None
        self.running += first_attempt
        return True

    def lease_changed(self) -> asyncio.Future[None]:
        """A future that resolves after the next renewal (or its failure), or at a stop."""
        if self._lease_waiter is None:
            assert self._loop is not None, "the journal writer is not started"
            self._lease_waiter = self._loop.create_future()
        return self._lease_waiter

    def _lease_news(self) -> None:
        waiter, self._lease_waiter = self._lease_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def release_unstarted(self) -> None:
        """A stop begins: tasks not started yet go to the other processes (if it fences)."""
        if self._fencing:
            self._releasing = True
            self._lease_news()  # the waiting ones look again, and go

    def claim_soon(self) -> None:
        """Look for orphans now (from any thread): entries were released, or room made."""
        self._inbox.put(_CLAIM)

    def _orphans_arrived(self, recovered: list[RecoveredTask]) -> None:
        """On the loop: entries claimed from owners that are gone, to run."""
        if self._releasing:  # stopping: they go on to another process
            self._released.extend(task.entry_id for task in recovered)
            self._soon_handed_over()
            return
        self.held += len(recovered)
        self.taken_over += len(recovered)
        if self.on_orphans is not None:
            self.on_orphans(recovered)

    def _report_counts(self) -> None:
        if self.on_counts is not None:
            held, running = self.held, self.running
            self.on_counts(
                {"pending": held - running, "running": running, "taken_over": self.taken_over}
            )

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        every = self.lease / self.store.renewals_per_lease
        renew_at = time.monotonic() + every
        claim_at = math.inf if self._fencing else time.monotonic() + ORPHAN_CHECK
        while True:
            wake_at = min(renew_at, claim_at)
            if self._held_marks:
                wake_at = min(wake_at, time.monotonic() + MARK_RETRY)
            try:  # asleep until there is work, a renewal or claim is due, or marks wait
                wait = max(0.0, wake_at - time.monotonic())
                item = self._inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            groups: list[Group] = []
            marks: Marks = []
            stopping = False
            while item is not None:  # take everything that is waiting: one group commit
                if item is _STOP:
                    stopping = True
                elif item is _CLAIM:
                    claim_at = 0.0
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
            self._give_away()
            if stopping:
                self._close()
                return
            now = time.monotonic()
            if now >= renew_at:
                renew_at = now + every
                self._renew()
                claim_at = 0.0  # and look for orphans with each renewal
            if time.monotonic() >= claim_at:
                more = self._claim()
                claim_at = 0.0 if more else self._next_expiry
                if not self._fencing:
                    claim_at = min(claim_at, time.monotonic() + ORPHAN_CHECK)

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
            # a group refused at its deadline meanwhile is not written
            batch = [group for group in batch if not group[1].done()]
            if not (batch or finished or attempts):
                continue
            sent = time.monotonic()
            for tries in (1, 2):
                try:
                    ids = self.store.write(
                        [entries for entries, _ in batch],
                        owner=self.owner,
                        finished=finished,
                        attempts=attempts,
                    )
                except LeaseLost as exc:  # registered again: try once more, as the new owner
                    self._lost(exc, sent)
                    if tries == 1:
                        continue
                    failure: Exception | None = exc
                except Exception as exc:
                    failure = exc
                else:
                    failure = None
                break
            if failure is not None:
                self._failed("commit", failure)
                # the new entries are refused; the marks need not wait for them
                if (finished or attempts) and not (batch and self._write_marks(finished, attempts)):
                    self._finished.extend(finished)  # kept for the next commit
                    self._attempts.extend(attempts)
                    marked = False
                results.extend((future, failure) for _, future in batch)
            else:
                self._worked("commit")
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

    def _give_away(self) -> None:
        """Release the entries the loop will not start (a stop), so that others run them."""
        released = _drain(self._released)
        if released:
            try:
                self.store.release(released)
            except Exception as exc:  # they stay this process's: taken once it is gone
                logger.warning(
                    "the task journal could not release %d task(s): %s", len(released), exc
                )

    def _post(self, results: list[tuple[Future[list[int]], CommitResult]], marks: Marks) -> None:
        """Hand the outcome of a commit to the loop, in one wake-up."""
        self._call_loop(self._deliver, results, marks)

    def _renew(self) -> None:
        sent = time.monotonic()
        try:
            hint = self.store.renew(owner=self.owner, lease_until=time.time() + self.lease)
        except LeaseLost as exc:
            self._lost(exc, sent)
        except Exception as exc:
            self._failed("renew this process's lease", exc)
        else:
            self._worked("renew this process's lease")
            self._renewed(sent)
            self._next_expiry = math.inf if hint is None else sent + hint + EXPIRY_MARGIN
        self._call_loop(self._lease_news)
        if self.on_counts is not None:
            self._call_loop(self._report_counts)

    def _renewed(self, sent: float) -> None:
        """The lease holds until `sent` (the renewal's send time) + lease, by this clock."""
        if self._fencing:
            self._lease_deadline = sent + self.lease

    def _lost(self, exc: LeaseLost, sent: float) -> None:
        logger.error(
            "task journal: %s. Tasks of the lost registration that have not started are left "
            "to the node that took them; tasks that were running may run twice",
            exc,
        )
        self._renewed(sent)  # the new registration's lease
        self._call_loop(self._lease_news)

    def _claim(self) -> bool:
        """One claim of orphans; whether there may be more to take at once."""
        if self._releasing:
            return False
        limit = self._claim_limit()
        try:
            claimed = self.store.claim_orphans(owner=self.owner, now=time.time(), limit=limit)
        except Exception as exc:
            self._failed("look for tasks to take over", exc)
            return False
        self._worked("look for tasks to take over")
        if claimed:
            recovered = self._prepare(claimed)
            if not self._fencing:  # a fencing store logs each takeover, naming the node
                logger.info(
                    "took over %d task(s) from the journal, left by a process that is gone",
                    len(recovered),
                )
            if recovered:
                self._call_loop(self._orphans_arrived, recovered)
        return limit is not None and 0 < limit <= len(claimed)

    def _claim_limit(self) -> int | None:
        """How many entries one claim may take: none past the server's room."""
        batch = self.store.claim_batch
        if batch is None:
            return None
        room = batch if self.room is None else self.room()
        return max(0, min(batch, room))

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            # a closed loop raises RuntimeError: nobody waits any more
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(callback, *args)

    def _failed(self, what: str, exc: Exception) -> None:
        """Log the first failure of `what` in a row; count the rest (`_worked` says how many)."""
        count = self._failing.get(what, 0)
        if count == 0:
            logger.error("the task journal could not %s: %s", what, exc)
        self._failing[what] = count + 1

    def _worked(self, what: str) -> None:
        count = self._failing.pop(what, 0)
        if count > 1:
            logger.warning("the task journal could %s again, after %d failures", what, count)

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
