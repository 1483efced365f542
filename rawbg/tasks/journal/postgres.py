"""The task journal on PostgreSQL: one database that the processes of several machines share.

``--task-journal postgresql://user@host:port/db`` (the ``postgres`` extra,
psycopg 3). It keeps the SQLite journal's promise (a request's durable tasks
are committed before its response, in one group commit with the done-marks
of the moment; a 503 when they cannot be) and adds what several machines
need, since none of them can look at another's pid:

1. A *node* is one rawbg process. It registers (``rawbg_nodes``) and gets a
   *token* from a sequence: increasing, never reused. A node that lost its
   lease registers again, with a new token.
2. An entry belongs to the token in the high bits of its id
   (``token << ID_BITS | n``, n counted by the node). Ids are made by the
   node, so a group commit needs nothing back; an entry that changes hands
   (a takeover, a release) gets a new id, so that its old owner's late
   done-mark matches nothing.
3. Every time is the database's (``now()``): a lease is ``lease_until = now()
   + lease`` at each renewal, and a node is dead once ``lease_until < now()``.
4. A live node takes over a dead node's entries in one statement (`CLAIM`):
   it locks the dead node's row ``FOR UPDATE SKIP LOCKED`` (two claimers
   never wait for each other, nor take the same entry), *fences* it
   (``lease_until = '-infinity'``: its renewal is refused from then on) and
   moves a batch of its entries to its own token.
5. A node starts a task only while its lease holds by its own clock, until
   (when it sent its last successful renewal) + lease: never later than the
   database's ``lease_until``, so no claimer can have fenced it then
   (`JournalWriter.admit`). A node back from a pause starts nothing until its
   next renewal, which tells it whether it lost its entries (`LeaseLost`).
6. A commit, done-mark, failure or attempt count changes nothing once the
   node is fenced; a done-mark only touches entries under the current token.
7. A dead node is taken over only once some live node has renewed without a
   gap for a whole lease since the dead node's last renewal (each node's
   ``streak_since``). After the database was down, paused or cut off from
   everyone, nobody is taken over until every node had a lease to come back:
   otherwise the first node back would take everybody's running tasks.
8. A graceful stop gives away the entries the node will not start
   (`release`), then fences its own row (`retire`), and ``NOTIFY``s: the
   others take them at once, without waiting out the lease.

A statement that does not return within its deadline has its connection
cut (`_Cutter`; psycopg has no client-side statement timeout, and a paused
server holds a query for ever). The server may still run a statement it had
received, so after reconnecting the node first ends its old session
(``pg_terminate_backend``), then deletes the entries of every commit it
reported as failed (their requests got 503: their tasks must not run) and
fetches the entries of any takeover whose answer it never read.

Measured reasons for the statements' shapes (a multi-row ``VALUES`` through a
``RawCursor``, group sizes in buckets, claims of 1 000): docs/ARCHITECTURE.md,
"The task journal on PostgreSQL".
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

try:
    import psycopg
    from psycopg import conninfo as libpq_conninfo
except ImportError:  # without the postgres extra: `PostgresTaskStore` says how to install it
    HAVE_PSYCOPG = False
else:
    HAVE_PSYCOPG = True

from rawbg.tasks.journal.liveness import process_alive, process_start
from rawbg.tasks.journal.store import (
    JournalError,
    JournalUnavailable,
    LeaseLost,
    NewEntry,
    Outcome,
    StoredEntry,
)

logger = logging.getLogger("rawbg.journal")

FORMAT_NAME = "rawbg-task-journal"
#: the schema's version, in ``rawbg_meta``; an older one is migrated, a newer refused
SCHEMA_VERSION = 1
#: from each older version, the statements that bring the schema to the next one
MIGRATIONS: dict[int, tuple[str, ...]] = {}

# An id is token << ID_BITS | n. 40 bits of n: 10^12 entries per registration
# (three years at 10 000 tasks/s); 23 bits of token (the sign bit stays 0):
# 8 million registrations, which restarts, lost leases and releases use up.
ID_BITS = 40
MAX_N = (1 << ID_BITS) - 1
MAX_TOKEN = (1 << (63 - ID_BITS)) - 1

# Renewals per lease: every 2 s with the default 10 s lease. A node must miss
# four in a row (8 s) to be taken over: more than Linux's five TCP
# retransmissions of a lost packet (0.2 + 0.4 + 0.8 + 1.6 + 3.2 s), and far
# more than the stalls a process sees (a full GC: tens of ms).
RENEWALS_PER_LEASE = 5
# The most entries one takeover statement moves: 100 000 entries of a dead
# node were taken in 100 statements of 1 000 in 3.2-3.9 s (groundwork run,
# load 4-5), each statement short enough not to hold back the commits that
# share the writer thread.
CLAIM_BATCH = 1000
# A group commit is one statement of N rows; N is rounded up to one of these
# (the rest padded with NULL rows, which the statement skips), so that a node
# prepares at most 17 statement texts (psycopg prepares a text after 5 uses,
# up to 100 per connection), and no group wastes more than a third.
GROUP_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# libpq's smallest connect_timeout (a paused server accepts the TCP
# connection, then never answers the start-up packet).
CONNECT_TIMEOUT = 2
# Between two attempts to reconnect: from a quarter of a second, doubling up
# to 2 s (the heartbeat), so that a restart of the database (0.2-0.4 s here)
# costs a second of 503s, and a database that is gone for long is not
# hammered.
RECONNECT_FIRST = 0.25
RECONNECT_MOST = 2.0
# After reconnecting, how long to wait for the old session to end before
# trusting that the statements it had received can no longer run.
OLD_SESSION_WAIT_MS = 5000
# Each session: no lock is waited for this long unless something is stuck;
# a transaction left open by a node that vanished mid-send (a group commit
# larger than one statement) does not hold its row locks for long.
SESSION_SETTINGS = {"lock_timeout": "5s", "idle_in_transaction_session_timeout": "10s"}
# Housekeeping, every 5 minutes from each node (jittered): failed and set-
# aside entries are kept a week for an operator to look at, then deleted;
# a fenced node's row is kept an hour after it holds nothing (its token must
# stay refused for longer than any node could go on unaware), then deleted.
HOUSEKEEPING_SECONDS = 300.0
KEPT_RETENTION = "7 days"
FENCED_RETENTION = "1 hour"
# The channel a release is announced on.
CHANNEL = "rawbg_released"
# A key of our own for the advisory lock that schema creation holds.
SCHEMA_LOCK = int.from_bytes(b"rawbgjnl", "big") >> 1

SCHEMA = (
    "CREATE TABLE rawbg_meta (key text PRIMARY KEY, value text NOT NULL)",
    f"CREATE SEQUENCE rawbg_token AS bigint MAXVALUE {MAX_TOKEN} NO CYCLE",
    """CREATE TABLE rawbg_nodes (
        token bigint PRIMARY KEY DEFAULT nextval('rawbg_token'),
        name text NOT NULL,           -- host:pid:random, for log lines
        host text NOT NULL,           -- gethostname()
        pidns text NOT NULL,          -- its pid namespace: pids mean something only inside it
        pid integer NOT NULL,
        started text,                 -- what tells its process from a later one with its pid
        lease interval NOT NULL,
        lease_until timestamptz NOT NULL,  -- '-infinity' once fenced or released
        streak_since timestamptz NOT NULL, -- since when it has renewed without a gap
        registered timestamptz NOT NULL DEFAULT now(),
        fenced_at timestamptz
    )""",
    """CREATE TABLE rawbg_tasks (
        id bigint PRIMARY KEY,        -- token << 40 | n: the owner is in the id
        function text NOT NULL,       -- module:qualname
        arguments text NOT NULL,      -- JSON [args, kwargs], as rawbg wrote it
        label text NOT NULL,          -- the route that queued it
        attempts integer NOT NULL DEFAULT 0,
        takeovers integer NOT NULL DEFAULT 0,
        created timestamptz NOT NULL DEFAULT now()
    )""",
    # a queue table: rows live about a second. Vacuumed after 1 000 dead rows,
    # not after 20 % of the table, so that it stays small and its pages reused
    """ALTER TABLE rawbg_tasks SET (
        autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000
    )""",
    """CREATE TABLE rawbg_kept (
        id bigint PRIMARY KEY, function text NOT NULL, arguments text NOT NULL,
        label text NOT NULL, attempts integer NOT NULL, takeovers integer NOT NULL,
        created timestamptz NOT NULL, kept_at timestamptz NOT NULL DEFAULT now(),
        note text NOT NULL            -- why: its last attempt failed, it cannot run
    )""",
    "CREATE INDEX rawbg_kept_at ON rawbg_kept (kept_at)",
)
TABLES = ("rawbg_meta", "rawbg_nodes", "rawbg_tasks", "rawbg_kept")

# -- the statements (every parameter is text, cast here: one prepared plan each) ---------

# Parameters: $1 name, $2 host, $3 pid namespace, $4 pid, $5 start, $6 lease (s)
REGISTER = """
INSERT INTO rawbg_nodes (name, host, pidns, pid, started, lease, lease_until, streak_since)
VALUES ($1, $2, $3, $4::integer, $5, make_interval(secs => $6::float8),
        now() + make_interval(secs => $6::float8), now())
