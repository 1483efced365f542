"""Instructions per request, counted by callgrind: ``python -m benchmarks.instructions``.

On a shared machine, timings of the same code move by 10 % from run to run;
the number of instructions it executes does not. This feeds the benchmark
request to rawbg's protocol and connection task (and to the ceiling's
protocol) through an in-memory transport, N times, in one process with no
sockets, and counts the instructions under ``valgrind --tool=callgrind``.
Two runs, of N and of N + M requests, give (difference / M) instructions per
request: start-up and imports cancel out.

It measures the loop's side of a request (h11, rawbg, the app, the background
task, asyncio's scheduling), not the kernel's socket work, so its ratio is a
floor for the wall-clock ratio of the peak benchmark, and a repeatable yardstick
for a change to rawbg's hot path. Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

from rawbg.wire.memory_transport import MemoryTransport

from .apps import TASK_SECONDS_ENV
from .servers import child_env

REQUEST = b"POST /send-notification/bench@example.com HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: the same request with a chunked body of two chunks, one with an extension
#: (``--request chunked``: what rawbg.wire.raw_input.ChunkedScanner costs)
CHUNKED_REQUEST = (
    b"POST /send-notification/bench@example.com HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5;ext=value\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)
REQUESTS = {"plain": REQUEST, "chunked": CHUNKED_REQUEST}
WARM_REQUESTS = 300
MEASURED_REQUESTS = 2000


async def feed(
    make_protocol: Callable[[], asyncio.Protocol], requests: int, request: bytes = REQUEST
) -> list[bytes]:
    """One keep-alive connection: each request is fed once the previous one was answered.

    Returns what the protocol wrote (one response per write, for both servers).
    The bytes are handed over from a loop callback, as a socket transport does
    (``data_received`` runs outside any task), not from this coroutine.
    """
    loop = asyncio.get_running_loop()
    transport = MemoryTransport()
    protocol = make_protocol()
    protocol.connection_made(transport)
    for _ in range(requests):
        transport.written = loop.create_future()
        loop.call_soon(protocol.data_received, request)  # type: ignore[attr-defined]
        await transport.written
        await asyncio.sleep(0)  # let the request's background task run, as under load
        del transport.writes[:-1]  # keep the last response only: memory stays flat
    return transport.writes


SERVERS = ("ceiling", "rawbg", "rawbg-uvloop")  # rawbg-uvloop: rawbg fed on uvloop
#: measured with ``--journal`` only: rawbg with a SQLite task journal (its writer
#: thread's instructions, SQLite's included, count too)
JOURNAL_SERVER = "rawbg-journal"


def protocol_factory(
    server: str, loop: asyncio.AbstractEventLoop, directory: str
) -> Callable[[], asyncio.Protocol]:
    """The protocol of `server`; with a journal (in `directory`), its writer started on `loop`."""
    if server == "ceiling":
        from .ceiling import CannedProtocol

        return CannedProtocol
    from rawbg.server.config import ServerConfig
    from rawbg.server.server import Server

    from .apps.rawbg_app import app

    journal = f"{directory}/journal.db" if server == JOURNAL_SERVER else None
    rawbg_server = Server(app, ServerConfig(port=0, access_log=False, task_journal=journal))
    if journal is not None:
        rawbg_server._open_journal(loop)  # what `Server.start` does before it listens
    return rawbg_server.make_protocol


def count_instructions(server: str, requests: int, request: str = "plain") -> int:
    """Instructions of one process that feeds `requests` requests to `server`."""
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--feed",
        server,
        str(requests),
        "--request",
        request,
    ]
    env = child_env(**{TASK_SECONDS_ENV: "0", "PYTHONHASHSEED": "0"})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def measure(
    requests: int = MEASURED_REQUESTS, request: str = "plain", *, journal: bool = False
) -> dict[str, float]:
    """Instructions per request of each of `SERVERS` (rawbg-uvloop only with uvloop), and
    of `JOURNAL_SERVER` with `journal`."""
    servers = [s for s in SERVERS if s != "rawbg-uvloop" or importlib.util.find_spec("uvloop")]
    if journal:
        servers.append(JOURNAL_SERVER)
    per_request = {}
    for server in servers:
        base = count_instructions(server, WARM_REQUESTS, request)
        more = count_instructions(server, WARM_REQUESTS + requests, request)
        per_request[server] = round((more - base) / requests)
    return per_request


def valgrind_available() -> bool:
    return shutil.which("valgrind") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--feed", nargs=2, metavar=("SERVER", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=MEASURED_REQUESTS)
    parser.add_argument(
        "--request",
        choices=sorted(REQUESTS),
        default="plain",
        help="the benchmark request (plain), or the same with a chunked body (chunked)",
    )
    parser.add_argument(
        "--journal",
        action="store_true",
        help=f"also {JOURNAL_SERVER}: rawbg with a SQLite task journal, one commit per request",
    )
    args = parser.parse_args(argv)
    if args.feed:  # the measured process itself
        server, requests = args.feed[0], int(args.feed[1])
        make_loop = asyncio.new_event_loop
        if server == "rawbg-uvloop":
            import uvloop

            make_loop = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=make_loop) as runner, tempfile.TemporaryDirectory() as tmp:
            make_protocol = protocol_factory(server, runner.get_loop(), tmp)
            runner.run(feed(make_protocol, requests, REQUESTS[args.request]))
        return 0
    if not valgrind_available():
        parser.error("valgrind is not on PATH")
    per_request = measure(args.requests, args.request, journal=args.journal)
    for server, count in per_request.items():
        print(f"{server:12} {count:10,.0f} instructions per request")
    for server in sorted(per_request.keys() - {"ceiling"}):
        print(f"ceiling / {server}: {per_request['ceiling'] / per_request[server]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
