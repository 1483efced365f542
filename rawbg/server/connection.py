"""The connection task: the request/response cycle of one connection, and its background work.

The life of one request
-----------------------

The same ten steps as docs/ARCHITECTURE.md's "The life of one request", seen
from the connection task:

1. **Accept.** asyncio accepts the socket and calls `HttpProtocol.connection_made`;
   the server starts one task for the connection, running `run_connection`,
   which calls `Connection.serve`; its loop is `Connection._cycle`. The
   connection never sees the socket: it talks to a `ConnectionIO`
   (rawbg/wire/connection_io.py), which `HttpProtocol` is.
2. **Bytes in.** `HttpProtocol.data_received` feeds every chunk to the
   connection's `h11.Connection` and wakes the task. If the task is waiting
   between requests, the callback instead runs 3-8 itself, as the task, until
   the request has to wait for something (`Connection.serve_arrived`,
   rawbg/server/arrival.py); a wait on an asyncio future goes on where the
   future calls back, still as the task (`Connection._resumed_here`).
3. **Request head.** The task asks h11 for the next event
   (`Connection._receive_request`). While no byte has arrived it waits at most
   ``timeout_keep_alive``, then closes quietly (`_wait_for_request`); once the
   first byte is in, the whole head must arrive within ``timeout_keep_alive``
   of it, or it answers 408 (`_complete_head`). The head is checked
   (`_check_head`): size, version, Host, ambiguous length, declared body size.
4. **Request body.** Not read here: the `Request` gets a
   `BodyReader` (rawbg/server/request_body.py) that reads it from h11 as the
   app asks (most routes read it whole before their handler; forms, uploads
   and ``request.stream()`` piece by piece), sending ``100 Continue`` at the
   first read, refusing with 413 what is larger than the route's
   ``max_body_size``, and with 408 a body that stalls or arrives slower than
   ``min_body_rate`` (`_body_deadline`). A request with no body has no reader.
   After the response, the rest of a body the app left is dropped if small,
   or the connection closes (`_finish_body`).
5. **Middleware, route and dependencies.** `App.handle` runs the middleware,
   routes the request and walks the handler's dependency plan.
6. **Handler.** `App.handle` calls the handler and returns an `Outcome`: the
   response and an `AfterResponse`, the queued background tasks and the
   request-scoped dependency clean-up.
7. **Response.** The task reserves the background work with the process-wide
   `PendingWork` count; with a task journal, it waits until the durable tasks
   are committed (`_record_work`: a 503 instead if they cannot be); then it
   writes the response (`_send`) and waits until the transport has handed
   every byte to the kernel (`HttpProtocol.flushed`).
8. **Background work.** Only now does the `AfterResponse` start, as a child of
   the connection task in its `WorkGroup` (made by the first request that
   needs it; `_start_work`): its tasks one after another, then the clean-up.
   The cycle does not wait for it. (If the connection is about to close,
   there is no next cycle: `serve` returns the work and the connection task
   runs it itself once the socket is closed.)
9. **Next cycle.** If HTTP allows another request on the connection
   (`http_allows_another`) and the server is not stopping, the `Phase` goes
   back to IDLE (`_next_cycle`) and we are back at 3, while step 8 of the
   previous request may still be running. Otherwise the phase becomes
   CLOSING, as on every other way out (`_closing`).
10. **Close and drain.** `serve` closes the transport and returns;
    `run_connection` then waits for the connection's remaining background
    work (`WorkGroup.wait`). Only then does the connection task end: no task
    outlives the connection task, and shutdown can wait for (or cancel) all
    of them by waiting for the connection tasks.

Requests the server refuses (malformed, too large, too slow) raise a
`RequestRejected` anywhere in 3-4; `Connection._reject` is the one place that
answers them, then closes without resetting the connection. Errors of the app
(5-6) are answered by `App.handle`, and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Protocol

import h11

from rawbg.app.application import Outcome
from rawbg.culprits import STOP, Part, name_every_method, names_frames
from rawbg.errors import (
    BodyTooLarge,
    ClientDisconnected,
    HeadTooLarge,
    MalformedRequest,
    RequestRejected,
    RequestTimeout,
    ServerBusy,
)
from rawbg.reason_phrases import reason
from rawbg.requests import Headers, Request, client_label
from rawbg.responses import PlainTextResponse, Response, StreamingResponse
from rawbg.server.arrival import HANDED_OVER, PARKED, SERVING_HERE, Arrival, hand_over
from rawbg.server.request_body import BodyReader
from rawbg.tasks.journal.store import JournalUnavailable
from rawbg.tasks.work_group import WorkGroup
from rawbg.trace import ConnectionTrace, RequestTrace
from rawbg.wire.conformance import (
    asterisk_options_response,
    check_host,
    check_request_line,
    parse_error_rejection,
)
from rawbg.wire.proxy import forwarded
from rawbg.wire.raw_input import (
    MAX_METHOD_LENGTH,
    ChunkedScanner,
    HeadScanner,
    check_head_bytes,
    content_length_problem,
    head_may_be_malformed,
    values_problem,
)
from rawbg.wire.response_bytes import events_to_bytes, response_start, send_whole_response

if TYPE_CHECKING:
    from rawbg.app.application import App
    from rawbg.server.config import ServerConfig
    from rawbg.tasks.after_response import AfterResponse
    from rawbg.tasks.journal.writer import JournalWriter
    from rawbg.tasks.pending import PendingWork
    from rawbg.wire.connection_io import ConnectionIO

logger = logging.getLogger("rawbg.connection")
access_logger = logging.getLogger("rawbg.access")

# At shutdown, a connection accepted but with no request yet is given this long
# for its request to arrive instead of being closed at once: the client sent
# it right after the handshake, so it is at most a round trip away, and closing
# would lose it (a worker replaced in a rolling restart accepts until the last
# moment). An idle keep-alive connection that already served a request is closed
# at once, as HTTP allows (its client retries an idempotent request).
SHUTDOWN_FIRST_REQUEST_GRACE = 0.25

SERVER_HEADER = (b"server", b"rawbg")
CLOSE_HEADER = (b"connection", b"close")


class Phase(enum.Enum):
    """Where a connection is in its request/response cycle.

    The connection's own model, and what its loop runs on: `Connection._cycle`
    goes round until the phase is CLOSING, and every way a connection ends
    enters CLOSING first (`Connection._closing`), saying why. h11 is asked
    one thing only, at the end of a response: whether HTTP lets the
    connection carry another request (`http_allows_another`).
    """

    IDLE = "waiting for a request"
    READING_HEAD = "reading a request head"
    READING_BODY = "reading a request body"  # the app waits for more of it
    HANDLING = "running the handler"
    RESPONDING = "sending the response"
    CLOSING = "closing"

    __hash__ = object.__hash__  # a C-level hash (docs/ARCHITECTURE.md, "Why": the hot path)


# The members under their own names: ``Phase.IDLE`` runs an Enum descriptor
# at each use (docs/ARCHITECTURE.md, "The request path, line by line").
IDLE, READING_HEAD, READING_BODY, HANDLING, RESPONDING, CLOSING = Phase

#: the legal moves between phases; any other is a bug and raises
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    IDLE: frozenset({READING_HEAD, CLOSING}),
    READING_HEAD: frozenset({READING_BODY, CLOSING}),
    READING_BODY: frozenset({HANDLING, CLOSING}),
    HANDLING: frozenset({READING_BODY, RESPONDING, CLOSING}),
    RESPONDING: frozenset({IDLE, CLOSING}),
    CLOSING: frozenset(),
}


class ConnectionHost(Protocol):
    """What a connection asks of the server it belongs to (`rawbg.server.Server` is one)."""

    config: ServerConfig
    #: turns a request into a response and the work left after it
    app: App
    #: the process-wide bound on queued background tasks
    pending: PendingWork
    #: with ``--task-journal``: where durable tasks are committed before the response
    journal: JournalWriter | None

    def new_trace(self) -> ConnectionTrace | None:
        """A trace for a new connection, or None when tracing is off."""
        ...

    def register(self, connection: Connection) -> None:
        """The connection is served: shutdown must stop it."""
        ...

    def unregister(self, connection: Connection) -> None:
        """The connection is closed (its background work may go on)."""
        ...

    def over_capacity(self) -> bool:
        """More connections are open than ``limit_concurrency`` and no room could be
        made (by cutting a body far behind ``min_body_rate``): refuse this one."""
        ...


@dataclass(slots=True)
class Exchange:
    """Per-request state: the request, its trace, when its head was parsed, its body."""

    request: Request
    trace: RequestTrace | None
    started: float  # time.perf_counter() when the head was parsed, for the access log
    body: BodyReader | None  # None: the request has no body


@names_frames(lambda frame: STOP)  # the loop-block watchdog: no user code beyond here
async def run_connection(
    io: ConnectionIO, server: ConnectionHost, context: contextvars.Context | None = None
) -> None:
    """The connection task: serve requests, then wait for their background work.

    `context` is the one the task runs in; given it, requests that arrive while
    the task waits are served at once, as this task (`Connection.serve_arrived`).
    The work of a closing connection's last request runs right here, once the
    socket side is dropped (the `del`s: docs/ARCHITECTURE.md, "A pending task
    keeps little").
    """
    trace = server.new_trace()
    connection = Connection(io, server, trace, context)
    del io
    try:
        last = await connection.serve()
    except asyncio.CancelledError:  # shutdown gave up waiting: cancel the work too
        await connection.cancel_work()
        raise
    work = connection.work
    del connection
    try:
        if last is not None:
            await last  # logs its failures and releases its count itself
            del last
        if work is not None:
            await work.wait()
    except asyncio.CancelledError:
        if work is not None:
            work.cancel()
            await work.wait()
        raise
    if trace is not None:
        trace.event("connection task done", note="all background work finished")


class Connection:
    """The request/response cycle of one connection, run by its connection task."""

    def __init__(
        self,
        io: ConnectionIO,
        server: ConnectionHost,
        trace: ConnectionTrace | None,
        context: contextvars.Context | None = None,
    ) -> None:
        # Collaborators
        self._io = io
        self._h11 = io.h11
        self._server = server
        self._config = server.config
        self._app = server.app
        self._pending = server.pending
        self._journal = server.journal
        self._trace = trace
        # Per-connection state
        self.phase = IDLE
        #: background work of requests answered on the open connection; made
        #: by the first of them (most connections of one request never need it)
        self.work: WorkGroup | None = None
        #: the last request's work, when the connection closes after it
        self._last_work: AfterResponse | None = None
        self._stopping = False  # set by shutdown: finish the current request, then close
        #: set by shutdown: a body still being read must be complete by then
        self._stop_deadline: float | None = None
        #: set by the server at its connection limit: this body is cut now (408)
        self._cut_to_make_room = False
        #: no request yet: at shutdown it gets SHUTDOWN_FIRST_REQUEST_GRACE to send one
        self._fresh = True
        self._first_request_deadline = 0.0
        #: until when the task waits for the next request while the connection is idle
        self._idle_deadline = 0.0
        #: serving a request where it arrives, as this task (`serve_arrived`);
        #: None with ``--no-serve-on-arrival`` (or no context): only the task serves
        self._arrival: Arrival | None = None
        task = asyncio.current_task()
        if context is not None and task is not None and server.config.serve_on_arrival:
            self._arrival = Arrival(task, context)
        # Per-request state
        self._request_method: bytes | None = None  # once the head is parsed
        self._content_length: int | None = None  # the head's Content-Length, if any
        self._head_kept = False  # `_next_event` has copied the input of this head
        #: that copy (raw_input.check_head_bytes reads the head in it)
        self._raw_head = b""
        #: the head trickled in and a `HeadScanner` checked its bytes as they came
        self._head_scanned = False
        self._chunked = False  # the body is chunked: a `ChunkedScanner` follows it
        self._chunk_scanner: ChunkedScanner | None = None
        #: the body being read, as the rate rule last saw it: its start (loop
        #: time, less what the app spent) and how much so far (`body_lag`)
        self._body_started = 0.0
        self._body_received = 0
        self._close_reason = ""  # said by `_closing`

    def _move(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise RuntimeError(f"illegal connection phase change {self.phase.name} -> {phase.name}")
        self.phase = phase

    def _closing(self, why: str) -> None:
        """Every end of the connection comes here first: enter CLOSING (once), saying why."""
        if self.phase is not CLOSING:
            self._move(CLOSING)
            self._close_reason = why

    @property
    def io(self) -> ConnectionIO:
        """The transport side this connection reads from and writes to."""
        return self._io

    def stop(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response.

        A connection that has not sent its first request yet was accepted a
        moment ago, and its request is on its way (a worker being replaced
        still accepted it): it gets `SHUTDOWN_FIRST_REQUEST_GRACE` to arrive.

        A request whose body is still arriving gets ``timeout_keep_alive`` more
        to complete it, then 408: a slow sender cannot hold shutdown for long.
        """
        self._stopping = True
        if self._fresh:
            loop_time = asyncio.get_running_loop().time()
            self._first_request_deadline = loop_time + SHUTDOWN_FIRST_REQUEST_GRACE
        if self.phase is IDLE:
            self._io.wake()
        else:
            timeout = self._config.timeout_keep_alive
            self._stop_deadline = asyncio.get_running_loop().time() + timeout

    def body_lag(self, now: float) -> float:
        """How many bytes the body being read is behind ``min_body_rate`` (0 if none is).

        Counted from the end of its head, without the grace the rate rule
        gives: a body trickled in far slower than the rate is far behind
        long before the rule cuts it.
        """
        rate = self._config.min_body_rate
        if self.phase is not READING_BODY or not rate or self._cut_to_make_room:
            return 0.0
        return (now - self._body_started) * rate - self._body_received

    def cut_to_make_room(self) -> None:
        """The server is at its connection limit: refuse this slow body now (408)."""
        self._cut_to_make_room = True
        self._io.wake()

    # -- the cycle ---------------------------------------------------------------

    async def serve(self) -> AfterResponse | None:
        """Serve the connection until it closes.

        Returns the work of its last request if that request closed it: the
        connection task runs it once the socket side is gone.
        """
        trace = self._trace
        if trace is not None:
            trace.event("connection accepted", client=client_label(self._io.client))
        self._server.register(self)
        if self._arrival is not None:
            self._io.serve_arrived = self.serve_arrived
        try:
            try:
                await self._cycle()
            except RequestRejected as exc:
                await self._reject(exc)
        except ClientDisconnected:
            self._closing("client went away")
        except Exception:
            # A bug in rawbg itself: log it, but keep the background work alive.
            logger.exception("connection task failed while %s", self.phase.value)
            self._closing("internal error")
        finally:
            self._closing("connection task cancelled")  # no-op unless a forced shutdown
            self._io.serve_arrived = None  # and with it the reference back to this connection
            self._server.unregister(self)
            self._io.close()
            if trace is not None:
                trace.event("connection closed", why=self._close_reason)
        last, self._last_work = self._last_work, None
        return last

    async def cancel_work(self) -> None:
        """Cancel the background work started so far, and wait for it to end.

        Work that had not started (its response was cancelled mid-write)
        does not run its tasks, but its dependency clean-up still runs.
        """
        if self._last_work is not None:
            after, self._last_work = self._last_work, None
            after.discard()
            await after  # only the clean-up is left
        if self.work is not None:
            self.work.cancel()
            await self.work.wait()

    async def _cycle(self) -> None:
        """Request after request, until the connection is CLOSING."""
        if self._server.over_capacity():
            raise ServerBusy("server at its connection limit, try again later")
        while True:
            # a request begun where it arrived goes on first, even into CLOSING:
            # it may still have to raise, or to finish its response
            arrival = self._arrival
            if arrival is not None and arrival.state is HANDED_OVER:
                handed_over = arrival.take_handed_over()
                if handed_over is not None:
                    await handed_over
                continue
            if self.phase is CLOSING:
                return
            if not self._pending.has_room:
                await self._wait_for_room()
            await self._serve_one()

    async def _serve_one(self) -> None:
        """Receive a request and answer it: one turn of the cycle."""
        exchange = await self._receive_request()
        if exchange is not None:
            await self._respond(exchange)  # ends in IDLE (keep-alive) or CLOSING

    def serve_arrived(self) -> bool:
        """Serve the request whose bytes just arrived, here and now, as the connection task.

        Called by the I/O side when input arrives while the task waits for it
        (instead of waking it); True if the task can go on waiting for the
        next request. Only where the task waits between requests, with room
        for more work and no shutdown under way. The request runs in the
        task's context with the task current (`Arrival.serve`); if it awaits a
        future, it goes on here once that is done (`_resumed_here`); if it has
        to wait for anything else, the task is woken to continue it from there.
        docs/ARCHITECTURE.md, "Serving a request as it arrives".
        """
        arrival = self._arrival
        if arrival is None or self._stopping or not self._pending.has_room:
            return False
        if arrival.state is PARKED:  # input while a request waits here: the task takes both
            return False
        if not arrival.serve(self._serve_one):
            if arrival.state is PARKED:  # on a future: the task sleeps on
                arrival.then(self._resumed_here)
                return True
            return False  # handed over (or not begun): the task is woken
        return self._served_here(arrival)

    def _served_here(self, arrival: Arrival) -> bool:
        """A request served where it arrived has ended: True if the task may go on waiting."""
        if self.phase is not IDLE or self._h11.trailing_data[0]:
            # closing, or the next request is here already: the task takes it from here
            arrival.finished(task_waits_on=False)
            return False
        arrival.finished(task_waits_on=True)
        self._idle_deadline = arrival.loop.time() + self._config.timeout_keep_alive
        self._io.extend_wait(self._idle_deadline)
        return True

    def _resumed_here(self, ended: bool) -> None:
        """A parked request took a step where its future called back (`Arrival._resume`)."""
        arrival = self._arrival
        assert arrival is not None
        if arrival.state is PARKED or (ended and self._served_here(arrival)):
            return  # waiting on its next future, or served: the task sleeps on
        self._io.wake()  # handed over, or served but the task must go on from there

    async def _receive_until(self, deadline: float) -> bool:
        """`ConnectionIO.receive_until`; a request begun where it arrived goes to the task first.

        After the hand-over it returns at once, as if input had come: input
        may well have come before the task took over, and the caller looks
        for it before it waits.
        """
        if self._serving_here():
            await hand_over()
            return True
        return await self._io.receive_until(deadline)

    def _serving_here(self) -> bool:
        """Is the request being stepped outside the task (`serve_arrived`, `_resumed_here`)?

        Then it must hand itself to the task (`hand_over`) before it waits for
        the client's input: the protocol has one input waiter, and the task's
        own wait for the next request holds it."""
        arrival = self._arrival
        return arrival is not None and arrival.state is SERVING_HERE

    def _next_cycle(self) -> None:
        """Keep-alive: h11 and the per-request state start over for the next request."""
        self._h11.start_next_cycle()
        self._request_method = None
        self._content_length = None
        self._head_kept = False
        self._raw_head = b""
        self._head_scanned = False
        self._end_chunk_scan()
        self._move(IDLE)
        if self._trace is not None:
            self._trace.event("keep-alive: next cycle")

    async def _wait_for_room(self) -> None:
        logger.debug("pending background work at its limit: not reading new requests")
        if self._trace is not None:
            self._trace.event(
                "waiting: too much pending background work", pending=self._pending.count
            )
        await self._pending.wait_for_room()

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA]:
        """h11's next event; the one place where whatever h11 raises becomes a refusal."""
        h = self._h11
        if not self._head_kept and (
            self.phase is READING_HEAD or (self.phase is IDLE and self._io.has_input)
        ):
            # for `check_head_bytes`, and `conformance.transfer_coding_rejection`
            # (400 or 501): once per head
            self._raw_head = h.trailing_data[0]
            self._head_kept = True
        try:
            return h.next_event()  # type: ignore[return-value]
        except Exception as exc:  # RemoteProtocolError, or anything else h11 lets out
            raise parse_error_rejection(exc, self._raw_head) from exc

    async def _receive_request(self) -> Exchange | None:
        """Wait for the next request and read it whole; None when the connection should close.

        Steps 3 and 4 of the module's docstring: wait while the connection is
        idle (`_wait_for_request`), then the head (its deadline, `_check_head`),
        then the body's reader (`_start_body`), then the `Request` (with what
        trusted proxy headers say of the client).
        """
        event = self._next_event()
        if event is h11.NEED_DATA:
            if not await self._wait_for_request():
                return None
            self._move(READING_HEAD)
            event = self._next_event()
            if event is h11.NEED_DATA:  # only part of the head is here: wait, with a deadline
                event = await self._complete_head(self._io.head_started_at)
        else:
            self._move(READING_HEAD)
        if type(event) is h11.ConnectionClosed:
            self._closing("client closed the connection")
            return None
        if type(event) is not h11.Request:
            raise MalformedRequest(f"expected a request, got {type(event).__name__}")
        self._request_method = event.method  # a refusal of a HEAD has no body
        started = time.perf_counter()
        self._fresh = False
        fields = self._check_head(event)
        trace = (
            None if self._trace is None else self._trace.request_started(event.method, event.target)
        )
        self._move(READING_BODY)
        body, reader = self._start_body()
        io, config = self._io, self._config
        client, scheme = config.client_address or io.client, io.scheme
        if io.proxy is not None:
            client, scheme = forwarded(io.proxy, fields, client, scheme)
        request = Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=Headers(fields),
            body=body,
            source=reader,
            http_version=event.http_version.decode("ascii"),
            client=client,
            scheme=scheme,
            root_path=config.root_path,
            body_limit=config.max_body_size,
        )
        return Exchange(request, trace, started, reader)

    async def _wait_for_request(self) -> bool:
        """While not one byte of a request has arrived: wait for one, at most
        ``timeout_keep_alive`` (less during a shutdown). False when the
        connection should close instead, or when the request was served where it
        arrived meanwhile (`serve_arrived`: the cycle goes on from there).
        """
        io, arrival = self._io, self._arrival
        timeout = self._config.timeout_keep_alive
        self._idle_deadline = asyncio.get_running_loop().time() + timeout
        while not io.has_input:
            if self._stopping:
                if not self._fresh:
                    self._closing("server shutting down")
                    return False
                self._idle_deadline = min(self._idle_deadline, self._first_request_deadline)
                io.bring_deadline_forward(self._idle_deadline)
            if arrival is None:
                received = await io.receive_until(self._idle_deadline)
            else:
                if arrival.state is SERVING_HERE:  # the task waits, not `serve_arrived`
                    await hand_over()
                    continue
                arrival.task_waits()
                try:
                    received = await io.receive_until(self._idle_deadline)
                except BaseException as exc:
                    if arrival.state is not PARKED:
                        raise
                    # A request waits here on a future (parked): the task takes it
                    # over, and a cancellation of the task is the request's, as if
                    # the task had been awaiting that future (`Arrival.unpark`).
                    cancelled = isinstance(exc, asyncio.CancelledError)
                    arrival.unpark(exc if cancelled else None)
                    if not (cancelled or isinstance(exc, Exception)):
                        raise  # KeyboardInterrupt, SystemExit
                    received = True  # (the connection lost: the request will see it)
                finally:
                    served_meanwhile = arrival.task_woke()
                if served_meanwhile:
                    return False
            if not received:
                if self._h11.trailing_data[0]:
                    # Part of a head came pipelined behind the last request:
                    # this connection is not idle, its head is late.
                    raise RequestTimeout(f"request head not received within {timeout} s")
                self._closing("server shutting down" if self._stopping else f"idle for {timeout} s")
                return False
        if not self._pending.has_room:  # the bound was reached while we were idle
            await self._wait_for_room()
            io.restart_head_clock()  # the wait was ours, not the client's
        return True

    async def _complete_head(self, first_byte_at: float) -> h11.Event:
        """Read until h11 has the whole head; it must arrive by first byte + keep-alive timeout.

        The deadline is fixed when the first byte arrives: bytes trickling in
        do not extend it, so a slow client cannot hold the connection forever.
        What arrived by the deadline is parsed before the deadline is applied.
        """
        timeout = self._config.timeout_keep_alive
        deadline = first_byte_at + timeout
        loop = asyncio.get_running_loop()
        # What is here, then each piece as it comes, is checked as it comes:
        # bytes that cannot begin a request are refused now, not at the deadline.
        scanner = HeadScanner()
        scanner.feed(self._h11.trailing_data[0])
        self._head_scanned = True
        io = self._io
        io.scanner = scanner
        try:
            while True:
                if scanner.error is not None:
                    raise MalformedRequest(scanner.error)
                event = self._next_event()
                if event is not h11.NEED_DATA:
                    return event  # type: ignore[return-value]
                if loop.time() >= deadline or not await self._receive_until(deadline):
                    raise RequestTimeout(f"request head not received within {timeout} s")
        finally:
            io.scanner = None

    def _check_head(self, request: h11.Request) -> list[tuple[bytes, bytes]]:
        """Limits h11 does not enforce on a complete head, and the declared body size.

        Returns the fields with lower-case names, as a list (what iterating
        h11's headers gives, at a fraction of the cost: docs/ARCHITECTURE.md,
        "The request path, line by line").
        """
        # h11 bounds its buffer only while a head is incomplete; a large head
        # that arrived in one read slips past it, so measure the head here.
        size = len(request.method) + len(request.target) + 13  # " " + " HTTP/1.1\r\n" + "\r\n"
        content_length: int | None = None
        chunked = False
        host: bytes | None = None
        fields: list[tuple[bytes, bytes]] = []
        for raw_name, value in request.headers.raw_items():
            size += len(raw_name) + len(value) + 4  # ": " and "\r\n"
            name = raw_name.lower()
            fields.append((name, value))
            if name == b"content-length":
                content_length = int(value)  # h11 has checked it is digits
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"host":
                host = value  # h11 has refused two of them
        if not self._head_scanned:  # control characters, obs-fold (raw_input.py)
            raw = self._raw_head
            if not raw:  # no copy of this head (pipelined): its values
                problem = values_problem(fields)
            elif head_may_be_malformed(raw):  # the cheap screen, then the exact check
                problem = check_head_bytes(raw) or None  # (the copy holds the whole head)
            else:
                problem = None
            if problem is not None:
                raise MalformedRequest(problem)
        if size > self._config.max_head_size:
            if len(request.method) > MAX_METHOD_LENGTH:
                raise MalformedRequest(f"request method longer than {MAX_METHOD_LENGTH} bytes")
            raise HeadTooLarge(f"request head of {size} bytes exceeds {self._config.max_head_size}")
        if request.http_version != b"1.1" or request.target == b"*" or request.method == b"CONNECT":
            check_request_line(
                request.method, request.target, request.http_version, has_host=host is not None
            )
        if host is not None:
            check_host(host)
        if content_length is not None and chunked:
            # RFC 9112 6.1: a server may reject it, and it is the request-smuggling shape
            raise MalformedRequest("both Content-Length and Transfer-Encoding")
        self._chunked = chunked
        if content_length is not None and content_length > self._config.max_body_size:
            overflow = content_length_problem(content_length)
            if overflow is not None:
                raise MalformedRequest(overflow)
            # no route takes that much; what a route takes is checked when it reads
            ceiling = max(self._config.max_body_size, self._app.largest_max_body_size)
            if content_length > ceiling:
                raise BodyTooLarge(f"body of {content_length} bytes exceeds {ceiling}")
        self._content_length = content_length
        return fields

    def _start_body(self) -> tuple[bytes, BodyReader | None]:
        """The request's body as far as h11 already has it: ``(body, None)`` when that is
        all of it (none, or a small body that came with its head: the common cases),
        else ``(b"", reader)``, a reader the app takes the rest with (`BodyReader`).

        Nothing is read from the socket here; what h11 buffered is at most what
        flow control lets in, well under ``max_body_size``.
        """
        h = self._h11
        expects_continue = h.they_are_waiting_for_100_continue
        if self._chunked:  # chunk lines checked as the bytes pass into h11 (raw_input.py)
            scanner = self._chunk_scanner = ChunkedScanner()
            scanner.feed(h.trailing_data[0])  # what came with the head: h11 has read none yet
            self._io.scanner = scanner
        event = self.next_body_event()
        if type(event) is h11.EndOfMessage:
            self._io.request_received()
            return b"", None  # the commonest case: no body at all
        pieces: list[bytes] = []
        while type(event) is h11.Data:
            pieces.append(event.data)
            event = self._next_event()
        if type(event) is h11.EndOfMessage:
            self._io.request_received()
            return b"".join(pieces), None  # the whole body came with the head
        if event is not h11.NEED_DATA:
            raise MalformedRequest(f"unexpected {type(event).__name__} in a request body")
        reader = BodyReader(
            self,
            b"".join(pieces),
            limit=self._config.max_body_size,
            declared=self._content_length,
            expects_continue=expects_continue,
        )
        return b"", reader

    # -- what a BodyReader asks of its connection (rawbg.server.request_body.BodyWire) --

    def next_body_event(self) -> h11.Event | type[h11.NEED_DATA]:
        event = self._next_event()
        scanner = self._chunk_scanner
        if scanner is not None and scanner.error is not None:
            raise MalformedRequest(scanner.error)
        return event

    async def wait_for_body(self, deadline: float) -> bool:
        if self.phase is not HANDLING:  # draining after the response: no phase of its own
            return await self._receive_until(deadline)
        self._move(READING_BODY)  # the handler waits for the client
        try:
            return await self._receive_until(deadline)
        finally:
            if self.phase is READING_BODY:
                self._move(HANDLING)

    def body_deadline(self, started: float, received: int, now: float) -> tuple[float, str]:
        self._body_started, self._body_received = started, received  # for `body_lag`
        return self._body_deadline(started, received, now)

    def send_continue(self) -> None:
        h = self._h11
        if h.they_are_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[], reason=reason(100))
            self._io.write(events_to_bytes(h, go_on))

    def body_complete(self) -> None:
        self._io.request_received()
        self._end_chunk_scan()

    def _end_chunk_scan(self) -> None:
        if self._chunk_scanner is not None:
            self._chunk_scanner = None
            self._io.scanner = None

    async def _finish_body(self, body: BodyReader) -> None:
        """After the response: the rest of a body the app did not read (`BodyReader.end`).

        A small rest is read and dropped, so that the connection can carry the
        next request; otherwise (too much left, too slow, malformed, or a
        client still waiting for ``100 Continue``) the connection closes,
        lingering so that the client reads the response first.
        """
        try:
            drained = await body.drain()
        except RequestRejected:
            drained = False
        if not drained:
            self._closing("request body not read by the app")
            if self._serving_here():  # the linger waits for the client's input
                await hand_over()
            await self._io.close_gracefully()

    def _body_deadline(self, started: float, received: int, now: float) -> tuple[float, str]:
        """When the body being read must have grown by, and the rule that says so.

        Three rules, the earliest wins (docs/server-behavior.md, request bodies):
        a stall of ``timeout_keep_alive`` with no byte; an average rate under
        ``min_body_rate`` once the grace of ``timeout_keep_alive`` is over (a
        body trickled in byte by byte must not hold a connection forever); and,
        once shutdown has begun, ``timeout_keep_alive`` after it.
        """
        config = self._config
        grace = config.timeout_keep_alive
        deadline = now + grace
        rule = f"request body stalled for {grace} s"
        if config.min_body_rate:
            by_rate = started + grace + received / config.min_body_rate
            if by_rate < deadline:
                deadline = by_rate
                rule = (
                    f"request body too slow: {received} bytes in {now - started:.1f} s, "
                    f"under {config.min_body_rate:g} bytes/s"
                )
        if self._cut_to_make_room:
            return now, (
                f"request body too slow: {received} bytes in {now - started:.1f} s, "
                f"cut to make room at the connection limit"
            )
        stop_deadline = self._stop_deadline
        if stop_deadline is not None and stop_deadline < deadline:
            deadline = stop_deadline
            rule = "request body not complete when the server shut down"
        return deadline, rule

    async def _respond(self, exchange: Exchange) -> None:
        """Handle the request, send the response, start its background work.

        Ends in IDLE if the connection carries another request, else in CLOSING.
        """
        request, trace = exchange.request, exchange.trace
        self._move(HANDLING)
        if request.target == "*":  # OPTIONS *, the one asterisk-form request let through
            outcome = Outcome(asterisk_options_response(self._app.served_methods()))
        else:
            outcome = await self._app.handle(request, trace)
        response, after, fields = outcome.response, outcome.after, outcome.fields
        if after is not None:
            # Counted before the first byte goes out, so that a client that has
            # read the response can already see the work as pending.
            after.reserve(self._pending, trace)
        self._move(RESPONDING)
        sent = 0
        try:
            if after is not None and self._journal is not None:
                recorded = await self._record_work(self._journal, after, trace, response)
                if recorded is not response:
                    response, fields = recorded, None
            if trace is not None:
                trace.event("response started", status=response.status_code)
            sent = await self._send(exchange, response, fields)
            if trace is not None:
                trace.event("response flushed", status=response.status_code, bytes=sent)
            body = exchange.body
            if body is not None and not body.end():
                await self._finish_body(body)
        except ClientDisconnected:
            self._closing("client went away before the response was sent")
        except Exception:
            # The response had started (a streaming body failed): all we can
            # do is close, so that the client sees a truncated response.
            logger.exception("response body of %s %s failed", request.method, request.path)
            self._closing("response body failed")
            if after is not None:
                after.discard()
        except asyncio.CancelledError:  # a forced shutdown, in the middle of the response
            if after is not None:
                self._last_work = after  # `cancel_work` releases it and cleans up
            raise
        else:
            if self.phase is CLOSING:
                pass  # `_finish_body` closed it
            elif self._stopping:
                self._closing("server shutting down")
            elif not http_allows_another(self._h11):
                self._closing("no keep-alive")
        keep_alive = self.phase is RESPONDING
        if after is not None:
            self._start_work(after, trace, keep_alive=keep_alive)
        if self._config.access_log:
            self._log_access(request, response.status_code, sent, exchange.started)
        if keep_alive:
            self._next_cycle()

    async def _record_work(
        self,
        journal: JournalWriter,
        after: AfterResponse,
        trace: RequestTrace | None,
        response: Response,
    ) -> Response:
        """With a task journal: commit the durable tasks before the response's first byte.

        A client that sees a 2xx knows its tasks are recorded. If they cannot
        be, the client gets a 503 instead and the tasks are not queued:
        nothing is acknowledged that is not kept.
        """
        try:
            await after.record(journal, trace)
        except JournalUnavailable as exc:
            after.discard(f"the task journal could not record them ({exc})")
            return PlainTextResponse(
                "Service Unavailable: the background work of this request cannot be "
                "recorded; try again later\n",
                status_code=503,
                headers={"retry-after": "1"},
            )
        except TypeError:  # a durable task made outside a request that cannot be journaled
            logger.exception("the background tasks of %s cannot be journaled", after.label)
            after.discard("they cannot be journaled")
            return PlainTextResponse("Internal Server Error", status_code=500)
        return response

    def _start_work(
        self, after: AfterResponse, trace: RequestTrace | None, *, keep_alive: bool
    ) -> None:
        """Step 8: the request's work starts only now, owned by this connection task.

        On a connection that stays open it runs as a child of the connection
        task (`WorkGroup`), so the next request is not held back. On a connection about
        to close there is no next request: the connection task runs it itself
        once the socket is closed (`run_connection`), which saves a task per
        connection for clients that open one connection per request.
        """
        if trace is not None:
            trace.event("background work scheduled", tasks=len(after.tasks))
        if keep_alive:
            if self.work is None:
                self.work = WorkGroup()
            self.work.start(after)
        else:
            self._last_work = after

    async def _send(
        self, exchange: Exchange, response: Response, fields: list[tuple[bytes, bytes]] | None
    ) -> int:
        """Write the response through h11 and wait until it is flushed; return its size.

        `fields` is the response's head as `App.handle` made and checked it
        (None for a response of the server's own, made here).
        """
        io = self._io
        if fields is None:
            fields = response.head_fields()
        fields.append(date_header())
        fields.append(SERVER_HEADER)
        if self._stopping or (exchange.body is not None and exchange.body.will_not_drain()):
            fields.append(CLOSE_HEADER)
        status = response.status_code
        streaming = isinstance(response, StreamingResponse)
        if response.own_fields_only and not streaming:
            # the common case, without h11's serialising (rawbg.wire.response_bytes)
            message = send_whole_response(
                self._h11,
                status_code=status,
                reason=reason(status),
                fields=fields,
                body=response.body,
            )
            if message is not None:
                io.write(message)
                await io.flushed()
                return len(message)
        # every field is checked already (`Response.head_fields`): h11 need not again
        start = response_start(status, reason(status), fields, checked=True)
        has_body = exchange.request.method != "HEAD" and status not in (204, 304)
        if has_body and isinstance(response, StreamingResponse):
            return await self._stream(start, response)
        body = [h11.Data(data=response.body)] if has_body and response.body else []
        message = events_to_bytes(self._h11, start, *body, h11.EndOfMessage())
        io.write(message)
        await io.flushed()
        return len(message)

    async def _stream(self, start: h11.Response, response: StreamingResponse) -> int:
        """Write a streamed response piece by piece, as fast as the client reads it.

        A body whose next piece may take long (the app's generator, unlike a
        file) is waited for against the client leaving (`ConnectionIO.gone`):
        then the generator is cancelled where it waits, its ``finally`` runs,
        and the request ends as if the client had left mid-write.
        """
        h, io = self._h11, self._io
        head = events_to_bytes(h, start)
        io.write(head)
        sent = len(head)
        # closed at once if the client leaves mid-body: a file is closed now, not at GC
        chunks = response.chunks()
        pieces = _until_gone(chunks, io) if response.waits_on_app else chunks
        async with contextlib.aclosing(chunks), contextlib.aclosing(pieces):
            async for piece in pieces:
                if piece:
                    data = events_to_bytes(h, h11.Data(data=piece))
                    io.write(data)
                    sent += len(data)
                    await io.drain()
        end = events_to_bytes(h, h11.EndOfMessage())
        io.write(end)
        await io.flushed()
        return sent + len(end)

    async def _reject(self, exc: RequestRejected) -> None:
        """The one place that answers a refused request: status, short reason, close."""
        self._closing(f"rejected with {exc.status_code}: {exc.message}")
        if self._trace is not None:
            self._trace.event("request rejected", status=exc.status_code, reason=exc.message)
        logger.info(
            "rejected request from %s with %d: %s",
            client_label(self._io.client),
            exc.status_code,
            exc.message,
        )
        h = self._h11
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self._io.closed:
            body = f"{exc.message}\n".encode()
            fields = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                date_header(),
                SERVER_HEADER,
                CLOSE_HEADER,
            ]
            status = exc.status_code
            events: list[h11.Event] = [
                h11.Response(status_code=status, headers=fields, reason=reason(status))
            ]
            if self._request_method != b"HEAD":  # HEAD: the headers of the refusal only
                events.append(h11.Data(data=body))
            events.append(h11.EndOfMessage())
            try:
                self._io.write(events_to_bytes(h, *events))
            except ClientDisconnected:
                pass
            except h11.LocalProtocolError:  # our bug: say so, rather than close in silence
                logger.exception("could not send the %d refusal", exc.status_code)
        await self._io.close_gracefully()

    def _log_access(self, request: Request, status: int, sent: int, started: float) -> None:
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d %d %.1fms',
            client_label(request.client),
            request.method,
            request.target,
            request.http_version,
            status,
            sent,
            (time.perf_counter() - started) * 1000,
        )


