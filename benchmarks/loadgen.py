"""The load generator: asyncio, raw sockets, one process of its own.

``python -m benchmarks.loadgen open --port P --rate R --seconds S [--mode keepalive|close]``
``python -m benchmarks.loadgen closed --port P --connections C (--seconds S | --requests N)``

Each prints one JSON object on stdout (see `summarize`). The harness's open
loop is the compiled generator of the same design, loadgen.c (`run_loadgen`,
``generator="c"``), which costs a tenth of the CPU per request of this one;
this one stays as the fallback (``--generator python``), for the closed loop,
and to validate the other against.

Open loop (``open``): request i is *scheduled* at ``t0 + i / rate``, whatever
happened to the requests before it, and its latency is the time its whole
response arrived minus that scheduled time. A server that stalls for 100 ms
therefore shows 100 ms of latency on every request scheduled during the
stall, instead of silently delaying the next sends (coordinated omission).
Time spent waiting for a free keep-alive connection counts too. The loop
waits on epoll (any number of sockets; ``select()`` stops at descriptor
1023, which the new-connection mode passes at high rates) but sleeps the
sub-millisecond rest of a timeout with ``select()`` on no descriptor, since
epoll rounds its timeouts up to whole milliseconds (`FineEpollSelector`):
the send lag (actual minus scheduled send) is reported so that a late
generator is visible.

Closed loop (``closed``): C workers, each sending its next request as soon as
its previous response arrived; latency is measured from the actual send.
This finds peak throughput, but a stalled server also stalls its load.

Modes: ``keepalive`` reuses connections; ``close`` connects for every
request, sends ``Connection: close`` and reads until the server closes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import resource
import select
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from . import procstat

PATH = "/send-notification/bench@example.com"
MODES = ("keepalive", "close")


class ClientError(Exception):
    """A request that got no complete response; `kind` names what went wrong."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def request_bytes(host: str, port: int, close: bool) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n".encode()
        + connection
        + b"\r\n"
    )


class ClientConnection(asyncio.Protocol):
    """One HTTP/1.1 connection: send a request, wait for its whole response.

    Responses are framed by Content-Length (or by the end of the connection
    when there is none). In ``read_to_eof`` mode a response is only complete
    once the server has closed the connection.
    """

    def __init__(self, read_to_eof: bool) -> None:
        self.read_to_eof = read_to_eof
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.eof = False
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._complete()

    def eof_received(self) -> bool:
        self.eof = True
        self.usable = False
        self._complete()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.usable = False
        self._complete()

    async def request(self, payload: bytes) -> int:
        """Send `payload`; return the status code of the complete response."""
        assert self.transport is not None and self.waiter is None
        if not self.usable:
            raise ClientError("closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    def _complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buffer = self.buffer
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if self.eof:
                waiter.set_exception(ClientError("closed"))
            return
        head = bytes(buffer[:head_end]).lower()
        length_at = head.find(b"\r\ncontent-length:")
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at + 2)
            length = int(head[length_at + 17 : line_end if line_end >= 0 else None])
            total = head_end + 4 + length
        elif self.eof:
            total = len(buffer)
        else:
            return
        if len(buffer) < total:
            if self.eof:
                waiter.set_exception(ClientError("closed"))
            return
        if self.read_to_eof and not self.eof:
            return
        del buffer[:total]
        if b"\r\nconnection: close" in head:
            self.usable = False
        waiter.set_result(int(head[9:12]))


async def connect(host: str, port: int, read_to_eof: bool) -> ClientConnection:
    try:
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: ClientConnection(read_to_eof), host, port
        )
    except OSError:
        raise ClientError("connect") from None
    return conn


