"""`Acceptor`: accepting connections, and backing off while the process cannot.

Why rawbg accepts connections itself
------------------------------------

asyncio's selector loop accepts in ``BaseSelectorEventLoop._accept_connection``:
each time a listening socket is readable it calls ``accept()`` up to the listen
backlog (2048 here) times. When the process is out of file descriptors
(EMFILE, ENFILE) every one of those calls fails, and each failure is logged
with a traceback and schedules one more restart of accepting a second later.
The pending connections keep the socket readable, so the loop spins at 100 %
CPU, and the log grows by megabytes a second, for as long as descriptors are
short (issue 9: 88,000 tracebacks in 12 s).

An `Acceptor` owns the listening sockets instead, with the loop's public
API only (``add_reader``, ``remove_reader``, ``connect_accepted_socket``):

1. When a socket is readable, it accepts up to `ACCEPT_PER_WAKEUP`
   connections and hands each to the loop, which makes its transport and
   protocol exactly as asyncio's own path does.
2. When ``accept()`` fails for any other reason than "nothing left" or "that
   client gave up", it stops watching every socket and tries again
   `ACCEPT_RETRY_SECONDS` later: one failed system call per retry, not
   thousands. Connections that arrive meanwhile wait in the kernel's accept
   queue, and are served as soon as descriptors are free again.
3. It logs at most one line per `ACCEPT_LOG_INTERVAL`: the first failure at
   once, then the count of failed attempts since the last line, and a line
   when accepting works again after a failure it reported. At the edge of the
   limit accepting flaps (each closed connection lets one more in), and that
   costs no more lines.

The same path serves every loop, so the behaviour does not change with
``--loop``. (uvloop's libuv does not spin on EMFILE, but it accepts and at
once closes every queued connection, and says nothing.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("rawbg.accept")

# Accepting connections (rawbg/server/accept.py). Per wake-up of a listening socket,
# at most 100 accepts: asyncio's own default, a burst is drained in a few loop
# iterations without starving the connections already open.
ACCEPT_PER_WAKEUP = 100

# While accept() fails (out of file descriptors), try again every 0.1 s: ten
# failing system calls a second cost nothing, and a connection waiting in the
# kernel's queue is taken at most 0.1 s after descriptors are free again.
ACCEPT_RETRY_SECONDS = 0.1

# ... and say so at most once every 10 s, with the count of failed attempts.
ACCEPT_LOG_INTERVAL = 10.0


class Acceptor:
    """Accepts connections from listening sockets, each into a protocol from `factory`."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        *,
        per_wakeup: int = ACCEPT_PER_WAKEUP,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets = tuple(sockets)
        self._factory = factory
        self._per_wakeup = per_wakeup
        # Backing off
        self._retry: asyncio.TimerHandle | None = None
        self._failing_since: float | None = None  # monotonic time this episode began
        self._episode_reported = False  # this episode has had its log line
        self._unreported = 0  # failed accept() calls not yet counted in a log line
        self._last_report = -math.inf
        #: accepted connections whose transport and protocol are being made
        #: (shutdown waits for them, so that they are stopped like the rest)
        self.connecting: set[asyncio.Task[None]] = set()
        for sock in self._sockets:
            sock.setblocking(False)
        self._watch()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(sock for sock in self._sockets if sock.fileno() >= 0)

    def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _watch(self) -> None:
        self._retry = None
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        factory = self._factory
        for _ in range(self._per_wakeup):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except ConnectionAbortedError:
                continue  # that client gave up while it was queued: take the next
            except OSError as exc:  # out of descriptors (EMFILE, ENFILE), or memory
                self._back_off(exc)
                return
            if self._failing_since is not None:
                self._recovered()
            # the same task asyncio's own accept path creates for each connection
            # (connect_accepted_socket makes the socket non-blocking)
            task = loop.create_task(_connect(loop, factory, conn), name="rawbg-accept")
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    def _back_off(self, error: OSError) -> None:
        """Stop watching the sockets for `ACCEPT_RETRY_SECONDS`; log at most once an interval."""
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
        self._retry = self._loop.call_later(ACCEPT_RETRY_SECONDS, self._watch)
        now = time.monotonic()
        self._unreported += 1
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_report < ACCEPT_LOG_INTERVAL:
            return  # counted, and said in the next line (at the edge of the limit, it flaps)
        if self._unreported == 1:
            logger.warning(
                "cannot accept connections: %s; new connections wait in the "
                "kernel's queue, retrying every %g s",
                error,
                ACCEPT_RETRY_SECONDS,
            )
        else:
            logger.warning(
                "still cannot accept connections (%s): %d failed attempts in the last %.0f s",
                error,
                self._unreported,
                now - self._last_report,
            )
        self._last_report = now
        self._unreported = 0
        self._episode_reported = True

    def _recovered(self) -> None:
        assert self._failing_since is not None
        if self._episode_reported:
            logger.warning(
                "accepting connections again after %.1f s",
                time.monotonic() - self._failing_since,
            )
        self._failing_since = None
        self._episode_reported = False


async def _connect(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], conn: socket.socket
) -> None:
    try:
        await loop.connect_accepted_socket(factory, conn)
    except OSError as exc:  # the client reset the connection before it was set up
        logger.debug("could not set up an accepted connection: %s", exc)
        conn.close()


async def start_accepting(
    listener: asyncio.Server, factory: Callable[[], asyncio.Protocol], *, backlog: int
) -> Acceptor:
    """Listen on `listener`'s sockets (bound with ``start_serving=False``) and accept.

    The loop's server only binds (its address resolution, IPv4 and IPv6): an
    `Acceptor` takes copies of its sockets, and it is closed.
    """
    sockets = [socket.socket(fileno=os.dup(sock.fileno())) for sock in listener.sockets]
    listener.close()  # closes its own copies; ours stay open
    for sock in sockets:
        sock.listen(backlog)  # the loop would have, when it started serving
    return Acceptor(sockets, factory)
