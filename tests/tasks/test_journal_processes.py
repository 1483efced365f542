"""The task journal across processes: a server SIGKILLed mid-load, two servers on one journal.

Real processes (``python -m rawbg tests.support.journal_app:app``), real sockets, a
real SQLite file; the tasks write each finished run to a file, so that what
ran is counted outside the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rawbg.tasks.journal.sqlite import INSERT, SQLiteTaskStore
from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.processes import journal_app_command
from tests.support.wire import RawClient, request_bytes

pytestmark = pytest.mark.slow

URL = re.compile(rb"serving on http://[^:]+:(\d+)")
WAIT = 10.0


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def server_process(
    tmp_path: Path,
    name: str,
    journal: Path,
    *options: str,
    task_seconds: float = 0.0,
    release: Path | None = None,
) -> AsyncIterator[ServerProcess]:
    """``python -m rawbg tests.support.journal_app:app --task-journal JOURNAL``; killed on exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["JOURNAL_TEST_RUNS"] = str(tmp_path / "runs.txt")
    env["JOURNAL_TEST_TASK_SECONDS"] = repr(task_seconds)
    if release is not None:
        env["JOURNAL_TEST_RELEASE"] = str(release)
    with open(tmp_path / f"{name}.log", "ab") as log:
        process = await asyncio.create_subprocess_exec(
            *journal_app_command(journal),
            *options,
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(WAIT):
            while not (match := URL.search(await process.stdout.readline())):
                assert process.returncode is None, f"{name} exited; see {name}.log"
        yield ServerProcess(process, int(match.group(1)))
    finally:
        # SIGTERM first: with --workers, a SIGKILLed supervisor would leave its
        # workers holding our stdout pipe open past the test
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(WAIT):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await process.wait()
        if process.stdout is not None:  # drained to EOF: every writer of the pipe is gone
            async with asyncio.timeout(WAIT):
                await process.stdout.read()


def runs(tmp_path: Path) -> list[tuple[int, int]]:
    """(task number, pid of the server that ran it), one per finished run."""
    path = tmp_path / "runs.txt"
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        kind, n, pid = line.split()
        if kind == "run":
            found.append((int(n), int(pid)))
    return found


async def post(port: int, n: int) -> int:
    client = await RawClient.connect(port)
    try:
        await client.send(request_bytes("POST", f"/work/{n}"))
        return (await client.read_response(method=b"POST")).status_code
    finally:
        await client.close()


async def keep_posting(port: int, numbers: itertools.count[int], acknowledged: set[int]) -> None:
    """One keep-alive client: POST /work/N until the connection breaks."""
    try:
        client = await RawClient.connect(port)
    except OSError:
        return
    try:
        while True:
            n = next(numbers)
            await client.send(request_bytes("POST", f"/work/{n}"))
            response = await client.read_response(method=b"POST", timeout=WAIT)
            if response.status_code == 200:
                acknowledged.add(n)
    except (OSError, AssertionError, asyncio.IncompleteReadError, Exception):
        return  # the server was killed
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def test_every_acknowledged_task_runs_after_the_server_is_sigkilled_mid_load(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "tasks.db"
    acknowledged: set[int] = set()
    numbers = itertools.count(1)
    # 1 s tasks, as in the issue: at the kill, hundreds are pending, some running
    async with server_process(tmp_path, "first", journal, task_seconds=1.0) as first:
        clients = [
            asyncio.create_task(keep_posting(first.port, numbers, acknowledged)) for _ in range(20)
        ]
        await asyncio.sleep(1.5)
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*clients)
    ran_before = collections.Counter(n for n, _ in runs(tmp_path))
    assert acknowledged, "no request was acknowledged before the kill"
    assert len(ran_before) < len(acknowledged), "the kill came after all the work was done"

    # Restarted on the same journal, with the default 30 s lease: the dead
    # process is recognised as gone (same host, no such pid), not waited for.
    async with server_process(tmp_path, "second", journal) as second:
        async with asyncio.timeout(20):
            while not acknowledged <= {n for n, _ in runs(tmp_path)}:
                await asyncio.sleep(0.05)
        assert await post(second.port, 0) == 200  # and it serves
    counts = collections.Counter(n for n, _ in runs(tmp_path))
    twice = sorted(n for n, c in counts.items() if c > 1)
    print(
        f"\ncrash test: acknowledged {len(acknowledged)}, ran before the kill "
        f"{len(ran_before)}, ran in all {len(counts)}, ran twice {len(twice)}"
    )
    assert acknowledged <= set(counts)
    # only what had run without its done-mark committed may run again
    assert set(twice) <= set(ran_before)


async def test_a_live_process_keeps_its_tasks_and_a_dead_one_is_taken_over_after_its_lease(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "tasks.db"
    lease = ("--task-journal-lease", "0.6")
    async with server_process(tmp_path, "a", journal, *lease, task_seconds=60) as a:
        for n in (1, 2, 3):
            assert await post(a.port, n) == 200
        async with server_process(tmp_path, "b", journal, *lease) as b:
            await asyncio.sleep(1.5)  # two and a half leases: A renews, B must not take over
            assert runs(tmp_path) == []
            # A stops renewing but its pid lives on (a frozen process): only
            # the lease's expiry lets B take its tasks over.
            a.process.send_signal(signal.SIGSTOP)
            async with asyncio.timeout(WAIT):
                while len(runs(tmp_path)) < 3:
                    await asyncio.sleep(0.05)
            assert sorted(runs(tmp_path)) == [(1, b.pid), (2, b.pid), (3, b.pid)]
            a.process.kill()
            await a.process.wait()


async def test_a_live_sibling_takes_over_a_killed_processs_tasks_within_seconds_not_its_lease(
    tmp_path: Path,
) -> None:
    # Issue 24: the docs said a live sibling takes over "at once"; it waited for its next
    # lease renewal, every third of the lease: 5.1-9.2 s with the default 30 s lease.
    journal = tmp_path / "tasks.db"
    async with server_process(tmp_path, "a", journal, task_seconds=60) as a:
        for n in (1, 2, 3):
            assert await post(a.port, n) == 200
        async with server_process(tmp_path, "b", journal) as b:
            a.process.send_signal(signal.SIGKILL)
            await a.process.wait()
            loop = asyncio.get_running_loop()
            killed = loop.time()
            async with asyncio.timeout(WAIT):
                while len(runs(tmp_path)) < 3:
                    await asyncio.sleep(0.05)
            took = loop.time() - killed
            assert sorted(runs(tmp_path)) == [(1, b.pid), (2, b.pid), (3, b.pid)]
    print(f"\ntakeover test: a live sibling ran the killed process's tasks {took:.2f} s after")
    assert took < 3.0, f"taken over {took:.1f} s after the kill"


async def start_up_error(cwd: Path, journal: Path) -> tuple[int, str, bytes]:
    """``python -m rawbg --task-journal JOURNAL``, expected to exit at start-up:
    (exit status, stderr, stdout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rawbg",
        *CLI_LOOP_ARGS,
        "--port",
        "0",
        "--task-journal",
        str(journal),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(WAIT):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:  # it started serving: the test fails, leave nothing behind
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(), out


async def test_bad_journal_path_is_a_one_line_start_up_error_naming_the_option(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.txt").write_text("not a journal\n" * 200)
    status, err, out = await start_up_error(tmp_path, tmp_path / "notes.txt")
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --task-journal ")
    assert "not a usable task journal" in lines[0]
    assert b"serving on" not in out


def corrupt_journal(journal: Path) -> None:
    """A rawbg journal whose header, schema and small tables are intact and whose
    task rows are not: pages 8 and on (the first seven hold the schema, rawbg_meta,
    rawbg_owners and the roots of rawbg_tasks and its index) overwritten with 0xFF."""
    SQLiteTaskStore(str(journal), sync="normal", busy_timeout=1.0).check()
    with contextlib.closing(sqlite3.connect(journal, isolation_level=None)) as db:
        db.execute("BEGIN")
        for n in range(300):
            db.execute(INSERT, ("tests.journal_app:record_run", "x" * 1000, f"task {n}", "gone", 0))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    assert pages > 50
    with open(journal, "r+b") as file:
        file.seek(7 * page_size)
        file.write(b"\xff" * (pages - 7) * page_size)


async def test_a_corrupt_journal_is_a_one_line_start_up_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "tasks.db"
    corrupt_journal(journal)
    status, err, out = await start_up_error(tmp_path, journal)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: --task-journal {journal}: "), lines[0]
    assert status == 1
    assert b"serving on" not in out


async def test_with_workers_a_sigkilled_workers_journaled_tasks_run_in_another_worker(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "tasks.db"
    release = tmp_path / "release"
    options = ("--workers", "2", "--task-journal-lease", "1.5")
    async with server_process(tmp_path, "workers", journal, *options, release=release) as server:
        for n in range(1, 9):
            assert await post(server.port, n) == 200
        with contextlib.closing(sqlite3.connect(journal)) as db:
            owners = [row[0] for row in db.execute("SELECT owner FROM rawbg_tasks")]
        assert len(owners) == 8
        victim = int(owners[0].split(":")[1])  # owner is host:pid:token
        victims_tasks = owners.count(owners[0])
        os.kill(victim, signal.SIGKILL)
        release.touch()
        async with asyncio.timeout(WAIT):
            while len({n for n, _ in runs(tmp_path)}) < 8:
                await asyncio.sleep(0.05)
        ran = runs(tmp_path)
        assert sorted(n for n, _ in ran) == list(range(1, 9))
        assert victim not in {pid for _, pid in ran}
        assert victims_tasks >= 1