class ConnectionPool:
    """Keep-alive connections: a request takes a free one, or opens one up to `cap`, or waits.

    Free connections are reused oldest first, so all stay warm. A waiter is
    handed a connection directly (first come, first served), or the right to
    open one when a broken connection frees its slot.
    """

    def __init__(self, host: str, port: int, cap: int) -> None:
        self.host, self.port, self.cap = host, port, cap
        self.idle: collections.deque[ClientConnection] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[ClientConnection | None]] = (
            collections.deque()
        )
        self.live = 0  # open connections, or slots being connected
        self.opened = 0

    async def fill(self, count: int) -> None:
        """Open `count` connections before the run."""
        for _ in range(count):
            self.live += 1
            self.release(await self._connect_in_slot())

    async def acquire(self) -> ClientConnection:
        while self.idle:
            conn = self.idle.popleft()
            if conn.usable:
                return conn
            conn.close()
            self.live -= 1
        if self.live >= self.cap:
            waiter: asyncio.Future[ClientConnection | None]
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._pass_on(waiter.result())
                raise
            if handed is not None:
                return handed
        else:
            self.live += 1
        return await self._connect_in_slot()

    def release(self, conn: ClientConnection) -> None:
        """Give `conn` back after a request (or after its failure: then it is dropped)."""
        if conn.usable:
            self._pass_on(conn)
        else:
            conn.close()
            self._pass_on(None)

    async def _connect_in_slot(self) -> ClientConnection:
        try:
            conn = await connect(self.host, self.port, read_to_eof=False)
        except BaseException:
            self._pass_on(None)
            raise
        self.opened += 1
        return conn

    def _pass_on(self, conn: ClientConnection | None) -> None:
        """Hand a connection, or a free slot (None), to the first waiter, else keep it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self.idle.append(conn)
        else:
            self.live -= 1


@dataclass
class Recorder:
    """Latencies of successful requests, and errors counted by kind."""

    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    last_done: float = 0.0

    def record(self, started: float, status: int | None, error: str | None = None) -> None:
        now = time.monotonic()
        self.last_done = now
        if error is not None:
            self.errors[error] += 1
        elif status != 200:
            self.errors[f"status {status}"] += 1
        else:
            self.latencies.append(now - started)


class Client:
    """Sends the benchmarked request, on the keep-alive pool or on a new connection each time."""

    def __init__(self, args: argparse.Namespace, pool_cap: int) -> None:
        self.host, self.port, self.timeout = args.host, args.port, args.timeout
        close = args.mode == "close"
        self.payload = request_bytes(args.host, args.port, close)
        self.pool = None if close else ConnectionPool(args.host, args.port, pool_cap)

    async def send(self, recorder: Recorder | None, started: float) -> None:
        """One request; its outcome is recorded against `started` (None: warm-up, not recorded)."""
        status: int | None = None
        error: str | None = None
        conn: ClientConnection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if self.pool is not None:
                    conn = await self.pool.acquire()
                else:
                    conn = await connect(self.host, self.port, read_to_eof=True)
                status = await conn.request(self.payload)
        except TimeoutError:
            error = "timeout"
        except ClientError as exc:
            error = exc.kind
        except OSError:
            error = "socket"
        finally:
            if conn is not None:
                if error is not None or self.pool is None:
                    conn.close()
                if self.pool is not None:
                    self.pool.release(conn)
        if recorder is not None:
            recorder.record(started, status, error)

    def close(self) -> None:
        for conn in self.pool.idle if self.pool else ():
            conn.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles_ms(samples: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p90/p99 and the maximum, in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"p50": None, "p90": None, "p99": None, "max": None}

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 3)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": rank(100)}


class Window:
    """CPU use while requests are recorded: the generator's, the server's, the machine's waiting.

    ``client_cpu_s`` over ``wall_s`` near 1.0 means the generator, not the
    server, is the limit. ``server_cpu_s`` comes from /proc for ``--watch-pid``.
    ``server_wait_pct`` and ``client_wait_pct``: the share of the window the
    server's threads and the generator were runnable but not running
    (schedstat); ``steal_pct``: the hypervisor's share of the machine's CPUs;
    ``cpu_pressure_pct``: the share of the window during which some task on the
    machine waited for a CPU (high: the numbers are contended, rerun).
    loadgen.c reports the same fields.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.client = cpu_seconds()
        self.server = procstat.cpu_seconds(server_pid) if server_pid else None
        self.server_delay = procstat.run_delay_seconds(server_pid) if server_pid else None
        self.client_delay = procstat.run_delay_seconds(os.getpid())
        self.steal = procstat.steal_seconds()
        self.waiting = procstat.cpu_wait_seconds()

    def close(self, wall: float) -> dict[str, Any]:
        waiting, steal = procstat.cpu_wait_seconds(), procstat.steal_seconds()
        server = self.server_pid
        return {
            "client_cpu_s": round(cpu_seconds() - self.client, 3),
            "server_cpu_s": None
            if self.server is None or server is None
            else round(procstat.cpu_seconds(server) - self.server, 3),
            "server_wait_pct": None
            if self.server_delay is None or server is None
            else round(100 * (procstat.run_delay_seconds(server) - self.server_delay) / wall, 1),
            "client_wait_pct": round(
                100 * (procstat.run_delay_seconds(os.getpid()) - self.client_delay) / wall, 1
            ),
            "steal_pct": None
            if steal is None or self.steal is None
            else round(100 * (steal - self.steal) / wall / (os.cpu_count() or 1), 1),
            "cpu_pressure_pct": None
            if waiting is None or self.waiting is None
            else round(100 * (waiting - self.waiting) / wall, 1),
        }


