"""The embedded task journal: one SQLite file in WAL mode, from the standard library.

Three tables, each prefixed ``rawbg_`` so that the file says what it is:

* ``rawbg_meta``: the format (``rawbg-task-journal``) and its version;
* ``rawbg_owners``: one row per live process (owner), with its host, pid,
  start (what tells this process from a later one with the same pid) and
  lease; a graceful stop deletes its row;
* ``rawbg_tasks``: one row per unfinished (state 0), failed (2) or set-aside
  (3) task. A task that has run is deleted: the file stays as small as the
  work in flight.

WAL mode lets readers and the one writer work at once, and makes a commit
one append to the WAL file. ``synchronous=NORMAL`` syncs only at checkpoints:
a committed transaction survives the process being killed, not a power loss;
``FULL`` (``--task-journal-sync full``) also syncs the WAL at every commit.

**Which owners are gone** (`claim_orphans`): one whose lease expired; and,
at once, one of this host whose process no longer runs. A pid alone does not
say that: a container whose rawbg is PID 1, killed and restarted, gets the
dead owner's pid back, and any pid is reused in time. So each owner row also
keeps its process's *start*: on Linux the boot id and the process's start
time (``/proc/PID/stat``, field 22), which no later process with that pid
shares; NULL where ``/proc`` is missing, and then the pid alone decides, as
in version 1. An owner of this host is gone when its pid does not run (a
zombie counts as gone), when its pid now belongs to a process with another
start, or when its pid is this process's own and the owner is not one this
process has open.

**Versions.** ``rawbg_meta`` keeps the format's version (`FORMAT_VERSION`).
A journal of an older version is migrated in place when it is opened, in
one transaction (`MIGRATIONS`); a newer one is refused. Version 2 added the
owners' ``started`` column: a rawbg that reads only version 1 then refuses
the file, and one still running on it when it is migrated can no longer
renew its lease, so its tasks are taken over once that lease expires.
Upgrade every process that shares a journal together.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from rawbg.tasks.journal.liveness import process_alive as _alive, process_start
from rawbg.tasks.journal.store import FORMAT_VERSION, JournalError, NewEntry, Outcome, StoredEntry

logger = logging.getLogger("rawbg.journal")

FORMAT_NAME = "rawbg-task-journal"

# SQLite's page cache, in KiB (its default is 2000). Inserts append to the
# last pages and deletes are batched, so a small cache serves them; the
# default one fills with the pages of pending entries (~150 bytes each), up
# to 2 MiB of RSS: an estimate, ~200 bytes per pending task at 10 000
# pending, not a measurement. Evicted pages stay in the OS page cache.
CACHE_KIB = 256

# The WAL's bounds, SQLite's own: a checkpoint once the WAL holds this many
# pages (SQLite's default is 1 000, 4 MiB of 4 KiB pages, which filled a 2 MiB
# filesystem before the first checkpoint), and the WAL file truncated to this
# size after one (by default SQLite never shrinks it). 200 pages keep the WAL
# under 1 MiB; commit CPU measured the same as with the default (57-79 µs per
# commit of 4 entries and their marks either way, 3 rounds at load 9-16).
WAL_CHECKPOINT_PAGES = 200
WAL_SIZE_LIMIT = 1024 * 1024

# How long opening a journal keeps trying while another process holds it
# locked (at least; the busy timeout when longer): several workers open one
# new journal within milliseconds of each other, and the switch to WAL mode
# does not wait for a lock by itself.
OPEN_RETRY_SECONDS = 5.0
PENDING, FAILED, SET_ASIDE = 0, 2, 3

SCHEMA = """
CREATE TABLE rawbg_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rawbg_owners (
    owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, lease_until REAL NOT NULL,
    started TEXT
);
CREATE TABLE rawbg_tasks (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    arguments TEXT NOT NULL,
    label TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    note TEXT
);
CREATE INDEX rawbg_tasks_unfinished ON rawbg_tasks (owner) WHERE state = 0;
"""

# From each older version, the statements that bring a journal to the next
# one; run in one transaction with the version's update.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE rawbg_owners ADD COLUMN started TEXT",),
}


INSERT = (
    "INSERT INTO rawbg_tasks (function, arguments, label, owner, created) VALUES (?, ?, ?, ?, ?)"
)
SET_ATTEMPTS = "UPDATE rawbg_tasks SET attempts = ? WHERE id = ?"
SET_FAILED = f"UPDATE rawbg_tasks SET state = {FAILED}, note = 'last attempt failed' WHERE id = ?"
SET_OWNER = "UPDATE rawbg_tasks SET owner = ? WHERE id = ?"
REGISTER_OWNER = (
    "INSERT OR REPLACE INTO rawbg_owners (owner, host, pid, lease_until, started) "
    "VALUES (?, ?, ?, ?, ?)"
)
SELECT_UNFINISHED = (
    "SELECT id, function, arguments, label, attempts, owner FROM rawbg_tasks "
    f"WHERE state = {PENDING}"
)


# The owners whose store is open in this process, across every store
# (two servers of one process may share a journal): an owner row with this
# process's pid and an owner not in it was left by an earlier process.
_owners_here: set[str] = set()
_owners_here_lock = threading.Lock()


class SQLiteTaskStore:
    """`rawbg.tasks.journal.store.TaskStore` on one SQLite file."""

    # One host: a process that is gone is known at once by its pid (module
    # docstring); one that is only slow keeps its lease. No fencing.
    fencing = False
    renewals_per_lease = 3  # a loaded process has two chances to renew
    claim_batch = None  # orphans are claimed all at once
    commit_deadline = None  # the busy timeout bounds a commit's wait for the lock

    def __init__(self, path: str, *, sync: str, busy_timeout: float) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', got {sync!r}")
        self.path = path
        self._sync = sync
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        # Who this process is, in its owner row (set at `open`)
        self._owner: str | None = None
        self._host = socket.gethostname()
        self._pid = 0
        self._started: str | None = None
        #: (device, inode) of the file at `path` when it was opened
        self._identity: tuple[int, int] | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the journal is not open")
        return self._db

    # -- start-up ------------------------------------------------------------------

    def open(self, *, owner: str, lease_until: float) -> None:
        db = self._connect()
        self._identity = file_identity(self.path)
        try:
            db.execute(f"PRAGMA synchronous = {self._sync.upper()}")
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            # a WAL left large (a full disk, an older rawbg) is emptied first
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            self._pid = os.getpid()
            self._started = process_start(self._pid)
            with _owners_here_lock:
                _owners_here.add(owner)
            self._owner = owner
            self._register(owner, lease_until)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise JournalError(f"{self.path} is not a usable task journal: {exc}") from None

    def check(self) -> None:
        self._connect()
        self.close()

    def _connect(self) -> sqlite3.Connection:
        """Connect, then check the file (creating or migrating it); `JournalError` if unusable."""
        path = self.path
        if os.path.isdir(path):
            raise JournalError(f"{path} is a directory, not a journal file")
        try:
            # isolation_level=None: we say BEGIN and COMMIT ourselves.
            # check_same_thread=False: opened here, then used by the writer thread only.
            db = sqlite3.connect(
                path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open {path}: {exc}") from None
        self._db = db
        # A row whose text is not UTF-8 must not stop the others from loading:
        # it decodes with replacement characters and is set aside later.
        db.text_factory = lambda raw: raw.decode("utf-8", "replace")
        try:
            self._check_or_create_retrying(db)
        except JournalError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise JournalError(f"{path} is not a usable task journal: {exc}") from None
        return db

    def _register(self, owner: str, lease_until: float) -> None:
        self.db.execute(REGISTER_OWNER, (owner, self._host, self._pid, lease_until, self._started))

    def _check_or_create_retrying(self, db: sqlite3.Connection) -> None:
        """`_check_or_create`, tried again while another process holds the file locked.

        Two workers opening a new journal at once both switch it to WAL, and
        SQLite answers that switch with "database is locked" at once, without
        waiting out the busy timeout as it does for other statements.
        """
        deadline = time.monotonic() + max(self._busy_timeout, OPEN_RETRY_SECONDS)
        while True:
            try:
                self._check_or_create(db)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                if db.in_transaction:
                    db.execute("ROLLBACK")
                time.sleep(0.01)

    def _check_or_create(self, db: sqlite3.Connection) -> None:
        path = self.path
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"{path}: cannot switch to WAL mode (got {mode})")
            db.execute("BEGIN IMMEDIATE")
            try:
                # a second process may have created it meanwhile
                if not db.execute("SELECT 1 FROM sqlite_master WHERE name='rawbg_meta'").fetchone():
                    # statement by statement: executescript would commit first
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.executemany(
                        "INSERT INTO rawbg_meta VALUES (?, ?)",
                        [("format", FORMAT_NAME), ("version", str(FORMAT_VERSION))],
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return
        if "rawbg_meta" not in tables:
            raise JournalError(f"{path} is an SQLite database but not a rawbg task journal")
        meta = dict(db.execute("SELECT key, value FROM rawbg_meta").fetchall())
        if meta.get("format") != FORMAT_NAME:
            raise JournalError(f"{path} is not a rawbg task journal")
        version = self._version(meta.get("version"))
        # A file whose pages are damaged opens, and fails later, at the first
        # read of them (claiming the orphans at start-up): say so here, once.
        # It reads every page; measured 6 ms for a journal of 300 tasks.
        damage = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if damage != "ok":
            first = str(damage).replace("*** in database main ***", "").strip().splitlines()
            raise JournalError(
                f"{path} is damaged (SQLite's quick_check: {first[0] if first else damage})"
            )
        if version < FORMAT_VERSION:
            self._migrate(db)
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")

    def _version(self, found: str | None) -> int:
        """The journal's version from ``rawbg_meta``; `JournalError` unless this rawbg reads it."""
        path = self.path
        try:
            version = int(found or "")
        except ValueError:
            raise JournalError(f"{path}: unreadable journal version {found!r}") from None
        if version > FORMAT_VERSION:
            raise JournalError(
                f"{path} was written by a newer rawbg (journal version {version}, this rawbg "
                f"reads up to {FORMAT_VERSION}); upgrade rawbg or use another file"
            )
        if version < FORMAT_VERSION and version not in MIGRATIONS:
            raise JournalError(f"{path}: unknown journal version {version}")
        return version

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an older journal to `FORMAT_VERSION`, in one transaction.

        The version is read again once the write lock is held: another process
        opening the same journal may have migrated it meanwhile.
        """
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute("SELECT value FROM rawbg_meta WHERE key = 'version'").fetchone()
            version = before = self._version(found[0] if found else None)
            while version < FORMAT_VERSION:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
            db.execute("UPDATE rawbg_meta SET value = ? WHERE key = 'version'", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if before < FORMAT_VERSION:
            logger.info(
                "task journal %s migrated from version %d to %d", self.path, before, version
            )

    # -- the writer thread's work --------------------------------------------------------

    def write(
        self,
        groups: Sequence[Sequence[NewEntry]],
        *,
        owner: str,
        finished: Sequence[Outcome],
        attempts: Sequence[tuple[int, int]],
    ) -> list[list[int]]:
        if groups:  # new entries go only into the file the path names
            self._check_identity()
        try:
            return self._write(groups, owner=owner, finished=finished, attempts=attempts)
        except sqlite3.OperationalError as exc:
            if sqlite3_error_code(exc) != SQLITE_FULL:
                raise
            # The disk is full: what the WAL holds is in the file already or
            # can be copied there, so checkpoint it and truncate it to nothing
            # (the space comes back at once), then try again, once.
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return self._write(groups, owner=owner, finished=finished, attempts=attempts)

    def _write(
        self,
        groups: Sequence[Sequence[NewEntry]],
        *,
        owner: str,
        finished: Sequence[Outcome],
        attempts: Sequence[tuple[int, int]],
    ) -> list[list[int]]:
        db = self.db
        now = time.time()
        ids: list[list[int]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for group in groups:
                ids.append(
                    [
                        db.execute(INSERT, (e.function, e.arguments, e.label, owner, now)).lastrowid
                        or 0
                        for e in group
                    ]
                )
            if attempts:
                db.executemany(SET_ATTEMPTS, [(n, i) for i, n in attempts])
            done = [(o.id,) for o in finished if not o.failed]
            if done:
                db.executemany("DELETE FROM rawbg_tasks WHERE id = ?", done)
            failed = [(o.id,) for o in finished if o.failed]
            if failed:
                db.executemany(SET_FAILED, failed)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return ids

    def renew(self, *, owner: str, lease_until: float) -> float | None:
        self._check_identity()
        self._register(owner, lease_until)
        return None

    def _check_identity(self) -> None:
        """Raise `JournalMoved` if `path` no longer names the file this store has open.

        Deleted (``rm tasks.db*``) or replaced (``mv other.db tasks.db``) under
        a running server, the file stays open and writable, and whatever is
        written to it is lost: no restart reads it (issue 24 lost ~8,000
        acknowledged tasks so). One ``stat`` per commit group, in the writer
        thread. Entries already in the open file may still be marked done there.
        """
        if self._identity is not None and file_identity(self.path) != self._identity:
            raise JournalMoved(
                f"{self.path} is no longer the file this server opened (it was deleted or "
                "replaced): new tasks are refused; restart the server to use the journal "
                "at that path"
            )

    def claim_orphans(
        self, *, owner: str, now: float, limit: int | None = None
    ) -> list[StoredEntry]:
        db = self.db
        if not self._anyone_gone(owner, now):
            return []  # the common case, every second: two reads, no write
        db.execute("BEGIN IMMEDIATE")
        try:
            live = set()
            for other, host, pid, lease_until, started in db.execute(
                "SELECT owner, host, pid, lease_until, started FROM rawbg_owners"
            ).fetchall():
                gone = lease_until < now or (
                    host == self._host and self._gone_from_this_host(other, pid, started)
                )
                if other != owner and gone:
                    db.execute("DELETE FROM rawbg_owners WHERE owner = ?", (other,))
                else:
                    live.add(other)
            orphans = [
                row for row in db.execute(SELECT_UNFINISHED).fetchall() if row[5] not in live
            ]
            db.executemany(SET_OWNER, [(owner, row[0]) for row in orphans])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return [StoredEntry(row[0], row[1], row[2], row[3], row[4]) for row in orphans]

    def _anyone_gone(self, owner: str, now: float) -> bool:
        """Whether `claim_orphans` may find something: an owner gone, or unfinished
        entries of an owner with no row (one that retired). Reads only."""
        db = self.db
        for other, host, pid, lease_until, started in db.execute(
            "SELECT owner, host, pid, lease_until, started FROM rawbg_owners"
        ).fetchall():
            if other != owner and (
                lease_until < now
                or (host == self._host and self._gone_from_this_host(other, pid, started))
            ):
                return True
        return (
            db.execute(
                f"SELECT 1 FROM rawbg_tasks WHERE state = {PENDING} "
                "AND owner NOT IN (SELECT owner FROM rawbg_owners) LIMIT 1"
            ).fetchone()
            is not None
        )

    def _gone_from_this_host(self, owner: str, pid: int, started: str | None) -> bool:
        """Whether `owner`, a process of this host, no longer runs (see the module docstring)."""
        if pid == self._pid:
            with _owners_here_lock:
                return owner not in _owners_here
        if not _alive(pid):
            return True
        if started is None:  # written where the start cannot be read: the pid decides
            return False
        now = process_start(pid)
        return now is not None and now != started

    def set_aside(self, entry_id: int, why: str) -> None:
        self.db.execute(
            f"UPDATE rawbg_tasks SET state = {SET_ASIDE}, note = ? WHERE id = ?", (why, entry_id)
        )

    def retire(self, *, owner: str) -> None:
        self.db.execute("DELETE FROM rawbg_owners WHERE owner = ?", (owner,))

    # Without fencing, every entry this process holds stays its own, and a
    # stop gives up the lease (`retire`) rather than single entries.

    def holds(self, entry_id: int) -> bool:
        return True

    def release(self, entry_ids: Sequence[int]) -> None:
        return None

    def on_release(self, wake: Callable[[], None]) -> None:
        return None

    def close(self) -> None:
        if self._owner is not None:
            with _owners_here_lock:
                _owners_here.discard(self._owner)
            self._owner = None
        if self._db is not None:
            self._db.close()
            self._db = None


class JournalMoved(Exception):
    """The journal's path no longer names the file that is open (deleted or replaced)."""


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`; None if there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


SQLITE_FULL = 13  # "database or disk is full" (SQLite's primary result code)


def sqlite3_error_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of `exc` (Python 3.11 gives the extended one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF
