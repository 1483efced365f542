"""Out of file descriptors, a real server process backs off instead of spinning.

docs/server-behavior.md (connections): while ``accept()`` fails for want of
descriptors, the server retries ten times a second, logs once, and serves
again by itself once descriptors are free. The server runs in its own process
under a low RLIMIT_NOFILE; the test holds more connections open than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.wire import RawClient, request_bytes

pytestmark = pytest.mark.slow

URL = re.compile(rb"http://127\.0\.0\.1:(\d+)")
DESCRIPTORS = 64  # the server's RLIMIT_NOFILE: room for ~50 connections
CONNECTIONS = 150  # held open by the test: a hundred more than the server can take
WINDOW = 1.5  # seconds of "out of descriptors" over which CPU and log lines are measured

APP = """
from rawbg import App

app = App()


@app.get("/hello")
async def hello():
    return {"hello": "world"}
"""


def few_descriptors() -> None:  # runs in the child, before exec
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_out_of_descriptors_the_server_backs_off_logs_once_and_recovers(tmp_path, loop):
    if loop == "uvloop":
        importlib.import_module("uvloop")
    (tmp_path / "hello_app.py").write_text(APP)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    log_path = tmp_path / "server.log"  # a file, as in production: a pipe would throttle a storm
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rawbg",
            "hello_app:app",
            "--app-dir",
            str(tmp_path),
            "--port",
            "0",
            "--no-access-log",
            "--loop",
            loop,
            "--timeout-keep-alive",
            "60",  # the held connections must not be closed by the idle timeout
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            preexec_fn=few_descriptors,
        )
    assert process.stdout is not None

    def log_lines() -> list[bytes]:
        return log_path.read_bytes().splitlines()

    held: list[RawClient] = []
    try:
        async with asyncio.timeout(10):
            match = URL.search(await process.stdout.readline())
        assert match is not None
        port = int(match.group(1))

        for _ in range(CONNECTIONS):
            held.append(await RawClient.connect(port))
        async with asyncio.timeout(10):
            while b"accept" not in log_path.read_bytes():
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # let any storm start
        lines_before = len(log_lines())
        cpu_before, started = cpu_seconds(process.pid), time.monotonic()
        await asyncio.sleep(WINDOW)
        cpu = cpu_seconds(process.pid) - cpu_before
        elapsed = time.monotonic() - started
        lines = len(log_lines()) - lines_before

        for client in held:
            await client.close()
        held.clear()
        client = await RawClient.connect(port)
        try:
            await client.send(request_bytes("GET", "/hello"))
            response = await client.read_response(timeout=10)
        finally:
            await client.close()
    finally:
        for client in held:
            await client.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = log_path.read_text(errors="replace")
    print(f"out of descriptors for {elapsed:.2f} s: {cpu:.3f} s of CPU, {lines} log lines")
    assert cpu < 0.1 * elapsed, text[-3000:]
    assert lines <= 1, text[-3000:]
    assert response.status_code == 200
    assert response.body == b'{"hello":"world"}'
    assert "cannot accept connections" in text
    assert "accepting connections again" in text
    assert len(text.splitlines()) <= 6, text[-3000:]
