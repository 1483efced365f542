"""A seeded fuzzer of the request path, over real sockets.

``python -m tests.support.fuzz --seconds 300 --seed 1`` runs a rawbg server in this
process and, from several concurrent clients, sends it mutated requests: valid
requests (plain, with a body, chunked, JSON, HEAD, ``OPTIONS *``, pipelined)
with random bytes flipped, inserted, deleted or repeated, and fragments that
matter to HTTP (CR, LF, NUL, ``Transfer-Encoding``, ``Content-Length``, Host
lines, deep brackets) spliced in. Each connection is half-closed after its
bytes, and must end (a response, or the server's close) within the timeouts.

It fails on: any error logged by rawbg (a 500 from a handler is logged by
``rawbg.app``, an internal error by ``rawbg.connection``), a connection the
server neither answers nor closes in time (a hang), or a normal request that
is not served at the end. It prints the figures: requests sent, outcomes by
class. The suite runs it for a few seconds (tests/wire/test_fuzz.py); the same seed
gives the same requests.

A seeded PRNG rather than hypothesis: a run is a time box of socket round
trips from concurrent clients, and shrinking a failing example would replay
them one by one; the seed and the printed request reproduce a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

from rawbg import App, PlainTextResponse, Request, serving

#: the server's timeout in the fuzz run: an incomplete request ends in 408 after it
KEEP_ALIVE = 0.5
#: how long a connection may take to end: the timeout, the lingering close (1 s), slack
HANG_AFTER = KEEP_ALIVE + 1.0 + 3.0

SEEDS = [
    b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b'POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\n{"a": [1, 2.5]}',
    b"POST /typed HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n[1, 2, 3]",
    b"HEAD /hello HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /items/3 HTTP/1.0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
]

FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"\xff",
    b"%",
    b"chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999999999999999999\r\n",
    b"Host: a\r\n",
    b"Host: u@h/p\r\n",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"0\r\n\r\n",
    b"ffffffff\r\n",
    b"[" * 2000,
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """1 to 4 random mutations of `data`."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(buf))
        how = rng.randrange(6)
        if how == 0 and buf:  # flip one byte
            buf[min(where, len(buf) - 1)] = rng.randrange(256)
        elif how == 1:  # splice in a fragment that matters to HTTP
            buf[where:where] = rng.choice(FRAGMENTS)
        elif how == 2:  # delete a slice
            buf[where : where + rng.randint(1, 8)] = b""
        elif how == 3:  # repeat a slice
            end = min(len(buf), where + rng.randint(1, 40))
            buf[where:where] = buf[where:end]
        elif how == 4:  # truncate
            del buf[where:]
        else:  # change the case of a slice
            buf[where : where + 20] = bytes(buf[where : where + 20]).swapcase()
    return bytes(buf)


def fuzz_app() -> App:
    app = App()

    @app.get("/hello")
    async def hello():
        return PlainTextResponse("hello world")

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.post("/echo")
    async def echo(request: Request):
        return {"length": len(await request.body())}

    @app.post("/json")
    async def json_body(request: Request):
        document = await request.json()
        return {"type": type(document).__name__}

    @app.post("/typed")
    async def typed(items: list[int]):
        return {"sum": sum(items)}

    return app


@dataclass
class Figures:
    sent: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    hangs: list[bytes] = field(default_factory=list)


class ErrorRecords(logging.Handler):
    """Collects every record of level ERROR or above from rawbg's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def outcome_of(data: bytes) -> str:
    """The final status of the first response (after any ``100 Continue``)."""
    while data.startswith(b"HTTP/1.1 1"):
        data = data.partition(b"\r\n\r\n")[2]
    if not data:
        return "closed without a response"
    if not data.startswith(b"HTTP/1.1 ") or len(data) < 12:
        return "garbage"  # never expected: counted, and fails the run
    status = data[9:12].decode("latin-1")
    return status if status.isdigit() else "garbage"


async def one_request(port: int, data: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(HANG_AFTER):
            received = await reader.read()
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return outcome_of(received)


async def fuzz(port: int, *, seconds: float, seed: int, clients: int = 8) -> Figures:
    figures = Figures()
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        while time.monotonic() < deadline:
            data = mutate(rng, rng.choice(SEEDS))
            figures.sent += 1
            try:
                outcome = await one_request(port, data)
            except TimeoutError:
                outcome = "hang"
                figures.hangs.append(data)
            figures.outcomes[outcome] += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    return figures


async def still_serves(port: int) -> bool:
    request = b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    received = await one_request(port, request)
    return received == "200"


async def run(*, seconds: float, seed: int) -> tuple[Figures, list[logging.LogRecord], bool]:
    """Serve `fuzz_app`, fuzz it for `seconds`; the figures, rawbg's error records, and
    whether a normal request was served at the end."""
    errors = ErrorRecords()
    rawbg_logger = logging.getLogger("rawbg")
    rawbg_logger.addHandler(errors)
    try:
        async with serving(
            fuzz_app(), port=0, access_log=False, timeout_keep_alive=KEEP_ALIVE
        ) as server:
            figures = await fuzz(server.port, seconds=seconds, seed=seed)
            served = await still_serves(server.port)
    finally:
        rawbg_logger.removeHandler(errors)
    return figures, errors.records, served


def report(figures: Figures, errors: list[logging.LogRecord], served: bool) -> str:
    lines = [f"requests sent: {figures.sent}"]
    by_class: collections.Counter[str] = collections.Counter()
    for outcome, count in figures.outcomes.items():
        by_class[outcome[0] + "xx" if outcome.isdigit() else outcome] += count
    lines.append("outcomes by class: " + ", ".join(f"{k} {v}" for k, v in sorted(by_class.items())))
    lines.append("by status: " + ", ".join(f"{k} {v}" for k, v in sorted(figures.outcomes.items())))
    lines.append(f"errors logged by rawbg: {len(errors)}; normal request served after: {served}")
    for data in figures.hangs[:3]:
        lines.append(f"hang on: {data!r}")
    for record in errors[:3]:
        lines.append(f"error: {record.getMessage()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures, errors, served = asyncio.run(run(seconds=args.seconds, seed=args.seed))
    print(report(figures, errors, served))
    bad = figures.outcomes["500"] + figures.outcomes["hang"] + figures.outcomes["garbage"]
    return 1 if bad or errors or not served else 0


if __name__ == "__main__":
    raise SystemExit(main())
