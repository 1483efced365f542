"""The supervisor: N worker processes on one listening socket (``--workers N``, ``--reload``).

The supervisor never imports the app and never serves a request. It:

0. **checks** the task journal, if there is one (``--task-journal``): a path
   that cannot be opened, a file that is not a journal or one from a newer
   rawbg is one `JournalError`, before any worker starts, instead of the
   same error from every worker (an older journal is migrated here, once);
1. **binds** the address once (TCP or ``--uds``) and keeps the listening socket
   open for its whole life. Each worker inherits it (`rawbg.server.worker`) and
   accepts from the same kernel queue. A connection that arrives while a
   worker is being replaced waits in that queue: there is always a listener,
   so nothing is refused (docs/ARCHITECTURE.md: why not SO_REUSEPORT);
2. **starts** the workers (``python -m rawbg`` with the same command line)
   and waits until each says it listens;
3. **restarts** a worker that dies, logging how (exit status or signal),
   after a delay that doubles while workers keep dying young (`Backoff`);
4. on **SIGINT/SIGTERM**, stops restarting and sends SIGTERM to every worker:
   each drains its own connections and background work within
   ``--timeout-graceful-shutdown``. A second signal is passed on, and makes
   the workers cancel what is left. It kills a worker that outlives its
   deadline by `WORKER_KILL_MARGIN`;
5. on **SIGHUP** (and, with ``--reload``, when a source file changes) does a
   **rolling restart**: for one worker at a time, start its replacement, wait
   until it listens, then SIGTERM the old one, which drains like at shutdown.
   A replacement that fails to start stops the rolling restart and leaves the
   remaining old workers serving;
6. **exits** with `EXIT_WORK_CANCELLED` if any worker it stopped had to
   cancel background work (or was killed), `EXIT_STARTUP_FAILED` if a first
   worker's app start-up raised, `EXIT_ERROR` if the workers could not start
   for another reason, `EXIT_OK` otherwise.

Workers run in their own process group, so a Ctrl-C in the terminal reaches
the supervisor only, which passes it on once (the workers would otherwise see
it twice, and take the second for "cancel now").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from rawbg.server.config import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_STARTUP_FAILED,
    EXIT_WORK_CANCELLED,
    RELOAD_POLL_INTERVAL,
    RESTART_BACKOFF_FIRST,
    RESTART_BACKOFF_MAX,
    UDS_MODE,
    WORKER_HEALTHY_AFTER,
    WORKER_KILL_MARGIN,
    WORKER_START_TIMEOUT,
    ServerConfig,
    configured_store,
)
from rawbg.server.reload import changes, snapshot
from rawbg.server.server import LISTEN_BACKLOG, describe_socket
from rawbg.server.worker import READY, WorkerLink

logger = logging.getLogger("rawbg.supervisor")


def bind_socket(config: ServerConfig) -> socket.socket:
    """The listening socket every worker inherits: ``config.uds``, else host:port."""
    if config.uds is not None:
        path = config.uds
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # left by a server that crashed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, UDS_MODE)
    else:
        family, kind, proto, _, address = socket.getaddrinfo(
            config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    sock.listen(LISTEN_BACKLOG)
    return sock


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


@dataclass(slots=True)
class Backoff:
    """How long to wait before restarting a worker slot whose worker died."""

    deaths_in_a_row: int = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= WORKER_HEALTHY_AFTER:
            self.deaths_in_a_row = 0
        delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_FIRST * 2.0**self.deaths_in_a_row)
        self.deaths_in_a_row += 1
        return delay


@dataclass(eq=False, slots=True)
class Worker:
    """One worker process, from the supervisor's side."""

    process: asyncio.subprocess.Process
    slot: int
    started: float
    ready: asyncio.Future[bool]  # True once it listens, False if it exited first
    told_to_stop: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(slots=True)
class Slot:
    """One of the N places a worker fills; its worker is replaced, the slot stays."""

    index: int
    worker: Worker | None = None
    backoff: Backoff = field(default_factory=Backoff)