RETURNING token"""

# The oldest gap-free streak among live nodes: the database was reachable to
# someone since then (rule 7).
_OLDEST_STREAK = "(SELECT min(streak_since) FROM rawbg_nodes WHERE lease_until > now())"

# $1 token. Refused (no row) once fenced. Returns the seconds until the next
# other node may be taken over (NULL: none), so that the writer looks then.
RENEW = f"""
WITH renewed AS (
    UPDATE rawbg_nodes SET
        lease_until = now() + lease,
        streak_since = CASE WHEN lease_until - lease >= now() - lease / 2
                            THEN streak_since ELSE now() END
    WHERE token = $1::bigint AND lease_until > '-infinity'
    RETURNING token
)
SELECT (SELECT extract(epoch FROM min(greatest(n.lease_until, {_OLDEST_STREAK} + n.lease)) - now())
        FROM rawbg_nodes n
        WHERE n.token <> $1::bigint AND n.lease_until > '-infinity'
          AND greatest(n.lease_until, {_OLDEST_STREAK} + n.lease) > now())
FROM renewed"""

_ME = "me AS (SELECT token FROM rawbg_nodes WHERE token = $1::bigint AND lease_until > '-infinity')"
_MARKS = f"""done AS (
    DELETE FROM rawbg_tasks t USING me
    WHERE t.id = ANY($2::bigint[]) AND t.id >> {ID_BITS} = me.token
), failed AS (
    DELETE FROM rawbg_tasks t USING me
    WHERE t.id = ANY($3::bigint[]) AND t.id >> {ID_BITS} = me.token
    RETURNING t.*
), kept AS (
    INSERT INTO rawbg_kept (id, function, arguments, label, attempts, takeovers, created, note)
    SELECT id, function, arguments, label, attempts, takeovers, created, 'last attempt failed'
    FROM failed
), retried AS (
    UPDATE rawbg_tasks t SET attempts = r.n
    FROM unnest($4::bigint[], $5::integer[]) AS r (id, n), me
    WHERE t.id = r.id AND t.id >> {ID_BITS} = me.token
)
SELECT count(*) FROM me"""
# $1 token, $2 done ids, $3 failed ids, $4 retried ids, $5 their attempts:
# the marks alone. 1 if the node is live, 0 if fenced (and nothing changed).
MARKS = f"WITH {_ME}, {_MARKS}"


def commit_statement(rows: int) -> str:
    """A group commit of `rows` entries ($6... four a row) with the marks; see `MARKS`."""
    values = ", ".join(
        f"(${6 + 4 * i}::bigint, ${7 + 4 * i}, ${8 + 4 * i}, ${9 + 4 * i})" for i in range(rows)
    )
    return f"""WITH {_ME}, added AS (
    INSERT INTO rawbg_tasks (id, function, arguments, label)
    SELECT v.id, v.f, v.a, v.l FROM (VALUES {values}) AS v (id, f, a, l)
    WHERE v.id IS NOT NULL AND EXISTS (SELECT FROM me)
), {_MARKS}"""


# $1 token, $2 batch, $3 the n before the first new id. One dead node per
# statement: the one whose lease ended first (released ones first).
CLAIM = f"""
WITH me AS (
    SELECT token FROM rawbg_nodes WHERE token = $1::bigint AND lease_until > now()
), dead AS (
    SELECT n.token, n.name, n.lease_until FROM rawbg_nodes n, me
    WHERE n.token <> $1::bigint AND n.lease_until < now()
      AND (n.lease_until = '-infinity' OR now() >= {_OLDEST_STREAK} + n.lease)
      AND EXISTS (SELECT FROM rawbg_tasks t
                  WHERE t.id >= n.token << {ID_BITS} AND t.id < (n.token + 1) << {ID_BITS})
    ORDER BY n.lease_until
    LIMIT 1
    FOR UPDATE OF n SKIP LOCKED
), fenced AS (
    UPDATE rawbg_nodes n SET lease_until = '-infinity', fenced_at = now()
    FROM dead WHERE n.token = dead.token AND n.lease_until > '-infinity'
), picked AS (
    -- the batch, in id order; each moves to the n of its place in it (array_position),
    -- so that the update finds its rows by index (a join made the planner hash the
    -- whole table: 220 ms a claim at 100 000 entries)
    SELECT array_agg(p.id ORDER BY p.id) AS ids FROM (
        SELECT t.id FROM rawbg_tasks t, dead
        WHERE t.id >= dead.token << {ID_BITS} AND t.id < (dead.token + 1) << {ID_BITS}
        ORDER BY t.id LIMIT $2::integer
        FOR UPDATE OF t SKIP LOCKED
    ) p
), moved AS (
    UPDATE rawbg_tasks t
    SET id = ($1::bigint << {ID_BITS}) | ($3::bigint + array_position(picked.ids, t.id)),
        takeovers = t.takeovers + 1
    FROM picked WHERE t.id = ANY(picked.ids)
    RETURNING t.id, t.function, t.arguments, t.label, t.attempts
)
SELECT moved.id, moved.function, moved.arguments, moved.label, moved.attempts, dead.name,
       CASE WHEN dead.lease_until = '-infinity' THEN NULL
            ELSE extract(epoch FROM now() - dead.lease_until) END
