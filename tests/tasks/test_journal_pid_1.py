"""A server that is PID 1 of its pid namespace (as in a container), SIGKILLed and restarted.

The restarted server is PID 1 again: the dead owner's pid runs, so "is its
pid alive?" says yes, and its journaled tasks used to wait out the whole
lease. The owner row's process start tells the two apart, and the tasks run
at start-up. Real processes in a new pid namespace (``unshare``), a real
journal; skipped where unprivileged namespaces are not allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.processes import WAIT, environment, journal_app_command, post

pytestmark = pytest.mark.slow

# a new pid namespace whose first process is the server; --map-root-user
# lets a user without privileges create it
NAMESPACE = ("--user", "--map-root-user", "--pid", "--fork", "--mount-proc")
URL = re.compile(rb"serving on http://[^:]+:(\d+)")
# far longer than the test waits: a takeover by lease expiry cannot pass it
LEASE = "120"


@pytest.fixture(scope="module")
def unshare() -> str:
    # Never skipped: CI runs as root on Linux, where util-linux's unshare can
    # make the namespace; a machine that cannot fails here, saying why.
    path = shutil.which("unshare")
    assert path is not None, "this test needs util-linux's unshare command"
    probe = subprocess.run([path, *NAMESPACE, "true"], capture_output=True, timeout=WAIT)
    assert probe.returncode == 0, (
        f"cannot make a pid namespace here: {probe.stderr.decode().strip()}"
    )
    return path


@contextlib.asynccontextmanager
async def pid_1_server(
    unshare: str, tmp_path: Path, name: str, *, on_exit: str
) -> AsyncIterator[int]:
    """The journal app served by PID 1 of a new pid namespace; yields its port.

    Leaving the block SIGKILLs ``unshare``, which sends `on_exit` to the
    server (``--kill-child``): SIGKILL, as a container runtime's kill does,
    or SIGTERM, a graceful stop.
    """
    with open(tmp_path / f"{name}.log", "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            unshare,
            *NAMESPACE,
            f"--kill-child={on_exit}",
            *journal_app_command(tmp_path / "tasks.db"),
            "--task-journal-lease",
            LEASE,
            cwd=tmp_path,
            env=environment(
                JOURNAL_TEST_RUNS=str(tmp_path / "runs.txt"),
                JOURNAL_TEST_RELEASE=str(tmp_path / "release"),
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            while not (match := URL.search(line := await proc.stdout.readline())):
                assert line, f"{name} exited before serving; see {name}.log"
        yield int(match.group(1))
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # unshare passes `on_exit` on to the server
        await proc.wait()
        async with asyncio.timeout(WAIT):  # EOF: the server itself has exited
            await proc.stdout.read()


def runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs.txt"
    return path.read_text().splitlines() if path.exists() else []


async def test_a_pid_1_server_sigkilled_and_restarted_runs_its_tasks_at_start_up(
    tmp_path: Path, unshare: str
) -> None:
    async with pid_1_server(unshare, tmp_path, "killed", on_exit="SIGKILL") as port:
        for n in (1, 2, 3):  # each waits for the release file: pending at the kill
            assert (await post(port, f"/work/{n}"))[0] == 200
    assert runs(tmp_path) == []

    (tmp_path / "release").touch()
    async with pid_1_server(unshare, tmp_path, "restarted", on_exit="SIGTERM"):
        async with asyncio.timeout(WAIT):  # not the lease: LEASE is far longer
            while len(runs(tmp_path)) < 3:
                await asyncio.sleep(0.05)
    # run once each, by the restarted server, which is PID 1 too
    assert sorted(runs(tmp_path)) == ["run 1 1", "run 2 1", "run 3 1"]
    assert "3 unfinished task(s) recovered" in (tmp_path / "restarted.log").read_text()
