"""`Server`: the listening socket, the open connections, and graceful shutdown.

The server owns three process-wide things: the count of open connections
(against ``limit_concurrency``), the set of connection tasks (each of which
owns its background work, so waiting for them waits for all work), and the
`PendingWork` bound on queued background tasks.

It listens on host:port, on a Unix socket (``uds``), or on a socket it was
handed already listening (``fd``: a worker of `rawbg.server.supervisor`, or systemd
socket activation).

`run` is the blocking entry point (``python -m rawbg`` ends up there);
`serving` starts a server on a port (0 for an ephemeral one) inside a running
event loop, for tests and embedding.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from rawbg.app.lifespan import StartupFailed, run_lifespan
from rawbg.server.accept import Acceptor, start_accepting
from rawbg.server.config import (
    EXIT_OK,
    EXIT_STARTUP_FAILED,
    EXIT_WORK_CANCELLED,
    PARENT_CHECK_INTERVAL,
    UDS_MODE,
    ServerConfig,
    configured_store,
)
from rawbg.server.connection import SHUTDOWN_FIRST_REQUEST_GRACE, run_connection
from rawbg.server.gc_clock import GcClock
from rawbg.server.loops import check_running_loop, loop_factory, running_loop_name
from rawbg.server.tls_context import tls_context
from rawbg.server.watchdog import LoopWatchdog
from rawbg.tasks.after_response import AfterResponse
from rawbg.tasks.calls import BackgroundTask
from rawbg.tasks.failure_log import flush_all as flush_failure_counts
from rawbg.tasks.journal.writer import ACTIVE_JOURNAL, JournalWriter, RecoveredTask
from rawbg.tasks.pending import PendingWork
from rawbg.tasks.work_group import WorkGroup
from rawbg.trace import ConnectionTrace, TraceFile
from rawbg.wire.protocol import HttpProtocol
from rawbg.wire.proxy import TrustedProxies
from rawbg.wire.tls import TlsTransport

if TYPE_CHECKING:
    from asyncio.trsock import TransportSocket

    from rawbg.app.application import App
    from rawbg.server.connection import Connection
    from rawbg.wire.connection_io import ConnectionIO

logger = logging.getLogger("rawbg.server")

# The recovered journal backlog is admitted while fewer than this share of
# --max-pending-tasks are pending: the rest of the bound stays for requests,
# which a connection reads only while the count is under it.
RECOVERED_SHARE = 0.5
# ... and this many at a time between two turns of the loop: starting 5 000 at
# once held the loop for ~0.2 s (the first answer came 0.245 s after listening
# with 20 000 recovered tasks; 2.2 s before they were admitted gradually).
RECOVERED_BATCH = 100

# The kernel's accept queue: the Linux default somaxconn since 5.4 is 4096;
# 2048 absorbs a burst of new connections without refusing them.
LISTEN_BACKLOG = 2048

# At shutdown, how often to look whether the TLS handshakes under way have
# ended: a stop is rare, and 20 ms is well under a handshake on a slow link.
HANDSHAKE_POLL_INTERVAL = 0.02


class Server:
    """An HTTP/1.1 server for one `App` on one address."""

    def __init__(self, app: App, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        self.pending = PendingWork(config.max_pending_tasks)
        self.trusted_proxies = (
            TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None
        )
        self._listener: asyncio.Server | Acceptor | None = None
        # HTTPS: the context (None: plain HTTP), and the connections whose
        # handshake is under way (not counted or served yet)
        self._tls = tls_context(config)
        self.handshakes: set[TlsTransport] = set()
        self._made_uds = False  # we created the socket file, so we remove it
        self._watchdog: LoopWatchdog | None = None
        # Connections
        self._open_transports = 0
        self._connections: set[Connection] = set()  # being served, for shutdown
        self._tasks: set[asyncio.Task[None]] = set()  # connection tasks, with their work
        self._forget_task = self._tasks.discard
        self._callback_context = contextvars.copy_context()
        # Tracing (--trace, --trace-file): off means no trace objects at all
        self._trace_file: TraceFile | None = None
        # The task journal: with one, connection tasks run in a context where
        # it is active, so that `add_task` can refuse what it cannot journal
        self.journal: JournalWriter | None = None
        self._connection_context: contextvars.Context | None = None
        #: recovered entries not admitted yet, and the task admitting them
        self._backlog: collections.deque[RecoveredTask] = collections.deque()
        self._admitting: asyncio.Task[None] | None = None
        # Shutdown
        self._stopping = False
        self._force = asyncio.Event()

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._listener is None or not self._listener.sockets:
            raise RuntimeError("the server is not listening")
        return int(self._listener.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """Where the server listens, as a user would write it (for the log)."""
        if self._listener is None or not self._listener.sockets:
            raise RuntimeError("the server is not listening")
        return describe_socket(self._listener.sockets[0], tls=self._tls is not None)

    async def start(self, *, listen: bool = True) -> None:
        """Open the task journal (if any), listen, then run what the journal recovered.

        With ``listen=False`` nothing listens: connections come from memory
        (`rawbg.wire.memory_transport.MemoryConnection`), for tests that need no socket.
        Raises `JournalError` (a journal that cannot be used) or `OSError`.
        """
        if self.config.trace_file is not None:
            self._trace_file = TraceFile(self.config.trace_file)
        loop = asyncio.get_running_loop()
        config = self.config
        recovered = self._open_journal(loop) if config.task_journal is not None else []
        try:
            if listen:
                await self._listen()
        except BaseException:
            if self.journal is not None:
                await self.journal.stop()
            raise
        if config.loop_block_warning:
            self._watchdog = LoopWatchdog(threshold=config.loop_block_warning, trace=config.trace)
            self._watchdog.start()
        if self.journal is not None:
            logger.info(
                "task journal %s: %d unfinished task(s) recovered, running them again",
                config.journal_name,
                len(recovered),
            )
        if recovered:
            self.run_recovered(recovered)

    async def _listen(self) -> None:
        """Listen on the configured address (host:port, ``uds`` or ``fd``)."""
        loop = asyncio.get_running_loop()
        config = self.config

        if config.fd is not None:
            # Already bound and listening, maybe shared with sibling workers:
            # one connection per wake-up. asyncio's own accept loop takes up
            # to a backlog's worth each time, so the first worker to wake
            # takes a whole burst (wrk's 16 keep-alive connections all went
            # to one of two workers); this leaves the rest in the kernel's
            # queue for whichever worker gets there next, and a worker busy
            # in a handler does not accept at all: the idle one does.
            self._listener = Acceptor(
                [socket.socket(fileno=config.fd)], self.accepted_protocol, per_wakeup=1
            )
        else:
            if config.uds is not None:
                # asyncio replaces a stale socket file left by a crashed server.
                # From Python 3.13 its server also removes the file when closed,
                # and `start_accepting` closes it at once: the file is ours to
                # remove (`_stop_listening`), not the server's.
                keep_file: dict[str, Any] = (
                    {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
                )
                listener = await loop.create_unix_server(
                    self.make_protocol,
                    path=config.uds,
                    backlog=LISTEN_BACKLOG,
                    start_serving=False,
                    **keep_file,
                )
                self._made_uds = True
                os.chmod(config.uds, UDS_MODE)
            else:
                listener = await loop.create_server(
                    self.make_protocol,
                    host=config.host,
                    port=config.port,
                    backlog=LISTEN_BACKLOG,
                    reuse_address=True,
                    start_serving=False,
                )
            # accepting that backs off while out of file descriptors (rawbg/server/accept.py)
            self._listener = await start_accepting(
                listener, self.accepted_protocol, backlog=LISTEN_BACKLOG
            )

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._made_uds and self.config.uds is not None:
            self._made_uds = False
            with contextlib.suppress(OSError):
                os.unlink(self.config.uds)

    def _open_journal(self, loop: asyncio.AbstractEventLoop) -> list[RecoveredTask]:
        config = self.config
        journal = JournalWriter(
            configured_store(config),
            lease=config.journal_lease,
            group_commit=config.task_journal_group_commit,
        )
        pending = self.pending
        journal.room = lambda: config.max_pending_tasks - pending.count
        if config.trace or self._trace_file is not None:
            trace = ConnectionTrace(log=config.trace, file=self._trace_file, label="journal")

            def counts(counts: dict[str, int]) -> None:
                trace.event("journal counts", **counts)

            journal.on_counts = counts
        recovered = journal.open()  # blocking, once, before serving
        journal.on_orphans = self.run_recovered
        journal.start(loop)
        self.journal = journal
        self._connection_context = contextvars.copy_context()
        self._connection_context.run(ACTIVE_JOURNAL.set, journal)
        return recovered

    def run_recovered(self, recovered: list[RecoveredTask]) -> None:
        """Run journal entries again (left by this journal's last run, or a dead process).

        They are owned like a connection's work: by a task the shutdown waits
        for, and counted in `PendingWork`. They are admitted gradually, while
        fewer than `RECOVERED_SHARE` of ``max_pending_tasks`` are pending, so
        that a backlog larger than the bound never leaves requests waiting
        for room: the server answers while it drains (issue 24: 20,000
        recovered tasks kept it from answering anything for 8.6 s). What is not
        admitted when the server stops stays in the journal for the next start.
        """
        if self.journal is None or self._stopping:  # not run: they stay in the journal
            return
        self._backlog.extend(recovered)
        if self._admitting is None:
            task = asyncio.get_running_loop().create_task(
                self._admit_recovered(), name="rawbg-recovered"
            )
            self._admitting = task
            self._tasks.add(task)
            task.add_done_callback(self._forget_task, context=self._callback_context)

    async def _admit_recovered(self) -> None:
        """Start the recovered backlog, a share of the pending bound at a time."""
        journal, pending, backlog = self.journal, self.pending, self._backlog
        assert journal is not None
        share = max(1, int(pending.limit * RECOVERED_SHARE))
        trace = None
        if self.config.trace or self._trace_file is not None:
            trace = ConnectionTrace(log=self.config.trace, file=self._trace_file, label="journal")
        group = WorkGroup()
        try:
            while backlog and not self._stopping:
                await pending.wait_below(share)
                admitted = 0
                while backlog and pending.count < share and not self._stopping:
                    if admitted == RECOVERED_BATCH:  # let the loop answer requests meanwhile
                        await asyncio.sleep(0)
                        admitted = 0
                    admitted += 1
                    entry = backlog.popleft()
                    call = BackgroundTask(entry.func, *entry.args, **entry.kwargs)
                    call.attempts = entry.attempts
                    work = AfterResponse([call], None, entry.label)
                    work.recovered(journal, entry.entry_id)
                    request_trace = trace.next_request() if trace is not None else None
                    if request_trace is not None:
                        request_trace.event(
                            "recovered",
                            task=call.name,
                            entry=entry.entry_id,
                            attempts=entry.attempts,
                        )
                    work.reserve(pending, request_trace)
                    group.start(work)
        finally:
            self._admitting = None
            await group.wait()
            # room was made: a store that claims in batches takes the next one
            journal.claim_soon()

    # -- called by protocols and connections -------------------------------------

    def make_protocol(self) -> HttpProtocol:
        """The HTTP protocol of a new connection (in memory, or under `accepted_protocol`)."""
        config = self.config
        return HttpProtocol(
            self,
            max_head_size=config.max_head_size,
            write_timeout=config.timeout_keep_alive,
            trusted_proxies=self.trusted_proxies,
            scheme="http" if self._tls is None else "https",
        )

    def accepted_protocol(self) -> asyncio.Protocol:
        """The protocol of an accepted socket (the listening sockets' factory).

        With HTTPS, the TLS layer (rawbg/wire/tls.py) under the HTTP protocol:
        the handshake must be done within the head timeout.
        """
        if self._tls is None:
            return self.make_protocol()
        return TlsTransport(
            self._tls,
            self.make_protocol(),
            handshake_timeout=self.config.timeout_keep_alive,
            handshakes=self.handshakes,
        )

    def connection_made(self, io: ConnectionIO) -> None:
        self._open_transports += 1
        # a shared name and callback context: docs/ARCHITECTURE.md, "A pending task keeps little"
        # a copy each: what a handler sets in its context stays its own
        if self._connection_context is None:
            context = contextvars.copy_context()
        else:
            context = self._connection_context.copy()
        connection_task = run_connection(io, self, context)
        task = asyncio.get_running_loop().create_task(
            connection_task, name="rawbg-connection", context=context
        )
        self._tasks.add(task)
        task.add_done_callback(self._forget_task, context=self._callback_context)

    def new_trace(self) -> ConnectionTrace | None:
        """A trace for a new connection, or None when tracing is off."""
        if self.config.trace or self._trace_file is not None:
            return ConnectionTrace(log=self.config.trace, file=self._trace_file)
        return None

    def connection_lost(self, io: ConnectionIO) -> None:
        self._open_transports -= 1

    def over_capacity(self) -> bool:
        """More connections are open than ``limit_concurrency`` and none could make room.

        At the limit a new connection is refused (503) only if no open one is
        behind ``min_body_rate``: otherwise the one furthest behind is cut
        (408, as the rate rule would cut it at the end of its grace) and the
        new one is served. Idle keep-alive connections are kept: closing one
        races with a request its client may be sending on it (a POST lost).
        docs/server-behavior.md, "Concurrency limit".
        """
        if self._open_transports <= self.config.limit_concurrency:
            return False
        return not self._make_room()

    def _make_room(self) -> bool:
        """Cut the connection whose body is furthest behind the minimum rate; False if none is."""
        now = asyncio.get_running_loop().time()
        furthest: Connection | None = None
        lag = 0.0
        for connection in self._connections:
            behind = connection.body_lag(now)
            if behind > lag:
                furthest, lag = connection, behind
        if furthest is None:
            return False
        logger.info(
            "at the connection limit (%d): cutting a body %.0f bytes behind the minimum rate",
            self.config.limit_concurrency,
            lag,
        )
        furthest.cut_to_make_room()
        return True

    def register(self, connection: Connection) -> None:
        self._connections.add(connection)
        if self._stopping:
            connection.stop()

    def unregister(self, connection: Connection) -> None:
        self._connections.discard(connection)

    # -- what is running (for tests and embedding) --------------------------------

    @property
    def connection_tasks(self) -> frozenset[asyncio.Task[None]]:
        """The connection tasks alive now (each ends once its background work has)."""
        return frozenset(self._tasks)

    @property
    def connections(self) -> frozenset[Connection]:
        """The connections being served now (their sockets still open)."""
        return frozenset(self._connections)

    # -- waiting and stopping ----------------------------------------------------

    async def wait_background_idle(self) -> None:
        """Return once no background task is queued or running (nor recovered, to admit)."""
        admitting = self._admitting
        if admitting is not None:
            await asyncio.wait({admitting})
        await self.pending.wait_idle()

    async def _finish_handshakes(self) -> None:
        """Let TLS handshakes under way end: a client that connected before the
        stop is served, as over plain HTTP, and a rolling restart refuses no one.
        Each gets at most `SHUTDOWN_FIRST_REQUEST_GRACE` more (a fresh plain
        connection's grace for its first request), so that stalled handshakes
        cannot hold the stop for the head timeout."""
        for handshake in list(self.handshakes):
            handshake.hurry(SHUTDOWN_FIRST_REQUEST_GRACE)
        while self.handshakes and not self._force.is_set():
            await asyncio.sleep(HANDSHAKE_POLL_INTERVAL)

    def force_stop(self) -> None:
        """Stop waiting for background work now (a second Ctrl-C)."""
        self._force.set()

    async def shutdown(self) -> int:
        """Stop accepting, finish in-flight requests, drain background work.

        Waits up to ``timeout_graceful_shutdown`` for every connection task
        (and so every background task) to end, then cancels the rest. Returns
        how many background tasks were cancelled.
        """
        self._stopping = True
        self._stop_listening()
        if self.journal is not None:  # a shared journal's other nodes take what has not started
            self.journal.release_unstarted()
        if isinstance(self._listener, Acceptor) and self._listener.connecting:
            # accepted a moment ago: they register as connections, then stop like the rest
            await asyncio.wait(set(self._listener.connecting))
        self.pending.stop_waiting()
        for connection in list(self._connections):
            connection.stop()
        await self._finish_handshakes()  # each one done registers, and is stopped, as it comes
        tasks = set(self._tasks)
        cancelled = 0
        if tasks:
            if self.pending.count:
                logger.info(
                    "waiting up to %g s for %d pending background task(s)",
                    self.config.timeout_graceful_shutdown,
                    self.pending.count,
                )
            all_done = asyncio.ensure_future(asyncio.wait(tasks))
            force = asyncio.ensure_future(self._force.wait())
            await asyncio.wait(
                {all_done, force},
                timeout=self.config.timeout_graceful_shutdown,
                return_when=asyncio.FIRST_COMPLETED,
            )
            force.cancel()
            if not all_done.done():
                all_done.cancel()
                cancelled = self.pending.count
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks)
                logger.warning(
                    "cancelled %d background task(s) still pending at shutdown", cancelled
                )
        self._stop_listening()
        if self.journal is not None:
            await self.journal.stop()
            if cancelled:
                logger.info("cancelled journaled tasks stay in the journal: they run at next start")
        if self._trace_file is not None:
            self._trace_file.close()
        if self._watchdog is not None:
            self._watchdog.stop()
        flush_failure_counts()  # the counts of repeated failures, before we stop
        return cancelled


def describe_socket(sock: socket.socket | TransportSocket, *, tls: bool = False) -> str:
    """``http://127.0.0.1:8000``, ``https://[::1]:8000`` or ``unix:/run/app.sock``
    (``unix:/run/app.sock (https)`` with TLS)."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}" + (" (https)" if tls else "")
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(app: App, *, listen: bool = True, **options: Any) -> AsyncIterator[Server]:
    """Serve `app` inside the running loop; shut down gracefully on exit.

    ``async with serving(app, port=0) as server: ... server.port ...``
    Options are the fields of `ServerConfig`. The loop is the caller's: an
    explicit ``loop="uvloop"`` (or ``"asyncio"``) only checks that it is the
    one running. With ``listen=False`` the server takes only in-memory
    connections (`Server.start`).
    """
    config = ServerConfig(**options)
    check_running_loop(config.loop)
    server = Server(app, config)
    async with run_lifespan(app):  # start-up before listening, shutdown after the drain
        await server.start(listen=listen)
        try:
            yield server
        finally:
            await server.shutdown()


async def serve(
    app: App,
    config: ServerConfig,
    *,
    on_listening: Callable[[Server], None] | None = None,
    parent_pid: int | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; return the exit status.

    `EXIT_OK` once everything finished; `EXIT_WORK_CANCELLED` if background
    work had to be cancelled (graceful timeout, or a second signal);
    `EXIT_STARTUP_FAILED` if the app's start-up raised. The app's start-up
    runs before the socket listens, its shutdown after every connection and
    background task has finished. `on_listening` replaces the "serving on"
    line (a worker tells its supervisor instead); with `parent_pid`, the server
    also stops when that process is gone (a worker whose supervisor was killed).
    """
    try:
        async with run_lifespan(app):
            return await _serve_started(
                app, config, on_listening=on_listening, parent_pid=parent_pid
            )
    except StartupFailed as exc:
        logger.debug("start-up failed", exc_info=exc.__cause__)
        print(f"error: application start-up failed: {exc}", file=sys.stderr, flush=True)
        return EXIT_STARTUP_FAILED


async def _serve_started(
    app: App,
    config: ServerConfig,
    *,
    on_listening: Callable[[Server], None] | None,
    parent_pid: int | None,
) -> int:
    server = Server(app, config)
    await server.start()
    # What exists now (modules, the app, its routes and plans) lives as long as
    # the process. Freezing it keeps it out of the cyclic GC's full
    # collections, whose pauses grow with what they traverse and land on
    # requests in flight (benchmarks/README.md: p99 with pending tasks).
    gc.collect()
    gc.freeze()
    # What pending tasks allocate is collected young, in small pauses (rawbg/server/gc_clock.py).
    gc_clock = None
    if config.gc_interval:
        gc_clock = GcClock(interval=config.gc_interval, pending=server.pending)
        gc_clock.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            logger.warning("second signal: cancelling pending background work now")
            server.force_stop()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    logger.info("event loop: %s", running_loop_name())
    if on_listening is None:
        print(f"rawbg serving on {server.address} (press Ctrl-C to stop)", flush=True)
    else:
        on_listening(server)
    orphan_watch = None
    if parent_pid is not None:
        orphan_watch = loop.create_task(_stop_when_orphaned(parent_pid, stop))
    # The handlers stay until asyncio.run closes the loop, so that a late
    # second signal (while the thread pool shuts down) is not a traceback.
    await stop.wait()
    if orphan_watch is not None:
        orphan_watch.cancel()
    logger.info("shutting down: no new connections, finishing requests and background work")
    cancelled = await server.shutdown()
    if gc_clock is not None:
        gc_clock.stop()
    logger.info("shutdown complete")
    return EXIT_WORK_CANCELLED if cancelled else EXIT_OK


async def _stop_when_orphaned(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once `parent_pid` is no longer our parent (it died; we were adopted)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_INTERVAL)
    logger.warning("supervisor %d is gone: shutting down", parent_pid)
    stop.set()


def run(app: App, **options: Any) -> int:
    """Serve `app` until SIGINT/SIGTERM: ``rawbg.run(app, host="0.0.0.0", port=8000)``.

    Options are the fields of `ServerConfig`; ``loop`` picks the event loop
    (rawbg.server.loops). Configures basic logging if the program has not.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ServerConfig(**options)
    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        return runner.run(serve(app, config))
