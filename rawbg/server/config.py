"""Every limit and timeout a user can set, with the reason for its default.

`ServerConfig` is the one object the CLI, `rawbg.run` and the tests build; the
server, the protocol and the connection task only read it. The knobs we do not
expose as flags live beside the code they tune, each with its reason
(`rawbg.wire.protocol.INPUT_HIGH_WATER`, `rawbg.server.gc_clock.GC_FULL_THRESHOLD`,
...); docs/ARCHITECTURE.md, "Where each limit and timeout applies", lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from rawbg.requests import Address
from rawbg.server.loops import LOOPS
from rawbg.tasks.journal.sqlite import SQLiteTaskStore
from rawbg.tasks.journal.store import TaskStore

KiB = 1024
MiB = 1024 * KiB

# --- Exposed defaults -------------------------------------------------------

# 64 KiB: nginx accepts 4 x 8 KiB of headers, Apache 8 KiB a line x 100 lines,
# h11 defaults to 16 KiB. Large cookies and bearer tokens exceed 16 KiB in the
# wild; 64 KiB leaves room for them while keeping a head well below one read.
DEFAULT_MAX_HEAD_SIZE = 64 * KiB

# 1 MiB: the same default as nginx's client_max_body_size. Most routes have their
# body read into memory before the handler runs, so this bounds memory per
# request; a route that streams an upload to disk sets its own max_body_size=
# (docs/forms.md), and only that route takes more.
DEFAULT_MAX_BODY_SIZE = 1 * MiB

# 5 s: uvicorn's default keep-alive, long enough for a browser to reuse the
# connection for the next click of a page load, short enough that idle
# connections do not pile up. It also bounds how long a request head may take.
DEFAULT_TIMEOUT_KEEP_ALIVE = 5.0

# 1 KiB/s: the slowest average a request body may arrive at once the grace of
# the keep-alive timeout is over. A deadline for the whole body would either
# cut off a large upload on a slow link or, at zero cost, let a client that
# trickles a byte every few seconds hold a connection for that whole deadline.
# A rate rule makes a zero-cost trickle as short-lived as a slow head (the
# grace), and holding a connection any longer costs the client bandwidth.
# 1 KiB/s is a fifth of the slowest mobile data link still in service (GPRS,
# about 5 KB/s), so no real client is cut off, and twice the 500 bytes/s of
# Apache's mod_reqtimeout. At it, a 1 MiB body may take 17 minutes.
DEFAULT_MIN_BODY_RATE = 1 * KiB

# 1000 connections: each costs a file descriptor and ~10 KiB; the common
# `ulimit -n` of 1024 leaves room for the log files and the listening socket.
DEFAULT_LIMIT_CONCURRENCY = 1000

# 10 000 tasks: at under 2 KiB each (benchmarks/README.md) that is under 20 MiB
# of pending work, yet it absorbs 10 s of 1000 req/s bursts without pausing.
DEFAULT_MAX_PENDING_TASKS = 10_000

# 30 s: Kubernetes' default terminationGracePeriodSeconds, so a pod's pending
# notifications get the whole grace period before they are cancelled.
DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN = 30.0

# 0.5 s: warn when the event loop is blocked this long (0 turns the watchdog
# off). A healthy loop never stalls that long: a full GC collection or a large
# JSON encode takes milliseconds to tens of them, so there are no false alarms,
# while half a second is already a delay a user feels on every connection.
# (asyncio's debug mode warns from 0.1 s, but it is a debugging aid, slow
# itself.) The watchdog wakes four times per threshold: 8 cheap wake-ups a
# second of the loop and of its thread (rawbg/server/watchdog.py).
DEFAULT_LOOP_BLOCK_WARNING = 0.5

# 10 ms: while background tasks are pending, the server runs the cyclic GC's
# young collection itself this often (0 leaves the GC to CPython), because
# CPython's own trigger stops firing in the steady state of many pending tasks
# and then pauses once for all of them (rawbg/server/gc_clock.py). In 10 ms a busy
# server (4 000 req/s) allocates a few hundred long-lived objects: a young
# collection of them takes a fraction of a millisecond, 100 of them a second
# cost under 1 % of a core.
DEFAULT_GC_INTERVAL = 0.01

# 30 s: how long another process waits before taking over the journaled tasks
# of one that stopped renewing its lease (a process of the same host that is
# gone is taken over at once). Renewed every third of it, so a loaded process
# has two chances to renew; a takeover is rare, and it is what bounds it.
DEFAULT_TASK_JOURNAL_LEASE = 30.0

# 10 s with PostgreSQL, where the other processes are on other machines and
# a dead one's tasks wait for its lease to end: renewed every 2 s, so a node
# is taken over only after 8 s without one successful renewal, longer than
# five TCP retransmissions of a lost packet (6.2 s) or any pause a healthy
# process makes; and a dead node's tasks run elsewhere 8-10 s after its
# death. A database restart costs no takeover at all (a node is taken over
# only once another has renewed without a gap for a whole lease).
DEFAULT_SHARED_JOURNAL_LEASE = 10.0
#: what ``--task-journal`` starts with to name a PostgreSQL database, not a file
SHARED_JOURNAL_SCHEMES = ("postgresql://", "postgres://")

# 1 s: how long a commit waits for a journal locked by another process
# before the request gets a 503. A response held much longer than this is
# worse than a 503 the client can retry; normal commits take well under 1 ms.
DEFAULT_TASK_JOURNAL_BUSY_TIMEOUT = 1.0

# "normal": a committed entry survives the process being killed (the common
# failure); "full" also survives a power loss, at one fsync per group commit.
DEFAULT_TASK_JOURNAL_SYNC = "normal"
TASK_JOURNAL_SYNC_MODES = ("normal", "full")
# "auto": uvloop when it is installed, else asyncio's loop, as uvicorn does.
# Installing uvloop (the `speed` extra) is the user's statement that they want
# it; the server behaves the same on both (the test suite runs on both).
DEFAULT_LOOP = "auto"
# HTTPS: no client certificate asked for (uvicorn's default, ssl.CERT_NONE), as
# a public site does; 1 asks for one (CERT_OPTIONAL), 2 requires it (CERT_REQUIRED).
DEFAULT_SSL_CERT_REQS = 0
SSL_CERT_REQS = (0, 1, 2)
# uvicorn's default and its environment variable: a proxy on the same host
# (nginx in front of rawbg on loopback) is trusted, nobody else is.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"

# --uds: connecting to a Unix socket needs write permission on its file, and the
# proxy in front (nginx's workers run as `nobody` or `www-data`) is another user.
# Read-write for everyone, as uvicorn does: who may reach the socket is then up to
# the permissions of the directory it is in.
UDS_MODE = 0o666
FORWARDED_ALLOW_IPS_ENV = "FORWARDED_ALLOW_IPS"


def default_forwarded_allow_ips() -> str:
    """``$FORWARDED_ALLOW_IPS`` if set (as uvicorn reads it), else loopback only."""
    return os.environ.get(FORWARDED_ALLOW_IPS_ENV, DEFAULT_FORWARDED_ALLOW_IPS)


# --- Exit statuses -------------------------------------------------------------

# 0: stopped by a signal after every request and background task finished.
EXIT_OK = 0
# 1: could not start (the address is in use, the app does not import, no worker
# came up).
EXIT_ERROR = 1
# 3: the app's start-up (lifespan, on_event("startup")) raised: uvicorn's status
# for the same failure, which a supervisor does not retry in a tight loop.
EXIT_STARTUP_FAILED = 3
# 4: stopped, but background work had to be cancelled (the graceful timeout
# passed, or a second signal): a deploy script or systemd can tell that work
# was lost. Not 2, which argparse uses for a bad command line.
EXIT_WORK_CANCELLED = 4

# --- Workers and reload (rawbg.server.supervisor) --------------------------------

# A worker that dies is restarted after a delay that doubles with each death
# in a row, from 0.1 s (a one-off crash costs almost no capacity) up to 10 s
# (a worker that cannot start, say its database is down, does not spin the CPU
# re-importing the app ten times a second). A worker that has served for
# WORKER_HEALTHY_AFTER resets the delay.
RESTART_BACKOFF_FIRST = 0.1
RESTART_BACKOFF_MAX = 10.0
WORKER_HEALTHY_AFTER = 10.0

# A new worker must import the app and be listening within this time, or it is
# killed: at start-up that fails the supervisor, during a rolling restart it
# stops the restart and leaves the old workers serving. Importing a large app
# takes seconds; a minute means it hangs.
WORKER_START_TIMEOUT = 60.0

# Once told to stop, a worker drains for timeout_graceful_shutdown; the
# supervisor kills it this much later, if it has still not exited (a handler
# stuck in a thread keeps a process alive past its own deadline).
WORKER_KILL_MARGIN = 5.0

# A worker checks this often that its supervisor is still alive, and drains
# and exits if it is not (the supervisor was SIGKILLed): an orphan would hold
# the port forever.
PARENT_CHECK_INTERVAL = 1.0

# --reload: how often the .py files under the app directory are checked for a
# new mtime. Polling a few hundred files costs well under a millisecond, and a
# quarter of a second is shorter than switching to the browser.
RELOAD_POLL_INTERVAL = 0.25

# --- Internal constants ------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """What the server listens on, and the limits it enforces."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    timeout_keep_alive: float = DEFAULT_TIMEOUT_KEEP_ALIVE
    min_body_rate: float = DEFAULT_MIN_BODY_RATE  # bytes/s; 0 turns the rate rule off
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
    max_pending_tasks: int = DEFAULT_MAX_PENDING_TASKS
    timeout_graceful_shutdown: float = DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN
    loop_block_warning: float = DEFAULT_LOOP_BLOCK_WARNING  # seconds; 0 turns it off
    gc_interval: float = DEFAULT_GC_INTERVAL  # seconds; 0 leaves the GC to CPython
    access_log: bool = True
    #: serve a request that arrives while its connection task waits from the
    #: callback that received it, as that task (rawbg.server.arrival); False
    #: (``--no-serve-on-arrival``): every request wakes the task, for comparison
    serve_on_arrival: bool = True
    trace: bool = False
    trace_file: str | None = None  # Chrome trace-event JSON of the same events
    #: the event loop `rawbg.run` makes: "auto", "asyncio" or "uvloop" (rawbg.server.loops)
    loop: str = DEFAULT_LOOP
    #: listen on this Unix socket path instead of host:port
    uds: str | None = None
    #: serve on an already listening socket (inherited from a supervisor or systemd)
    fd: int | None = None
    #: believe X-Forwarded-For / X-Forwarded-Proto from `forwarded_allow_ips` peers
    proxy_headers: bool = True
    forwarded_allow_ips: str = field(default_factory=default_forwarded_allow_ips)
    #: the path prefix a proxy strips before forwarding (``/api``), for building URLs
    root_path: str = ""
    #: every request's client, unless a trusted proxy names another; None: the peer's
    #: address. rawbg.testclient sets Starlette's test client's ("testclient", 50000)
    client_address: Address | None = None
    #: the task journal: a SQLite file's path, or a ``postgresql://`` URL;
    #: None: tasks live in memory only
    task_journal: str | None = None
    task_journal_sync: str = DEFAULT_TASK_JOURNAL_SYNC
    #: None: 30 s for a SQLite file, 10 s for PostgreSQL (`journal_lease`)
    task_journal_lease: float | None = None
    task_journal_busy_timeout: float = DEFAULT_TASK_JOURNAL_BUSY_TIMEOUT
    #: False: one commit per request instead of per group (to measure what grouping saves)
    task_journal_group_commit: bool = True
    # HTTPS (uvicorn's names; rawbg/server/tls_context.py builds the context)
    #: the certificate (PEM, the chain after it); setting it turns HTTPS on
    ssl_certfile: str | None = None
    #: its private key (PEM); None: the key is in `ssl_certfile`
    ssl_keyfile: str | None = None
    ssl_keyfile_password: str | None = None
    #: CA certificates (PEM) that client certificates are checked against
    ssl_ca_certs: str | None = None
    #: client certificates: ssl.CERT_NONE (0), CERT_OPTIONAL (1) or CERT_REQUIRED (2)
    ssl_cert_reqs: int = DEFAULT_SSL_CERT_REQS
    #: an OpenSSL cipher list for TLS 1.2; None: the system's OpenSSL default
    ssl_ciphers: str | None = None

    def __post_init__(self) -> None:
        positive = {
            "max_head_size": self.max_head_size,
            "max_body_size": self.max_body_size,
            "timeout_keep_alive": self.timeout_keep_alive,
            "limit_concurrency": self.limit_concurrency,
            "max_pending_tasks": self.max_pending_tasks,
            "task_journal_lease": self.journal_lease,
            "task_journal_busy_timeout": self.task_journal_busy_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.loop_block_warning < 0:
            value = self.loop_block_warning
            raise ValueError(f"loop_block_warning must not be negative, got {value!r}")
        if self.gc_interval < 0:
            raise ValueError(f"gc_interval must not be negative, got {self.gc_interval!r}")
        if self.min_body_rate < 0:
            raise ValueError(f"min_body_rate must not be negative, got {self.min_body_rate!r}")
        if self.timeout_graceful_shutdown < 0:
            value = self.timeout_graceful_shutdown
            raise ValueError(f"timeout_graceful_shutdown must not be negative, got {value!r}")
        if self.task_journal_sync not in TASK_JOURNAL_SYNC_MODES:
            sync = self.task_journal_sync
            raise ValueError(f"task_journal_sync must be 'normal' or 'full', got {sync!r}")
        if self.task_journal == "":
            raise ValueError(
                "task_journal must be a file path or a postgresql:// URL (or None for no journal)"
            )
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")
        from rawbg.wire.proxy import TrustedProxies  # raises ValueError naming a bad entry

        TrustedProxies(self.forwarded_allow_ips)
        if self.uds is not None and self.fd is not None:
            raise ValueError("uds and fd are two different sockets: give one")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(
                f"root_path must start with / and not end with one, got {self.root_path!r}"
            )
        if self.ssl_certfile is None:
            given = [
                name
                for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers")
                if getattr(self, name) is not None
            ]
            if self.ssl_cert_reqs != DEFAULT_SSL_CERT_REQS:
                given.append("ssl_cert_reqs")
            if given:
                raise ValueError(
                    f"{given[0]} needs ssl_certfile: HTTPS is on only with a certificate"
                )
        if self.ssl_cert_reqs not in SSL_CERT_REQS:
            raise ValueError(
                "ssl_cert_reqs must be 0 (no client certificate), 1 (optional) or 2 (required), "
                f"got {self.ssl_cert_reqs!r}"
            )
        if self.client_address is not None and type(self.client_address) is not Address:
            object.__setattr__(self, "client_address", Address(*self.client_address))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port!r}")

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS (a certificate was given)."""
        return self.ssl_certfile is not None

    @property
    def journal_is_shared(self) -> bool:
        """Whether the task journal is a PostgreSQL database (shared by several machines)."""
        return self.task_journal is not None and self.task_journal.startswith(
            SHARED_JOURNAL_SCHEMES
        )

    @property
    def journal_lease(self) -> float:
        """The task journal's lease: as set, else the default for its kind."""
        if self.task_journal_lease is not None:
            return self.task_journal_lease
        if self.journal_is_shared:
            return DEFAULT_SHARED_JOURNAL_LEASE
        return DEFAULT_TASK_JOURNAL_LEASE

    @property
    def journal_name(self) -> str:
        """The task journal as the log and errors show it: a URL's password hidden."""
        return shown_journal(self.task_journal or "")


def shown_journal(target: str) -> str:
    """A file path as it is; a URL with its password, if any, replaced by ``***``."""
    if not target.startswith(SHARED_JOURNAL_SCHEMES):
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def configured_store(config: ServerConfig) -> TaskStore:
    """The store that ``--task-journal`` and its options name (not opened yet).

    A ``postgresql://`` URL needs the ``postgres`` extra (psycopg 3): without
    it, the store raises a `JournalError` that says how to install it.
    """
    if config.task_journal is None:
        raise ValueError("no task journal is configured")
    if config.journal_is_shared:
        from rawbg.tasks.journal.postgres import PostgresTaskStore

        return PostgresTaskStore(
            config.task_journal,
            lease=config.journal_lease,
            commit_deadline=config.task_journal_busy_timeout,
        )
    return SQLiteTaskStore(
        config.task_journal,
        sync=config.task_journal_sync,
        busy_timeout=config.task_journal_busy_timeout,
    )