# A row is not published when its generator used more than this share of a
# core (it queues its own sends and reads: its latency is part of the figure)
# or when something on the machine kept the server or the generator waiting
# for a CPU more than this share of the run, or stopped the generator for
# longer than this: loadgen.c sends within a fraction of a millisecond of its
# schedule (p99), so a send this late means the machine paused it (this VM
# pauses for 60-150 ms now and then, with or without load), and the server
# most likely with it.
MAX_CLIENT_CPU_PCT = 50.0
MAX_CPU_WAIT_PCT = 10.0
MAX_SEND_LAG_MS = 20.0


def cpu_wait_pct(row: dict[str, Any]) -> float | None:
    """The run's CPU wait: the longer of the server's and the generator's, plus the steal."""
    waits = [row.get("server_wait_pct"), row.get("client_wait_pct")]
    known = [w for w in waits if w is not None]
    if not known:
        return None
    return round(max(known) + (row.get("steal_pct") or 0.0), 1)


def invalid_reasons(row: dict[str, Any]) -> list[str]:
    """Why an open-loop row does not measure the server (empty: it does)."""
    reasons = []
    client = 100 * row["client_cpu_s"] / max(row["wall_s"], 1e-9)
    if client > MAX_CLIENT_CPU_PCT:
        reasons.append(f"generator at {client:.0f} % of a core")
    if (wait := cpu_wait_pct(row)) is not None and wait > MAX_CPU_WAIT_PCT:
        reasons.append(f"CPU wait {wait:.0f} %")
    if (lag := row["send_lag_ms"]["max"]) is not None and lag > MAX_SEND_LAG_MS:
        reasons.append(f"generator stopped: a send {lag:.0f} ms late")
    return reasons


def summarize(
    recorder: Recorder, sent: int, t0: float, window: Window, **extra: Any
) -> dict[str, Any]:
    """The JSON a run prints: counts, latency percentiles, throughput and CPU use.

    ``throughput_rps`` is successful responses per second between the first
    recorded send and the last response; ``window`` is that stretch in
    `time.monotonic()` seconds (the same clock in every process: what the
    server's diagnostics saw in it can be picked out).
    """
    wall = max(recorder.last_done - t0, 1e-9)
    ok = len(recorder.latencies)
    return {
        "sent": sent,
        "ok": ok,
        "errors": dict(recorder.errors),
        "error_count": sum(recorder.errors.values()),
        "latency_ms": percentiles_ms(recorder.latencies),
        "throughput_rps": round(ok / wall, 1),
        "wall_s": round(wall, 3),
        "window": [round(t0, 4), round(t0 + wall, 4)],
        **window.close(wall),
        **extra,
    }