FROM moved, dead"""

# $1 host, $2 pid namespace, $3 token: the live nodes of this host and pid
# namespace, whose pids can be checked here.
NEIGHBOURS = """
SELECT token, pid, started FROM rawbg_nodes
WHERE host = $1 AND pidns = $2 AND token <> $3::bigint AND lease_until > '-infinity'"""
# $1 tokens of processes that are gone: fenced, so that their entries are taken at once.
FENCE_GONE = """
UPDATE rawbg_nodes SET lease_until = '-infinity', fenced_at = now()
WHERE token = ANY($1::bigint[]) AND lease_until > '-infinity'"""

# $1 token, $2 ids: moved to a new node row that is fenced from the start, and
# announced: the other nodes take them at once.
RELEASE = f"""
WITH shadow AS (
    INSERT INTO rawbg_nodes (name, host, pidns, pid, started, lease, lease_until,
                             streak_since, fenced_at)
    SELECT name || ' (released)', host, pidns, pid, started, lease, '-infinity', now(), now()
    FROM rawbg_nodes WHERE token = $1::bigint
    RETURNING token
), picked AS (
    SELECT p.id, row_number() OVER () AS k FROM (
        SELECT id FROM rawbg_tasks WHERE id = ANY($2::bigint[]) AND id >> {ID_BITS} = $1::bigint
        FOR UPDATE
    ) p
), moved AS (
    UPDATE rawbg_tasks t SET id = (shadow.token << {ID_BITS}) | picked.k
    FROM picked, shadow WHERE t.id = picked.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), pg_notify('{CHANNEL}', (SELECT token FROM shadow)::text)"""

# $1 token: a graceful stop. What the node still holds is taken at once.
RETIRE = f"""
WITH fenced AS (
    UPDATE rawbg_nodes SET lease_until = '-infinity', fenced_at = now()
    WHERE token = $1::bigint AND lease_until > '-infinity'
    RETURNING token
)
SELECT pg_notify('{CHANNEL}', token::text) FROM fenced"""

# $1 token, $2 id, $3 why: an entry that cannot run, kept for a while, never run.
SET_ASIDE = f"""
WITH gone AS (
    DELETE FROM rawbg_tasks WHERE id = $2::bigint AND id >> {ID_BITS} = $1::bigint RETURNING *
)
INSERT INTO rawbg_kept (id, function, arguments, label, attempts, takeovers, created, note)
SELECT id, function, arguments, label, attempts, takeovers, created, $3 FROM gone"""

# After reconnecting: $1 pid and $2 start of the old session; ends it, and waits.
END_OLD_SESSION = f"""
SELECT pg_terminate_backend(pid, {OLD_SESSION_WAIT_MS}) FROM pg_stat_activity
WHERE pid = $1::integer AND backend_start = $2::timestamptz"""
# $1 ids of commits reported as failed: their requests got 503.
DELETE_REFUSED = "DELETE FROM rawbg_tasks WHERE id = ANY($1::bigint[])"
# $1, $2: the first and last ids of takeovers whose answer was lost.
FETCH_UNRECEIVED = """
SELECT t.id, t.function, t.arguments, t.label, t.attempts
FROM unnest($1::bigint[], $2::bigint[]) AS r (low, high)
JOIN rawbg_tasks t ON t.id BETWEEN r.low AND r.high"""

# $1 retention of kept entries, $2 of fenced node rows. Also: a node dead for
# longer than that and never taken over (it held nothing) is fenced; entries
# whose token has no row at all (deleted by hand) get a fenced row, so that
# the next takeover finds them.
HOUSEKEEPING = f"""
WITH kept AS (
    DELETE FROM rawbg_kept WHERE kept_at < now() - $1::interval
), stale AS (
    UPDATE rawbg_nodes SET lease_until = '-infinity', fenced_at = now()
    WHERE lease_until > '-infinity' AND lease_until < now() - $2::interval
), ownerless AS (
    INSERT INTO rawbg_nodes (token, name, host, pidns, pid, lease, lease_until,
                             streak_since, fenced_at)
    SELECT DISTINCT t.id >> {ID_BITS}, 'unknown', '', '', 0, interval '0', '-infinity',
           now(), now()
    FROM rawbg_tasks t
    WHERE NOT EXISTS (SELECT FROM rawbg_nodes n WHERE n.token = t.id >> {ID_BITS})
    ON CONFLICT DO NOTHING
)
DELETE FROM rawbg_nodes n
WHERE n.lease_until = '-infinity' AND n.fenced_at < now() - $2::interval
  AND NOT EXISTS (SELECT FROM rawbg_tasks t
                  WHERE t.id >= n.token << {ID_BITS} AND t.id < (n.token + 1) << {ID_BITS})"""


if TYPE_CHECKING:
    Connection = psycopg.Connection[tuple[Any, ...]]


def array(ids: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers: sent as text, cast in the statement."""
    return "{" + ",".join(map(str, ids)) + "}"