# The loop-block watchdog names a block in the connection's own code so
name_every_method(
    Connection, lambda frame: Part(f"rawbg's connection code ({frame.f_code.co_name})")
)


async def _until_gone(
    chunks: AsyncGenerator[bytes, None], io: ConnectionIO
) -> AsyncGenerator[bytes, None]:
    """`chunks`' pieces, each raced against the client leaving: `ClientDisconnected` then."""
    gone = asyncio.ensure_future(io.gone())
    try:
        while True:
            step = asyncio.ensure_future(anext(chunks))
            await asyncio.wait((step, gone), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()  # thrown into the generator where it waits
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                raise ClientDisconnected("client left while the body was streamed")
            try:
                piece = step.result()
            except StopAsyncIteration:
                return
            yield piece
    finally:
        gone.cancel()


def http_allows_another(h: h11.Connection) -> bool:
    """Whether HTTP lets the connection carry another request after this one.

    Both sides must have finished the message cleanly, and neither may have
    said ``Connection: close`` (nor be HTTP/1.0 without keep-alive): h11
    moves a side to MUST_CLOSE, not DONE, in those cases.
    """
    return h.our_state is h11.DONE and h.their_state is h11.DONE


#: the second the ``date`` field was made for, and the field
_date: tuple[int, tuple[bytes, bytes]] = (0, (b"date", b""))


def date_header() -> tuple[bytes, bytes]:
    """The ``date`` header, formatted at most once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, (b"date", formatdate(now, usegmt=True).encode("ascii")))
    return _date[1]