async def open_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Send ``rate * seconds`` requests on schedule, after ``warmup`` seconds not recorded."""
    loop = asyncio.get_running_loop()
    client = Client(args, args.max_connections)
    if client.pool is not None:
        await client.pool.fill(args.connections)
    warmup = round(args.warmup * args.rate)
    total = warmup + round(args.seconds * args.rate)
    recorder = Recorder()
    lags: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic() + 0.01
    t0 = start + warmup / args.rate
    window = Window(args.watch_pid)
    for i in range(total):
        scheduled = start + i / args.rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        if i == warmup:
            window = Window(args.watch_pid)
        if measured := i >= warmup:
            lags.append(time.monotonic() - scheduled)
        task = loop.create_task(client.send(recorder if measured else None, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.wait(set(tasks))
    client.close()
    lag = percentiles_ms(lags)
    return summarize(
        recorder,
        total - warmup,
        t0,
        window,
        kind="open",
        generator="python",
        mode=args.mode,
        rate=args.rate,
        send_lag_ms={"p99": lag["p99"], "max": lag["max"]},
        connections_opened=client.pool.opened if client.pool else total - warmup,
    )


async def closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    """C workers back to back, for ``seconds`` or until ``requests`` have been sent."""
    client = Client(args, args.connections)
    recorder = Recorder()
    budget = math.inf if args.requests is None else args.requests
    sent = 0
    t0 = time.monotonic()
    deadline = t0 + args.seconds if args.requests is None else math.inf
    window = Window(args.watch_pid)

    async def worker() -> None:
        nonlocal sent
        while sent < budget and time.monotonic() < deadline:
            sent += 1
            await client.send(recorder, time.monotonic())

    await asyncio.gather(*(worker() for _ in range(args.connections)))
    client.close()
    return summarize(
        recorder, sent, t0, window, kind="closed", mode=args.mode, connections=args.connections
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runs = parser.add_subparsers(dest="kind", required=True)
    open_ = runs.add_parser("open", help="open loop at a fixed rate")
    open_.add_argument("--rate", type=float, required=True, help="requests per second")
    open_.add_argument("--seconds", type=float, required=True, help="recorded duration")
    open_.add_argument("--warmup", type=float, default=0.5, help="seconds sent first, unrecorded")
    open_.add_argument("--connections", type=int, default=8, help="keep-alive pool opened first")
    open_.add_argument("--max-connections", type=int, default=256, help="keep-alive pool cap")
    closed = runs.add_parser("closed", help="closed loop: peak throughput")
    closed.add_argument("--connections", type=int, default=32, help="concurrent workers")
    amount = closed.add_mutually_exclusive_group(required=True)
    amount.add_argument("--seconds", type=float)
    amount.add_argument("--requests", type=int)
    for sub in (open_, closed):
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--mode", choices=MODES, default="keepalive")
        sub.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
        sub.add_argument("--watch-pid", type=int, help="report this server process's CPU time")
    return parser


class FineEpollSelector(selectors.EpollSelector):
    """epoll, with wake-ups to the microsecond.

    epoll_wait's timeout is whole milliseconds, rounded up, so a send due in
    0.3 ms would go out 1 ms late. Here the whole milliseconds of a timeout are
    waited on epoll, and if nothing came by then, the rest is slept with
    ``select()`` on no descriptor (microseconds, and no limit on descriptor
    numbers, as there is when select() watches sockets) before one more look.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        deadline = time.monotonic() + timeout
        whole_ms = math.floor(timeout * 1000)
        # EpollSelector rounds up to the next millisecond: half a millisecond less lands on whole_ms
        ready = super().select((whole_ms - 0.5) / 1000 if whole_ms else 0)
        if ready:
            return ready
        rest = deadline - time.monotonic()
        if rest > 0:
            select.select([], [], [], rest)
        return super().select(0)


def main() -> None:
    args = build_parser().parse_args()
    run = open_loop(args) if args.kind == "open" else closed_loop(args)
    with asyncio.Runner(
        loop_factory=lambda: asyncio.SelectorEventLoop(FineEpollSelector())
    ) as runner:
        result = runner.run(run)
    json.dump(result, sys.stdout)
    print()


def first_error(stderr: str, limit: int = 2000) -> str:
    """What a failed generator printed, from its first traceback on, at most `limit` characters.

    A generator that fails mid-run leaves requests pending, and each of them
    prints an "Exception ignored" traceback as its loop closes: the end of its
    output is that noise, the cause is at the start.
    """
    start = stderr.find("Traceback")
    return stderr[max(start, 0) :][:limit]


GENERATORS = ("c", "python")


def run_loadgen(
    kind: str, timeout: float, *, generator: str = "c", **options: object
) -> dict[str, Any]:
    """Run the generator in its own process (killed after `timeout` s); return its JSON.

    ``run_loadgen("open", 30, port=8000, rate=500)`` runs the compiled
    generator (benchmarks/loadgen.c, built at first use: `cgen`), ``loadgen
    open --port 8000 --rate 500``; with ``generator="python"``, or for the
    closed loop, ``python -m benchmarks.loadgen`` with the same arguments.
    Options whose value is None are left out.
    """
    from .servers import ROOT, child_env

    if generator not in GENERATORS:
        raise ValueError(f"generator {generator!r}: one of {GENERATORS}")
    argv = [kind]
    for name, value in options.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if kind == "open" and generator == "c":
        from .cgen import generator_path

        command = [str(generator_path())]
    else:
        command = [sys.executable, "-m", "benchmarks.loadgen"]
    done = subprocess.run(
        [*command, *argv],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {' '.join(argv)} failed:\n{first_error(done.stderr)}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


if __name__ == "__main__":
    main()
