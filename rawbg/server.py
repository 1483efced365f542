"""`Server`: the listening socket, the open connections, and graceful shutdown.

The server owns three process-wide things: the count of open connections
(against ``limit_concurrency``), the set of connection tasks (each of which
owns its background work, so waiting for them waits for all work), and the
`PendingWork` bound on queued background tasks.

`run` is the blocking entry point (``python -m rawbg`` ends up there);
`serving` starts a server on a port (0 for an ephemeral one) inside a running
event loop, for tests and embedding.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .background import PendingWork
from .config import ServerConfig
from .connection import run_connection
from .failure_log import task_failures
from .protocol import HttpProtocol

if TYPE_CHECKING:
    from .app import App
    from .connection import Connection

logger = logging.getLogger("rawbg.server")

# The kernel's accept queue: the Linux default somaxconn since 5.4 is 4096;
# 2048 absorbs a burst of new connections without refusing them.
LISTEN_BACKLOG = 2048


class Server:
    """An HTTP/1.1 server for one `App` on one address."""

    def __init__(self, app: App, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        self.pending = PendingWork(config.max_pending_tasks)
        self._listener: asyncio.Server | None = None
        # Connections
        self._open_transports = 0
        self._connections: set[Connection] = set()  # being served, for shutdown
        self._tasks: set[asyncio.Task[None]] = set()  # connection tasks, with their work
        self._forget_task = self._tasks.discard
        self._callback_context = contextvars.copy_context()
        # Shutdown
        self._stopping = False
        self._force = asyncio.Event()

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._listener is None or not self._listener.sockets:
            raise RuntimeError("the server is not listening")
        return int(self._listener.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: HttpProtocol(self),
            host=self.config.host,
            port=self.config.port,
            backlog=LISTEN_BACKLOG,
            reuse_address=True,
        )

    # -- called by protocols and connections -------------------------------------

    def connection_made(self, protocol: HttpProtocol) -> None:
        self._open_transports += 1
        # A connection task can outlive its socket by as long as its background
        # work runs, so what it costs counts per pending task: a shared name
        # (asyncio would format "Task-N" for each), and a done callback bound
        # once and run in one shared context (asyncio would copy one per task).
        task = asyncio.get_running_loop().create_task(
            run_connection(protocol, self), name="rawbg-connection"
        )
        self._tasks.add(task)
        task.add_done_callback(self._forget_task, context=self._callback_context)

    def connection_lost(self, protocol: HttpProtocol) -> None:
        self._open_transports -= 1

    def over_capacity(self) -> bool:
        return self._open_transports > self.config.limit_concurrency

    def register(self, connection: Connection) -> None:
        self._connections.add(connection)
        if self._stopping:
            connection.stop()

    def unregister(self, connection: Connection) -> None:
        self._connections.discard(connection)

    # -- waiting and stopping ----------------------------------------------------

    async def wait_background_idle(self) -> None:
        """Return once no background task is queued or running."""
        await self.pending.wait_idle()

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
        if self._listener is not None:
            self._listener.close()
        self.pending.stop_waiting()
        for connection in list(self._connections):
            connection.stop()
        tasks = set(self._tasks)
        cancelled = 0
        if tasks:
            if self.pending.count:
                logger.info(
                    "waiting up to %.0f s for %d pending background task(s)",
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
        if self._listener is not None:
            self._listener.close()
        task_failures.flush()  # the counts of repeated task failures, before we stop
        return cancelled


@contextlib.asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[Server]:
    """Serve `app` inside the running loop; shut down gracefully on exit.

    ``async with serving(app, port=0) as server: ... server.port ...``
    Options are the fields of `ServerConfig`.
    """
    server = Server(app, ServerConfig(**options))
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


async def serve(app: App, config: ServerConfig) -> int:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; return the exit status."""
    server = Server(app, config)
    await server.start()
    # What exists now (modules, the app, its routes and plans) lives as long as
    # the process. Freezing it keeps it out of the cyclic GC's full
    # collections, whose pauses grow with what they traverse and land on
    # requests in flight (benchmarks/README.md: p99 with pending tasks).
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            logger.warning("second signal: cancelling pending background work now")
            server.force_stop()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"rawbg serving on http://{host}:{server.port} (press Ctrl-C to stop)", flush=True)
    # The handlers stay until asyncio.run closes the loop, so that a late
    # second signal (while the thread pool shuts down) is not a traceback.
    await stop.wait()
    logger.info("shutting down: no new connections, finishing requests and background work")
    await server.shutdown()
    logger.info("shutdown complete")
    return 0


def run(app: App, **options: Any) -> int:
    """Serve `app` until SIGINT/SIGTERM: ``rawbg.run(app, host="0.0.0.0", port=8000)``.

    Options are the fields of `ServerConfig`. Configures basic logging if the
    program has not.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(app, ServerConfig(**options)))
