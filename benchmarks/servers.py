"""Start a benchmarked server as its own process, wait until it answers, and always stop it.

``with running_server("rawbg", task_seconds=0.1, log_dir=out) as server:``
gives its port, its pid and its resident memory. Each server's
stderr (and uvicorn's stdout) is appended to ``log_dir/NAME.log``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import procstat
from .apps import TASK_SECONDS_ENV

ROOT = Path(__file__).resolve().parent.parent
# rawbg with a task journal (a fresh file per start): --task-journal-sync
# normal and full, and normal with one commit per request instead of per group
JOURNAL_VARIANTS = ("rawbg-journal", "rawbg-journal-full", "rawbg-journal-per-request")
# rawbg with the task journal in PostgreSQL: a fresh database per start, in the
# cluster whose URL is in $BENCH_PG_URL (benchmarks.journal_compare starts one).
# Not in SERVERS: the main harness starts no database.
PG_JOURNAL = "rawbg-journal-pg"
PG_URL_ENV = "BENCH_PG_URL"
# rawbg on asyncio's loop and on uvloop; the bare asyncio + h11 ceiling; and
# what people deploy instead: FastAPI on uvicorn with h11 (pure Python, like
# rawbg), on uvicorn[standard] (httptools + uvloop), on granian (Rust HTTP),
# and a bare Starlette app on uvicorn[standard] (FastAPI's cost on top of it).
SERVERS = (
    "rawbg",
    "rawbg-uvloop",
    "ceiling",
    "fastapi",
    "fastapi-std",
    "starlette-std",
    "fastapi-granian",
    *JOURNAL_VARIANTS,
)
# The modules each server needs beyond rawbg and h11: without them it is
# skipped with a note (pip install -e '.[bench]').
REQUIRES: dict[str, tuple[str, ...]] = {
    "rawbg-uvloop": ("uvloop",),
    "fastapi": ("fastapi", "uvicorn"),
    "fastapi-std": ("fastapi", "uvicorn", "httptools", "uvloop"),
    "starlette-std": ("starlette", "uvicorn", "httptools", "uvloop"),
    "fastapi-granian": ("fastapi", "granian"),
}
# Servers that cannot be given port 0 and print the port they got.
NEEDS_PORT = {"fastapi", "fastapi-std", "starlette-std", "fastapi-granian"}
# `python -m rawbg` as a user first runs it: the demo app, whose task writes
# log.txt from the thread pool. Measured for peak throughput only (issue 2's
# figure), in its own directory so that its log.txt lands there.
DEMO = "demo"
HOST = "127.0.0.1"
# rawbg pauses reading new requests at --max-pending-tasks (default 10 000);
# 10 s tasks at 500 req/s keep 5 000 pending, and the memory runs keep 10 000
# pending on top of a warm-up: the bound is raised so no scenario reaches it.
MAX_PENDING_TASKS = 1_000_000
# More options for rawbg's command line, for a comparison (benchmarks.highload_split)
RAWBG_ARGS_ENV = "BENCH_RAWBG_ARGS"
START_TIMEOUT = 20.0
STOP_GRACE = 0.5  # then SIGKILL: pending background work is not part of any measurement
BANNER = re.compile(rb"serving on http://[^:]+:(\d+)")


class ServerError(RuntimeError):
    """A server that did not start, or died."""


def missing_modules(name: str) -> list[str]:
    """The modules server `name` needs that are not importable (empty: it can run)."""
    return [m for m in REQUIRES.get(name, ()) if importlib.util.find_spec(m) is None]


def fastapi_available() -> bool:
    return not missing_modules("fastapi")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout first on PYTHONPATH.

    So that ``python -m rawbg`` (run from another directory, for the demo) and
    ``python -m benchmarks.x`` import this checkout's code whether or not rawbg
    is pip-installed.
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def command(name: str, port: int, interpreter: str | None = None) -> list[str]:
    """The command line of server `name` (port 0: it picks one and prints it), run by
    `interpreter` (default: this Python)."""
    python = [interpreter or sys.executable, "-m"]
    if name in ("rawbg", "rawbg-uvloop"):
        loop = "uvloop" if name == "rawbg-uvloop" else "asyncio"
        module = f"rawbg benchmarks.apps.rawbg_app:app --loop {loop} --no-access-log"
        options = f"--port {port} --max-pending-tasks {MAX_PENDING_TASKS} --app-dir"
        extra = os.environ.get(RAWBG_ARGS_ENV, "").split()
        return [*python, *module.split(), *options.split(), str(ROOT), *extra]
    if name in JOURNAL_VARIANTS:
        journal = Path(tempfile.mkdtemp(prefix="rawbg-bench-")) / "tasks.db"
        sync = "full" if name == "rawbg-journal-full" else "normal"
        commit = "request" if name == "rawbg-journal-per-request" else "group"
        options = (
            f"--task-journal {journal} --task-journal-sync {sync} --task-journal-commit {commit}"
        )
        return [*command("rawbg", port, interpreter), *options.split()]
    if name == PG_JOURNAL:
        return [*command("rawbg", port, interpreter), "--task-journal", fresh_database()]
    if name == DEMO:
        return [*python, "rawbg", "--loop", "asyncio", "--no-access-log", "--port", str(port)]
    if name == "ceiling":
        return [*python, "benchmarks.ceiling", "--port", str(port)]
    uvicorn = f"--no-access-log --port {port} --log-level warning".split()
    if name == "fastapi":
        app = "benchmarks.apps.fastapi_app:app --http h11 --loop asyncio"
        return [*python, "uvicorn", *app.split(), *uvicorn]
    if name in ("fastapi-std", "starlette-std"):
        module = "fastapi_app" if name == "fastapi-std" else "starlette_app"
        app = f"benchmarks.apps.{module}:app --http httptools --loop uvloop"
        return [*python, "uvicorn", *app.split(), *uvicorn]
    if name == "fastapi-granian":
        options = "--interface asgi --http 1 --no-ws --workers 1 --loop uvloop --log-level warning"
        return [
            *python,
            "granian",
            *options.split(),
            "--no-access-log",
            "--host",
            HOST,
            "--port",
            str(port),
            "benchmarks.apps.fastapi_app:app",
        ]
    raise ValueError(f"unknown server {name!r}")


def fresh_database() -> str:
    """A new, empty database in the cluster at $BENCH_PG_URL: its URL."""
    import uuid

    import psycopg

    url = os.environ.get(PG_URL_ENV)
    if not url:
        raise ServerError(f"{PG_JOURNAL} needs a PostgreSQL cluster's URL in ${PG_URL_ENV}")
    name = f"rawbg_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


@dataclass
class RunningServer:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return procstat.rss_bytes(self.process.pid)


@contextlib.contextmanager
def running_server(
    name: str, task_seconds: float, log_dir: Path, interpreter: str | None = None
) -> Iterator[RunningServer]:
    """Start server `name` with background tasks of `task_seconds` (run by `interpreter`,
    default this Python); stop it on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # uvicorn logs nothing useful to parse at --log-level warning: give it a port
    port = free_port() if name in NEEDS_PORT else 0
    argv = command(name, port, interpreter)
    env = child_env(**{TASK_SECONDS_ENV: repr(task_seconds)})
    with open(log_dir / f"{name}.log", "ab") as log:
        log.write(
            f"--- {time.strftime('%H:%M:%S')} {TASK_SECONDS_ENV}={task_seconds} "
            f"{' '.join(argv)}\n".encode()
        )
        log.flush()
        process = subprocess.Popen(
            argv,
            cwd=log_dir if name == DEMO else ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=log,
            stdout=log if name in NEEDS_PORT else subprocess.PIPE,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        if port == 0:
            port = read_banner_port(process, deadline)
        wait_until_answering(process, port, deadline)
        yield RunningServer(name, process, port)
    finally:
        stop(process)


def read_banner_port(process: subprocess.Popen[bytes], deadline: float) -> int:
    """The port from the server's ``... serving on http://HOST:PORT`` line."""
    assert process.stdout is not None
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            if match := BANNER.search(line):
                return int(match.group(1))
    raise ServerError(f"server {process.args!r} printed no port (exit code {process.poll()})")


def wait_until_answering(process: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    """Send ``GET /`` until any HTTP response comes back."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"server {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if sock.recv(16).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise ServerError(f"server {process.args!r} did not answer on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after `STOP_GRACE` seconds; reap the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
