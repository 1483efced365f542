"""Real ``python -m rawbg`` processes for tests: start, read the log as it comes, signal, reap.

`RawbgProcess` keeps every stderr line (the log) in `lines` as it arrives, so
a test can wait for an event in the log (`wait_for_log`) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.wire import RawClient, request_bytes

URL = re.compile(r"serving on (https?://[\d.]+:(\d+)|unix:\S+)")
WAIT = 20.0  # bound on every wait for a process (workers each import the app)


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    env.update(extra)
    return env


def journal_app_command(journal: Path) -> list[str]:
    """The journal app served on the suite's loop.

    ``python -m rawbg tests.support.journal_app:app --task-journal JOURNAL``
    """
    return [
        sys.executable,
        "-m",
        "rawbg",
        *CLI_LOOP_ARGS,
        "tests.support.journal_app:app",
        "--app-dir",
        str(REPO),
        "--port",
        "0",
        "--no-access-log",
        "--task-journal",
        str(journal),
    ]


class RawbgProcess:
    """``python -m rawbg ARGS`` running; its log collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port = 0
        self.url = ""  # where it said it serves: http(s)://HOST:PORT or unix:PATH
        self._new_line = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read_log())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def _read_log(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._new_line.set()

    async def wait_for_log(
        self, pattern: str, *, count: int = 1, timeout: float = WAIT
    ) -> list[str]:
        """The first `count` log lines matching `pattern` (a regex), once there are that many."""
        regex = re.compile(pattern)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [line for line in self.lines if regex.search(line)]
                    if len(found) >= count:
                        return found[:count]
                    self._new_line.clear()
                    await self._new_line.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {count} log line(s) matching {pattern!r}:\n{self.log}"
            ) from None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def exit_status(self, timeout: float = WAIT) -> int:
        async with asyncio.timeout(timeout):
            status = await self.proc.wait()
            await self._reader
        return status

    async def stop(self) -> None:
        """Make sure it is gone and its pipes are closed (idempotent).

        SIGTERM first, so that a supervisor stops its workers (which hold the
        pipes too), then SIGKILL if it does not exit in time.
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                async with asyncio.timeout(WAIT):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(WAIT):  # EOF on both pipes: every holder has exited
                await self.proc.stdout.read()
                await self._reader
        except TimeoutError:
            self._reader.cancel()


@contextlib.asynccontextmanager
async def rawbg_process(
    cwd: Path, *args: str, prefix: Sequence[str] = (), **env: str
) -> AsyncIterator[RawbgProcess]:
    """Start ``python -m rawbg ARGS``; yield it once it prints where it serves; kill it on exit.

    The server runs on the suite's kind of event loop (`CLI_LOOP_ARGS`), under
    the command `prefix` if given (another host: tests/support/netns.py).
    """
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "rawbg",
        *args,
        *CLI_LOOP_ARGS,
        cwd=cwd,
        env=environment(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    process = RawbgProcess(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, f"rawbg exited before serving:\n{process.log}"
                match = URL.search(line)
                if match:
                    break
        process.url = match.group(1)
        if match.group(2):
            process.port = int(match.group(2))
        yield process
    finally:
        await process.stop()


async def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body)."""
    client = await RawClient.connect(port)
    try:
        await client.send(request_bytes("GET", path, headers=headers))
        response = await client.read_response(timeout=WAIT)
    finally:
        await client.close()
    return response.status_code, response.body


async def post(port: int, path: str) -> tuple[int, bytes]:
    """One POST without a body on a new connection: (status, body)."""
    client = await RawClient.connect(port)
    try:
        await client.send(request_bytes("POST", path))
        response = await client.read_response(method=b"POST", timeout=WAIT)
    finally:
        await client.close()
    return response.status_code, response.body