class Supervisor:
    """Runs `workers` copies of ``python -m rawbg ARGV`` on one listening socket."""

    def __init__(
        self,
        *,
        argv: Sequence[str],
        config: ServerConfig,
        workers: int,
        reload_dir: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self._argv = list(argv)
        self._config = config
        self._reload_dir = reload_dir
        self._slots = [Slot(index) for index in range(workers)]
        self._sock: socket.socket | None = None
        # Every worker process not yet reaped, with the task waiting for its exit
        self._live: dict[Worker, asyncio.Task[None]] = {}
        self._serving = False  # every first worker is listening
        # Shutdown
        self._stopping = False
        self._stop = asyncio.Event()
        #: a worker that was told to stop cancelled background work (or was killed)
        self.work_cancelled = False
        # Rolling restarts, reload, delayed restarts
        self._restart_wanted = asyncio.Event()
        self._helpers: set[asyncio.Task[None]] = set()

    # -- the whole life ------------------------------------------------------------

    async def run(self) -> int:
        """Check the journal, bind, start the workers, supervise until a signal.

        Returns the exit status; raises `JournalError` (a journal that cannot
        be used) or `OSError` (an address that cannot be bound) before any
        worker starts.
        """
        if self._config.task_journal is not None:
            configured_store(self._config).check()  # blocking, once, before any worker
        self._sock = sock = bind_socket(self._config)
        try:
            return await self._supervise(sock)
        finally:
            sock.close()
            if self._config.uds is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._config.uds)

    async def _supervise(self, sock: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self._restart_wanted.set)
        # taken before the workers import the app: an edit from now on reloads
        sources = snapshot(self._reload_dir) if self._reload_dir is not None else {}
        first = []
        for slot in self._slots:
            slot.worker = await self._start_worker(slot)
            first.append(slot.worker)
        started = await asyncio.gather(*(self._wait_ready(worker) for worker in first))
        if not all(started):
            logger.error("a worker failed to start: stopping")
            await self._shutdown()
            if any(worker.process.returncode == EXIT_STARTUP_FAILED for worker in first):
                return EXIT_STARTUP_FAILED  # the app's start-up raised, as a single process says
            return EXIT_ERROR
        self._serving = True
        if not self._stopping:
            print(
                f"rawbg serving on {describe_socket(sock, tls=self._config.tls)} "
                f"with {len(self._slots)} worker(s) "
                f"(supervisor pid {os.getpid()}; press Ctrl-C to stop)",
                flush=True,
            )
            self._helper(self._rolling_restarts())
            if self._reload_dir is not None:
                self._helper(self._watch_sources(self._reload_dir, sources))
            await self._stop.wait()
        await self._shutdown()
        return EXIT_WORK_CANCELLED if self.work_cancelled else EXIT_OK

    def _helper(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # -- one worker --------------------------------------------------------------------

    async def _start_worker(self, slot: Slot) -> Worker:
        """Start a worker process for `slot`; the caller decides when it takes the slot."""
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        ready_read, ready_write = os.pipe()
        link = WorkerLink(
            listen_fd=self._sock.fileno(), ready_fd=ready_write, supervisor_pid=os.getpid()
        )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rawbg",
                *self._argv,
                env={**os.environ, **link.environ()},
                pass_fds=(link.listen_fd, link.ready_fd),
                stdin=asyncio.subprocess.DEVNULL,
                process_group=0,  # Ctrl-C in a terminal reaches the supervisor only
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        worker = Worker(process, slot.index, time.monotonic(), loop.create_future())

        def on_ready_pipe() -> None:
            try:
                said = os.read(ready_read, len(READY))
            except OSError:
                said = b""
            loop.remove_reader(ready_read)
            os.close(ready_read)
            if not worker.ready.done():  # EOF (b""): it exited without listening
                worker.ready.set_result(said == READY)

        loop.add_reader(ready_read, on_ready_pipe)
        self._live[worker] = loop.create_task(self._reap(worker))
        logger.info("started worker %d", worker.pid)
        if self._stopping:  # a signal came while it was being started
            self._tell_to_stop(worker, signal.SIGTERM)
        return worker

    async def _wait_ready(self, worker: Worker) -> bool:
        """Whether `worker` listens within `WORKER_START_TIMEOUT` (else it is killed)."""
        try:
            async with asyncio.timeout(WORKER_START_TIMEOUT):
                return await asyncio.shield(worker.ready)
        except TimeoutError:
            logger.error(
                "worker %d not listening after %.0f s: killing it", worker.pid, WORKER_START_TIMEOUT
            )
            self._tell_to_stop(worker, signal.SIGKILL)
            return False

    def _tell_to_stop(self, worker: Worker, signum: int) -> None:
        worker.told_to_stop = True
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signum)

    async def _reap(self, worker: Worker) -> None:
        """Wait for `worker` to exit; log how; restart its slot if it died unasked."""
        returncode = await worker.process.wait()
        del self._live[worker]
        served = worker.ready.done() and worker.ready.result()
        how = describe_exit(returncode)
        if worker.told_to_stop:
            if served and returncode in (EXIT_WORK_CANCELLED, -signal.SIGKILL):
                self.work_cancelled = True
                logger.warning("worker %d stopped (%s): background work was lost", worker.pid, how)
            elif returncode == EXIT_OK or not served:
                logger.info("worker %d stopped (%s)", worker.pid, how)
            else:
                logger.warning("worker %d stopped (%s)", worker.pid, how)
            return
        slot = self._slots[worker.slot]
        uptime = time.monotonic() - worker.started
        if self._stopping or slot.worker is not worker or not self._serving:
            # a first worker or a replacement that failed to start, or one that
            # exited on its own at shutdown: nothing to restart
            logger.error("worker %d exited (%s) after %.1f s", worker.pid, how, uptime)
            return
        delay = slot.backoff.next_delay(uptime)
        logger.error(
            "worker %d died (%s) after %.1f s: starting another in %.1f s",
            worker.pid,
            how,
            uptime,
            delay,
        )
        self._helper(self._replace_dead(slot, worker, delay))

    async def _replace_dead(self, slot: Slot, dead: Worker, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()
        if self._stopping or slot.worker is not dead:
            return
        slot.worker = await self._start_worker(slot)

    # -- signals, rolling restarts, reload ----------------------------------------------

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self._stopping:
            logger.info(
                "%s: stopping %d worker(s); each drains for up to %g s",
                name,
                len(self._live),
                self._config.timeout_graceful_shutdown,
            )
            self._stopping = True
            self._stop.set()
            self._restart_wanted.set()  # wakes the rolling-restart loop, which ends
        else:
            logger.warning("second %s: the workers cancel their background work now", name)
            for worker in list(self._live):
                self._tell_to_stop(worker, signum)

    async def _rolling_restarts(self) -> None:
        while True:
            await self._restart_wanted.wait()
            self._restart_wanted.clear()
            if self._stopping:
                return
            await self._rolling_restart()

    async def _rolling_restart(self) -> None:
        """Replace the workers one at a time; the old one stops once its replacement listens."""
        logger.info("rolling restart of %d worker(s)", len(self._slots))
        for slot in self._slots:
            if self._stopping:
                return
            new = await self._start_worker(slot)
            if not await self._wait_ready(new):
                self._tell_to_stop(new, signal.SIGKILL)
                logger.error(
                    "new worker %d did not start: rolling restart abandoned, "
                    "the old workers keep serving",
                    new.pid,
                )
                return
            if self._stopping:
                return
            old, slot.worker = slot.worker, new
            if old is not None and old in self._live:
                logger.info(
                    "worker %d replaces worker %d, which drains and stops", new.pid, old.pid
                )
                self._tell_to_stop(old, signal.SIGTERM)
        logger.info("rolling restart done")

    async def _watch_sources(self, root: str, before: dict[str, int]) -> None:
        while not self._stopping:
            await asyncio.sleep(RELOAD_POLL_INTERVAL)
            after = snapshot(root)
            changed = changes(before, after)
            if changed:
                before = after
                shown = ", ".join(os.path.relpath(path, root) for path in changed[:3])
                more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                logger.info("reload: %s%s changed: restarting", shown, more)
                self._restart_wanted.set()

    async def _shutdown(self) -> None:
        """Tell every worker to drain; kill those still alive well past their deadline."""
        self._stopping = True
        for worker in list(self._live):
            if not worker.told_to_stop:
                self._tell_to_stop(worker, signal.SIGTERM)
        if not self._live:
            return
        deadline = self._config.timeout_graceful_shutdown + WORKER_KILL_MARGIN
        _, still_running = await asyncio.wait(list(self._live.values()), timeout=deadline)
        if still_running:
            for worker in list(self._live):
                logger.error(
                    "worker %d still running %.0f s after SIGTERM: killing it", worker.pid, deadline
                )
                self._tell_to_stop(worker, signal.SIGKILL)
            await asyncio.wait(list(self._live.values()))
