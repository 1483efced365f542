"""The task journal's interface: what a store of durable background tasks must do.

With ``--task-journal PATH``, every durable task a request queues is written
to a journal before the response's first byte, and removed once it has run.
A process that crashes leaves its entries behind; the next process to open
the journal (or another live one, once the dead one's lease has expired)
claims and runs them: at least once.

`TaskStore` is the interface, a `typing.Protocol`, so that a store shared by
several machines (Redis Streams, PostgreSQL) can implement it later;
`rawbg.tasks.journal.sqlite.SQLiteTaskStore` is the embedded default. Its methods
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

The store's format has a version (`FORMAT_VERSION`): an older journal is
migrated when it is opened, a newer one refused with a `JournalError`.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def renew(self, *, owner: str, lease_until: float) -> None:
        """Extend `owner`'s lease."""

    def claim_orphans(self, *, owner: str, now: float) -> list[StoredEntry]:
        """Claim for `owner` the unfinished entries of owners that are gone; return them."""

    def set_aside(self, entry_id: int, why: str) -> None:
        """Keep an entry that cannot run (its function is gone, its row corrupt); never delete."""

    def retire(self, *, owner: str) -> None:
        """Graceful stop: give up `owner`'s lease, so its unfinished entries are claimed at once."""

    def close(self) -> None: ...