def bucket(rows: int) -> int:
    """The statement size a group of `rows` entries is sent in (`GROUP_SIZES`)."""
    for size in GROUP_SIZES:
        if rows <= size:
            return size
    return GROUP_SIZES[-1]


def connection_string(url: str) -> str:
    """`url` with rawbg's defaults for what it does not say (the user's settings win)."""
    given = libpq_conninfo.conninfo_to_dict(url)
    defaults: dict[str, Any] = {"application_name": "rawbg", "connect_timeout": CONNECT_TIMEOUT}
    return libpq_conninfo.make_conninfo(
        url, **{key: value for key, value in defaults.items() if key not in given}
    )


def one_line(exc: BaseException) -> str:
    """An error's message on one line (libpq's span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


class _Cutter:
    """Cuts a connection whose statement has not returned by its deadline.

    psycopg waits for an answer without end, and a paused server (or a lost
    network) never sends one: the only way out is to shut the socket down
    from another thread, which makes the waiting call raise at once
    (measured: 1-4 ms). One thread per store sleeps until the deadline of
    the statement in flight; arming and disarming are a lock each.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._fd = -1
        self._deadline: float | None = None
        self._cut = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float) -> None:
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rawbg-journal-cutter")
                self._thread.daemon = True
                self._thread.start()
            self._fd = fd
            self._deadline = time.monotonic() + seconds
            self._cut = False
            self._condition.notify()

    def disarm(self) -> bool:
        """End the watch; whether the connection was cut meanwhile."""
        with self._condition:
            self._deadline = None
            return self._cut

    def close(self) -> None:
        """Stop the thread (a later `arm` starts another)."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._condition:
            self._thread = None
            self._closed = False

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                if self._deadline is None:
                    self._condition.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._condition.wait(left)
                    continue
                # the statement's caller waits for this lock to disarm: its
                # connection (and so this fd) is still open
                with contextlib.suppress(OSError):
                    sock = socket.socket(fileno=os.dup(self._fd))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()
                self._cut = True
                self._deadline = None


class _ReleaseListener:
    """A session of its own that ``LISTEN``s for releases and wakes the writer.

    It listens again by itself after the database restarts (and wakes the
    writer then too, for whatever was released meanwhile).
    """

    def __init__(self, conninfo: str, wake: Callable[[], None]) -> None:
        self._conninfo = conninfo
        self._wake = wake
        self._stopping = threading.Event()
        self._fd = -1
        self._thread = threading.Thread(target=self._run, name="rawbg-journal-listen")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):  # wakes the wait for notifications
            sock = socket.socket(fileno=os.dup(self._fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = RECONNECT_FIRST
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    self._fd = conn.fileno()
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = RECONNECT_FIRST
                    self._wake()
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=5.0):
                            self._wake()
            except psycopg.Error:
                self._fd = -1
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MOST)


class PostgresTaskStore:
    """`rawbg.tasks.journal.store.TaskStore` on a PostgreSQL database (module docstring)."""

    fencing = True
    renewals_per_lease = RENEWALS_PER_LEASE
    claim_batch = CLAIM_BATCH

    def __init__(self, url: str, *, lease: float, commit_deadline: float) -> None:
        if not HAVE_PSYCOPG:
            raise JournalError(
                "a PostgreSQL task journal needs the postgres extra (psycopg 3): "
                "pip install 'rawbg[postgres]'"
            )
        self.url = url
        self.lease = lease
        #: how long a group commit may take (``--task-journal-busy-timeout``)
        self.commit_deadline = commit_deadline
        # other statements (a renewal, a takeover of 1 000 entries) get longer,
        # but less than a lease: a renewal later than that is worthless
        self._slow_deadline = max(commit_deadline, lease / 2)
        self._conninfo = connection_string(url)
        # Who this node is
        self._host = socket.gethostname()
        self._pidns = _pid_namespace()
        self._pid = os.getpid()
        self._started = process_start(self._pid)
        self._name = ""
        self._token = 0  # its registration; read by `holds` from any thread
        self._counter = 0  # the n of the last id it made
        # The connection, and what losing it left uncertain
        self._conn: Connection | None = None
        self._session: tuple[int, datetime] | None = None  # its backend's pid and start
        self._old_session: tuple[int, datetime] | None = None
        self._refused: list[int] = []  # ids of commits reported as failed
        self._unreceived: list[tuple[int, int]] = []  # id ranges of takeovers not read
        self._found: list[StoredEntry] = []  # what those were, for the next `claim_orphans`
        self._cutter = _Cutter()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._retry_delay = RECONNECT_FIRST
        self._why = ""
        self._housekeeping_at = 0.0
        self._listener: _ReleaseListener | None = None
        self._wake: Callable[[], None] | None = None

    # -- start-up ------------------------------------------------------------------

    def check(self) -> None:
        conn = self._connect_at_start()
        try:
            self._check_or_create(conn)
        finally:
            conn.close()
            self._cutter.close()

    def open(self, *, owner: str, lease_until: float) -> None:
        conn = self._connect_at_start()
        try:
            self._check_or_create(conn)
            self._conn = conn
            self._name = owner
            self._register()
        except BaseException as exc:
            conn.close()
            self.close()
            if isinstance(exc, psycopg.Error):
                raise JournalError(f"cannot use the database: {one_line(exc)}") from None
            raise
        self._housekeeping_at = time.monotonic() + random.uniform(0, HOUSEKEEPING_SECONDS)
        if self._wake is not None:
            self._listener = _ReleaseListener(self._conninfo, self._wake)

    def _connect_at_start(self) -> Connection:
        try:
            return self._connect()
        except psycopg.Error as exc:
            raise JournalError(f"cannot connect: {one_line(exc)}") from None

    def _connect(self) -> Connection:
        conn: Connection = psycopg.connect(
            self._conninfo, autocommit=True, cursor_factory=psycopg.RawCursor
        )
        try:
            settings = ", ".join(
                f"set_config('{name}', '{value}', false)"
                for name, value in SESSION_SETTINGS.items()
            )
            row = self._one(
                f"SELECT {settings}, pg_backend_pid(), "
                "(SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())",
                [],
                conn=conn,
            )
        except BaseException:
            conn.close()
            raise
        self._session = (int(row[-2]), row[-1])
        return conn

    def _check_or_create(self, conn: Connection) -> None:
        """Create the schema, check it, or migrate it: one transaction, under a lock."""

        def run(sql: str, *params: str) -> list[tuple[Any, ...]]:
            return self._fetch(sql, params, conn=conn)

        try:
            with conn.transaction():
                run(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
                found = {
                    name
                    for name, exists in run(
                        "SELECT name, to_regclass(name) IS NOT NULL "
                        "FROM unnest($1::text[]) AS name",
                        array_of_text(TABLES),
                    )
                    if exists
                }
                if not found:
                    for statement in SCHEMA:
                        run(statement)
                    run(
                        "INSERT INTO rawbg_meta VALUES ('format', $1), ('version', $2)",
                        FORMAT_NAME,
                        str(SCHEMA_VERSION),
                    )
                    logger.info("task journal: created its tables (version %d)", SCHEMA_VERSION)
                    return
                if "rawbg_meta" not in found:
                    raise JournalError(
                        f"the database has tables named {', '.join(sorted(found))} "
                        "but no rawbg_meta: not a rawbg task journal"
                    )
                meta = dict(run("SELECT key, value FROM rawbg_meta"))
                if meta.get("format") != FORMAT_NAME:
                    raise JournalError("its rawbg_meta table is not a rawbg task journal's")
                version = self._version(meta.get("version"))
                if version < SCHEMA_VERSION:
                    for step in range(version, SCHEMA_VERSION):
                        for statement in MIGRATIONS[step]:
                            run(statement)
                    run(
                        "UPDATE rawbg_meta SET value = $1 WHERE key = 'version'",
                        str(SCHEMA_VERSION),
                    )
                    logger.info(
                        "task journal: migrated its tables from version %d to %d",
                        version,
                        SCHEMA_VERSION,
                    )
        except psycopg.Error as exc:
            raise JournalError(f"cannot create or check its tables: {one_line(exc)}") from None

    @staticmethod
    def _version(found: str | None) -> int:
        """The schema's version from ``rawbg_meta``; `JournalError` unless this rawbg reads it."""
        try:
            version = int(found or "")
        except ValueError:
            raise JournalError(f"unreadable journal version {found!r}") from None
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"its tables were written by a newer rawbg (journal version {version}, this "
                f"rawbg reads up to {SCHEMA_VERSION}); upgrade rawbg or use another database"
            )
        if version < 1 or any(step not in MIGRATIONS for step in range(version, SCHEMA_VERSION)):
            raise JournalError(f"unknown journal version {version}")
        return version

    def _register(self) -> None:
        """A new registration: a new token, a fresh lease, no entries."""
        row = self._one(
            REGISTER,
            [self._name, self._host, self._pidns, str(self._pid), self._started, str(self.lease)],
            deadline=self._slow_deadline,
        )
        self._token = int(row[0])
        self._counter = 0

    # -- the writer thread's work --------------------------------------------------------

    def write(
        self,
        groups: Sequence[Sequence[NewEntry]],
        *,
        owner: str,
        finished: Sequence[Outcome],
        attempts: Sequence[tuple[int, int]],
    ) -> list[list[int]]:
        conn = self._connected()
        token = self._token
        ids = [self._next_ids(len(group)) for group in groups]
        rows: list[tuple[int, NewEntry]] = [
            (entry_id, entry)
            for group, group_ids in zip(groups, ids, strict=True)
            for entry_id, entry in zip(group_ids, group, strict=True)
        ]
        done = [o.id for o in finished if not o.failed]
        failed = [o.id for o in finished if o.failed]
        ended = set(done) | set(failed)  # a statement may change a row once: its last word
        retried = [(entry_id, n) for entry_id, n in attempts if entry_id not in ended]
        marks = [
            str(token),
            array(done),
            array(failed),
            array([entry_id for entry_id, _ in retried]),
            array([n for _, n in retried]),
        ]
        chunks = [rows[i : i + GROUP_SIZES[-1]] for i in range(0, len(rows), GROUP_SIZES[-1])]
        try:
            if len(chunks) <= 1:
                live = self._commit(conn, chunks[0] if chunks else [], marks)
            else:  # larger than one statement: one transaction of several
                with conn.transaction():
                    live = all(
                        self._commit(conn, chunk, marks if n == 0 else marks[:1] + NO_MARKS)
                        for n, chunk in enumerate(chunks)
                    )
                    if not live:
                        raise _Refused
        except _Refused:
            live = False
        except psycopg.Error as exc:
            if self._conn is None:  # lost: whether the server ran it is unknown
                self._refused.extend(entry_id for entry_id, _ in rows)  # deleted once back
            raise JournalUnavailable(one_line(exc)) from None
        if not live:
            self._lost_lease("a commit was refused")
        return ids

    def _commit(
        self, conn: Connection, rows: Sequence[tuple[int, NewEntry]], marks: list[str]
    ) -> bool:
        """One statement: these rows and the marks; whether the node is live (else: nothing)."""
        if not rows:
            return bool(self._one(MARKS, marks, deadline=self.commit_deadline, conn=conn)[0])
        size = bucket(len(rows))
        params: list[str | None] = list(marks)
        for entry_id, entry in rows:
            params += (str(entry_id), entry.function, entry.arguments, entry.label)
        params += [None] * (4 * (size - len(rows)))
        return bool(
            self._one(commit_statement(size), params, deadline=self.commit_deadline, conn=conn)[0]
        )

    def _next_ids(self, count: int) -> list[int]:
        first = self._counter + 1
        self._counter += count
        if self._counter > MAX_N:  # years of ids: start a registration afresh
            self._lost_lease("this registration has used all its ids")
        base = self._token << ID_BITS
        return [base | n for n in range(first, first + count)]

    def renew(self, *, owner: str, lease_until: float) -> float | None:
        row = self._statement(RENEW, [str(self._token)])
        if not row:
            self._lost_lease("its renewal was refused")
        if time.monotonic() >= self._housekeeping_at:
            self._housekeeping()
        hint = row[0][0]
        return None if hint is None else max(0.0, float(hint))

    def _lost_lease(self, why: str) -> None:
        """Another node took this one's entries: register again, and say so (`LeaseLost`)."""
        old = self._token
        try:
            self._register()
        except psycopg.Error as exc:
            raise JournalUnavailable(one_line(exc)) from None
        raise LeaseLost(
            f"{why}: another node took over this node's entries (registration {old}); "
            f"registered again as {self._token}"
        )

    def claim_orphans(
        self, *, owner: str, now: float, limit: int | None = None
    ) -> list[StoredEntry]:
        self._connected()
        found, self._found = self._found, []  # fetched while reconnecting
        batch = CLAIM_BATCH if limit is None else min(limit, CLAIM_BATCH)
        claiming: tuple[int, int] | None = None
        try:
            self._fence_gone_neighbours()
            if batch <= 0:
                return found
            base = self._counter
            self._counter += batch  # the whole range is reserved, whatever comes back
            low = (self._token << ID_BITS) | (base + 1)
            claiming = (low, low + batch - 1)
            rows = self._fetch(CLAIM, [str(self._token), str(batch), str(base)])
        except psycopg.Error as exc:
            self._found = found + self._found
            if claiming is not None and self._conn is None:  # its answer is lost
                self._unreceived.append(claiming)  # fetched once back
            raise JournalUnavailable(one_line(exc)) from None
        if rows:
            name, ended = rows[0][5], rows[0][6]
            since = "released" if ended is None else f"its lease ended {float(ended):.2f} s ago"
            logger.info("took over %d task(s) from node %s (%s)", len(rows), name, since)
        return found + [StoredEntry(*row[:5]) for row in rows]

    def _fence_gone_neighbours(self) -> None:
        """Fence the nodes of this host whose process is gone: they are taken over at once."""
        rows = self._fetch(NEIGHBOURS, [self._host, self._pidns, str(self._token)])
        gone = []
        for token, pid, started in rows:
            if pid == self._pid:  # this process, or an earlier one with its pid (a restart)
                if started is not None and started != self._started:
                    gone.append(token)
            elif not process_alive(pid) or (
                started is not None and process_start(pid) not in (None, started)
            ):
                gone.append(token)
        if gone:
            self._fetch(FENCE_GONE, [array(gone)])

    def holds(self, entry_id: int) -> bool:
        return entry_id >> ID_BITS == self._token

    def set_aside(self, entry_id: int, why: str) -> None:
        self._statement(SET_ASIDE, [str(self._token), str(entry_id), why])

    def release(self, entry_ids: Sequence[int]) -> None:
        [(moved, _)] = self._statement(RELEASE, [str(self._token), array(entry_ids)])
        logger.info("released %d task(s) not started to the other nodes", moved)

    def on_release(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def retire(self, *, owner: str) -> None:
        self._statement(RETIRE, [str(self._token)])

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        self._cutter.close()

    def _housekeeping(self) -> None:
        self._housekeeping_at = time.monotonic() + HOUSEKEEPING_SECONDS * random.uniform(0.8, 1.2)
        try:
            self._fetch(HOUSEKEEPING, [KEPT_RETENTION, FENCED_RETENTION])
        except psycopg.Error as exc:
            logger.warning("task journal housekeeping failed: %s", one_line(exc))

    # -- statements, deadlines, reconnecting ------------------------------------------

    def _statement(self, sql: str, params: Sequence[str | None]) -> list[tuple[Any, ...]]:
        """One statement, connecting first if need be; `JournalUnavailable` if it fails."""
        self._connected()
        try:
            return self._fetch(sql, params)
        except psycopg.Error as exc:
            raise JournalUnavailable(one_line(exc)) from None

    def _fetch(
        self,
        sql: str,
        params: Sequence[str | None],
        *,
        deadline: float | None = None,
        conn: Connection | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement within `deadline` seconds; its rows. The connection is cut
        if it takes longer, and is forgotten whenever it breaks (`_lose`)."""
        conn = conn or self._conn
        if conn is None:
            raise psycopg.OperationalError("not connected")
        self._cutter.arm(conn.fileno(), deadline or self._slow_deadline)
        try:
            cursor = conn.execute(sql, params)
            rows = cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            cut = self._cutter.disarm()
            if cut or conn.broken or conn.closed:
                self._lose(conn, "it did not answer in time" if cut else one_line(exc))
            raise
        if self._cutter.disarm():  # answered, but cut meanwhile: the answer stands
            self._lose(conn, "it did not answer in time")
        return rows

    def _one(
        self,
        sql: str,
        params: Sequence[str | None],
        *,
        deadline: float | None = None,
        conn: Connection | None = None,
    ) -> tuple[Any, ...]:
        rows = self._fetch(sql, params, deadline=deadline, conn=conn)
        if not rows:
            raise psycopg.DataError("the statement returned no row")
        return rows[0]

    def _lose(self, conn: Connection, why: str) -> None:
        """The connection broke or was cut: forget it; its session is ended once back."""
        if conn is not self._conn:
            return
        self._old_session = self._session
        self._conn = None
        with contextlib.suppress(Exception):
            conn.close()
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._why = why
            logger.error(
                "task journal: lost the database (%s); requests with durable tasks get 503 "
                "until it is back",
                why,
            )
        self._retry_at = time.monotonic()  # the first attempt at once: a restart is quick

    def _connected(self) -> Connection:
        """The connection, reconnecting if it is time to try; `JournalUnavailable` if not."""
        if self._conn is not None:
            return self._conn
        now = time.monotonic()
        if now < self._retry_at:
            raise JournalUnavailable(f"the database is unreachable ({self._why})")
        conn: Connection | None = None
        try:
            conn = self._connect()
            self._recover(conn)
        except psycopg.Error as exc:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, RECONNECT_MOST)
            self._why = one_line(exc)
            if self._down_since is None:
                self._down_since = now
                logger.error(
                    "task journal: cannot reach the database (%s); requests with durable "
                    "tasks get 503 until it is back",
                    self._why,
                )
            raise JournalUnavailable(f"the database is unreachable ({self._why})") from None
        self._conn = conn
        self._retry_delay = RECONNECT_FIRST
        if self._down_since is not None:
            logger.warning(
                "task journal: the database is back after %.1f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        return conn

    def _recover(self, conn: Connection) -> None:
        """Settle what the lost connection left uncertain, before anything else is sent."""
        if self._old_session is not None:
            pid, started = self._old_session
            ended = self._fetch(END_OLD_SESSION, [str(pid), started.isoformat()], conn=conn)
            if ended and not ended[0][0]:
                raise psycopg.OperationalError("the old session did not end in time")
            self._old_session = None
        if self._refused:
            self._fetch(DELETE_REFUSED, [array(self._refused)], conn=conn)
            self._refused = []
        if self._unreceived:
            lows = [low for low, _ in self._unreceived]
            highs = [high for _, high in self._unreceived]
            rows = self._fetch(FETCH_UNRECEIVED, [array(lows), array(highs)], conn=conn)
            self._found.extend(StoredEntry(*row) for row in rows)
            self._unreceived = []


class _Refused(Exception):
    """A statement of a multi-statement commit found the node fenced: roll back."""


NO_MARKS = ["{}", "{}", "{}", "{}"]


def array_of_text(names: Sequence[str]) -> str:
    return "{" + ",".join(names) + "}"
