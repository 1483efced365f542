"""The task journal's interface: what a store of durable background tasks must do.

With ``--task-journal PATH``, every durable task a request queues is written
to a journal before the response's first byte, and removed once it has run.
A process that crashes leaves its entries behind; the next process to open
the journal (or another live one, once the dead one's lease has expired)
claims and runs them: at least once.

`TaskStore` is the interface, a `typing.Protocol`:
`rawbg.tasks.journal.sqlite.SQLiteTaskStore` is the embedded default (one
host), `rawbg.tasks.journal.postgres.PostgresTaskStore` a store that several
machines share (``--task-journal postgresql://...``). Its methods
are blocking and are only ever called from one thread at a time: at start-up,
then from the journal's writer thread (`rawbg.tasks.journal.writer.JournalWriter`),
which batches them so that the event loop never waits on the disk.

How entries are claimed: each process is an *owner* with a lease (a time
until which it is known to be alive), renewed by its writer thread. An
entry belongs to the owner that wrote or claimed it. Entries whose owner's
lease has expired, or whose owner is a process of this host that no longer
exists (its pid does not run, or now belongs to another process: the store
keeps what tells one process from a later one with the same pid), or who
gave up its lease at a graceful shutdown, are claimed by the next process
that looks (`claim_orphans`): so a live process's tasks never run twice, and
a dead one's are taken over.

A store shared by several machines also *fences* (`TaskStore.fencing`): a
process that was paused, or cut off from the store, for longer than its
lease may have been taken over meanwhile, so it starts a task only while its
lease holds by its own clock (`JournalWriter.admit`), learns at its next
renewal that it lost the lease (`LeaseLost`), and from then on runs none of
the entries it held (`TaskStore.holds`); its late done-marks count for
nothing.

The store's format has a version (`FORMAT_VERSION`): an older journal is
migrated when it is opened, a newer one refused with a `JournalError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

#: the version of the journal format this rawbg writes; an older one is
#: migrated at open, a newer one is refused. 2: owners record their process's start
FORMAT_VERSION = 2


class JournalError(Exception):
    """Raised at start-up when the journal cannot be used (bad path, not a journal, too new).

    Its message is one line; the CLI prints it after ``--task-journal``.
    """


class JournalUnavailable(Exception):
    """Raised when the journal cannot record a request's tasks (disk full, I/O error, locked).

    The request gets a 503 and its tasks are not queued.
    """


class LeaseLost(JournalUnavailable):
    """Raised by a fencing store when another process took over this one's entries.

    This process was paused, or cut off from the store, for longer than its
    lease. The store has registered it again (a new owner, with no entries)
    before raising; the entries it held are another process's now, and
    `TaskStore.holds` says so for each of them.
    """


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A task to journal: its function's ``module:qualname``, its JSON arguments, its route."""

    function: str
    arguments: str
    label: str


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry read back from the journal, to run again."""

    id: int
    function: str
    arguments: str
    label: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a journaled task ended: `DONE` entries are removed, `FAILED` ones kept."""

    id: int
    failed: bool


class TaskStore(Protocol):
    """A durable store of background tasks (see the module docstring for the model)."""

    @property
    def fencing(self) -> bool:
        """Whether a lost lease can be detected (`LeaseLost`): tasks then start only
        while the lease holds by this process's clock, and a stop releases the
        tasks that have not started (`release`)."""

    @property
    def renewals_per_lease(self) -> int:
        """How many times per lease the lease is renewed (and orphans looked for)."""

    @property
    def claim_batch(self) -> int | None:
        """The most entries one `claim_orphans` takes (None: every orphan at once)."""

    @property
    def commit_deadline(self) -> float | None:
        """Seconds a commit may take before its requests are answered 503 (None: no
        deadline of the writer's; the store bounds its own waits)."""

    def open(self, *, owner: str, lease_until: float) -> None:
        """Create or check the store and register `owner`; `JournalError` if unusable."""

    def check(self) -> None:
        """Create or check the store, then close it; `JournalError` if unusable.

        A supervisor calls it before it starts workers, so that a bad journal
        is one error, not one per worker.
        """

    def write(
        self,
        groups: Sequence[Sequence[NewEntry]],
        *,
        owner: str,
        finished: Sequence[Outcome],
        attempts: Sequence[tuple[int, int]],
    ) -> list[list[int]]:
        """In one transaction: add each group's entries, retire finished ones, note attempts.

        Returns the ids of each group's entries. Raises on any failure, having
        written nothing.
        """

    def renew(self, *, owner: str, lease_until: float) -> float | None:
        """Extend `owner`'s lease; `LeaseLost` if it was taken over.

        Returns the seconds until another owner's lease ends, when the store
        knows (the writer looks for orphans then), else None.
        """

    def claim_orphans(
        self, *, owner: str, now: float, limit: int | None = None
    ) -> list[StoredEntry]:
        """Claim for `owner` unfinished entries of owners that are gone (at most `limit`)."""

    def holds(self, entry_id: int) -> bool:
        """Whether entry `entry_id` is still this process's to run (called from any thread)."""

    def release(self, entry_ids: Sequence[int]) -> None:
        """Give entries this process will not start to other processes, at once (a stop)."""

    def on_release(self, wake: Callable[[], None]) -> None:
        """Call `wake` (from any thread) when another process releases entries."""

    def set_aside(self, entry_id: int, why: str) -> None:
        """Keep an entry that cannot run (its function is gone, its row corrupt); never delete."""

    def retire(self, *, owner: str) -> None:
        """Graceful stop: give up `owner`'s lease, so its unfinished entries are claimed at once."""

    def close(self) -> None: ...
