"""Uploads side by side: rawbg and FastAPI on uvicorn, MB/s and the server's RSS.

    flock /tmp/rawbg-bench.lock python -m benchmarks.uploads [--rounds 3] [--sizes 10M,1G]

Each server serves one endpoint taking ``file: UploadFile`` and answering its
size (benchmarks/apps/upload_rawbg.py, upload_fastapi.py). In each round,
every server is started fresh, in turn (the order reversed every other round),
warmed up with one 10 MiB upload, and then sent, on that same keep-alive
connection, the uploads of each size (``--count`` of the small ones, one of
the large). An upload is a ``multipart/form-data`` body with one file part of
that many bytes, sent by this process from one buffer with ``sendall``, so
the client costs little CPU; its time runs from the first byte sent to the
last byte of the response. The server's RSS (process tree, /proc) is sampled
every 10 ms during each upload: *growth* is the peak during the upload minus
the RSS just before it. Both servers spool the file to a temporary file of
the same directory (``TMPDIR``, by default ``/tmp``), so the disk is the same.

The servers: ``rawbg`` (asyncio loop, h11), ``rawbg-uvloop``, ``fastapi``
(uvicorn with its h11 protocol, pure Python like rawbg), ``fastapi-std``
(uvicorn[standard]: httptools and uvloop). FastAPI parses the form with
python-multipart, rawbg with defnull's multipart (docs/forms.md).

It prints each round's figures and the medians with rawbg's ratio to each
peer, and writes them as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import procstat
from .servers import HOST, child_env, free_port, read_banner_port, stop, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
KiB, MiB, GiB = 1024, 1024**2, 1024**3
SIZES = {"10M": 10 * MiB, "100M": 100 * MiB, "1G": GiB}
BOUNDARY = b"rawbgBenchBoundary"
SEND_PIECE = 1 * MiB  # what one sendall hands the kernel
SAMPLE_EVERY = 0.01  # seconds between RSS samples
UPLOAD_TIMEOUT = 600.0
START_TIMEOUT = 60.0  # seconds for a server to answer: imports are slow on a loaded machine

SERVERS = ("rawbg", "rawbg-uvloop", "fastapi", "fastapi-std")


def command(name: str, port: int) -> list[str]:
    python = [sys.executable, "-m"]
    if name.startswith("rawbg"):
        loop = "uvloop" if name == "rawbg-uvloop" else "asyncio"
        return [
            *python,
            "rawbg",
            "benchmarks.apps.upload_rawbg:app",
            "--loop",
            loop,
            "--no-access-log",
            "--port",
            str(port),
            "--app-dir",
            str(ROOT),
        ]
    http, loop = ("h11", "asyncio") if name == "fastapi" else ("httptools", "uvloop")
    return [
        *python,
        "uvicorn",
        "benchmarks.apps.upload_fastapi:app",
        "--http",
        http,
        "--loop",
        loop,
        "--no-access-log",
        "--log-level",
        "warning",
        "--port",
        str(port),
    ]


@contextlib.contextmanager
def running(name: str, log_dir: Path) -> Iterator[tuple[int, int]]:
    """Server `name` started fresh: (pid, port); stopped on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = 0 if name.startswith("rawbg") else free_port()
    with open(log_dir / f"uploads-{name}.log", "ab") as log:
        process = subprocess.Popen(
            command(name, port),
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stderr=log,
            stdout=subprocess.PIPE if port == 0 else log,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        if port == 0:
            port = read_banner_port(process, deadline)
        wait_until_answering(process, port, deadline)
        yield process.pid, port
    finally:
        stop(process)


class RssSampler:
    """The peak RSS of a process tree while it runs (a thread polling /proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(LookupError):
                self.peak = max(self.peak, procstat.rss_bytes(self.pid))
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(LookupError):
            self.peak = max(self.peak, procstat.rss_bytes(self.pid))


def multipart_frame(size: int) -> tuple[bytes, bytes]:
    """The head (request head and part head) and tail of an upload of `size` bytes."""
    part_head = (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="data.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n--" + BOUNDARY + b"--\r\n"
    length = len(part_head) + size + len(tail)
    head = (
        b"POST /upload HTTP/1.1\r\nHost: bench\r\n"
        b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )
    return head + part_head, tail


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body (both servers answer so)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("the server closed the connection")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("the server closed the connection mid-response")
        body += more
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"upload refused: {head.splitlines()[0]!r} {body[:200]!r}")
    return body


def upload(sock: socket.socket, size: int, piece: memoryview) -> float:
    """Send one upload of `size` bytes and read its answer; the seconds it took."""
    head, tail = multipart_frame(size)
    started = time.perf_counter()
    sock.sendall(head)
    left = size
    while left:
        n = min(left, len(piece))
        sock.sendall(piece[:n])
        left -= n
    sock.sendall(tail)
    body = read_response(sock)
    elapsed = time.perf_counter() - started
    if json.loads(body) != {"size": size}:
        raise RuntimeError(f"wrong answer: {body[:200]!r}")
    return elapsed


def measure(name: str, sizes: dict[str, int], count: int, log_dir: Path) -> dict[str, Any]:
    """One fresh server: a warm-up, then `count` uploads of each small size and one large."""
    piece = memoryview(bytes(range(256)) * (SEND_PIECE // 256))
    figures: dict[str, Any] = {}
    with running(name, log_dir) as (pid, port), socket.create_connection((HOST, port)) as sock:
        sock.settimeout(UPLOAD_TIMEOUT)
        upload(sock, 10 * MiB, piece)
        figures["rss_idle_MiB"] = procstat.rss_bytes(pid) / MiB
        for label, size in sizes.items():
            repeats = count if size < GiB else 1
            rates, growths, cpu = [], [], []
            for _ in range(repeats):
                before = procstat.rss_bytes(pid)
                cpu_before = procstat.cpu_seconds(pid)
                with RssSampler(pid) as sampler:
                    seconds = upload(sock, size, piece)
                cpu.append(procstat.cpu_seconds(pid) - cpu_before)
                rates.append(size / seconds / 1e6)
                growths.append((sampler.peak - before) / MiB)
            figures[label] = {
                "MBps": statistics.median(rates),
                "rss_growth_MiB": max(growths),
                "server_cpu_s": statistics.median(cpu),
                "uploads": repeats,
            }
    return figures


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.uploads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--sizes", default="10M,1G", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--count", type=int, default=5, help="uploads of each size under 1 GiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/local")
    args = parser.parse_args(argv)
    servers = args.servers.split(",")
    sizes = {label: SIZES[label] for label in args.sizes.split(",")}
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        order = servers if number % 2 == 0 else servers[::-1]
        this: dict[str, Any] = {"loadavg_before": loadavg(), "servers": {}}
        for name in order:
            this["servers"][name] = measure(name, sizes, args.count, args.out / "logs")
            print(f"round {number + 1} {name}: {json.dumps(this['servers'][name])}", flush=True)
        this["loadavg_after"] = loadavg()
        print(f"round {number + 1} loadavg: {this['loadavg_before']} -> {this['loadavg_after']}")
        rounds.append(this)
    summary = summarize(rounds, servers, sizes)
    print(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"rounds": rounds, "sizes": args.sizes, "count": args.count, "tmpdir": tmpdir()}
    (args.out / "uploads.json").write_text(json.dumps(result, indent=1))
    return 0


def tmpdir() -> str:
    return os.environ.get("TMPDIR", "/tmp")


def summarize(rounds: list[dict[str, Any]], servers: list[str], sizes: dict[str, int]) -> str:
    """Per size: each server's median MB/s (every round's figure) and max RSS growth."""
    lines = []
    for label in sizes:
        lines.append(f"{label}: MB/s (median of rounds; each round), peak RSS growth MiB (max)")
        medians = {}
        for name in servers:
            rates = [r["servers"][name][label]["MBps"] for r in rounds]
            growth = max(r["servers"][name][label]["rss_growth_MiB"] for r in rounds)
            cpu = statistics.median(r["servers"][name][label]["server_cpu_s"] for r in rounds)
            medians[name] = statistics.median(rates)
            each = ", ".join(f"{rate:.0f}" for rate in rates)
            lines.append(
                f"  {name:14} {medians[name]:7.0f} MB/s ({each})  growth {growth:6.1f} MiB"
                f"  server CPU {cpu:.2f} s"
            )
        for ours in (s for s in servers if s.startswith("rawbg")):
            for peer in (s for s in servers if not s.startswith("rawbg")):
                lines.append(f"  {ours} / {peer}: {medians[ours] / medians[peer]:.2f}x MB/s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
