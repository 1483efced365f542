"""The PostgreSQL task journal across machines: a node SIGKILLed under load, a node paused.

Each node is a real ``python -m rawbg tests.support.journal_app:app`` process
on a host of its own: a network namespace with its own address and a UTS
namespace with its own host name (tests/support/netns.py), so that neither
can recognise the other as a process of its own host. They share one real
PostgreSQL (the ``postgres`` fixture, listening on this side of each
namespace's link). The tasks write each finished run to a file, so what ran
is counted outside the servers. Leases of 1 s keep the tests short (the
default is 10 s; benchmarks/pg_takeover.py measures takeovers with it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.netns import Host, NoNamespaces, covering, hosts
from tests.support.postgres_server import USER, PostgresServer
from tests.support.processes import RawbgProcess, environment
from tests.support.services import in_ci
from tests.support.wire import RawClient, request_bytes

pytestmark = [pytest.mark.slow, pytest.mark.service]

LEASE = 1.0
WAIT = 20.0
SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")


@contextlib.contextmanager
def machines(postgres: PostgresServer, count: int) -> Iterator[list[Host]]:
    """`count` hosts that reach `postgres` at their gateway; skipped (failed in CI) if none."""
    try:
        with hosts(count) as made:
            postgres.listen_also([host.gateway for host in made], covering(made))
            yield made
    except NoNamespaces as exc:
        if in_ci():
            pytest.fail(f"{exc} (CI=true)")
        pytest.skip(f"{exc}: these tests put each node on a host of its own")


@contextlib.asynccontextmanager
async def node(
    host: Host,
    postgres: PostgresServer,
    tmp_path: Path,
    *,
    task_seconds: float = 0.0,
    release: Path | None = None,
) -> AsyncIterator[RawbgProcess]:
    """journal_app on `host`, journaling in `postgres`; SIGTERMed (then killed) on exit."""
    url = f"postgresql://{USER}@{host.gateway}:{postgres.port}/postgres"
    argv = [
        sys.executable,
        "-m",
        "rawbg",
        *CLI_LOOP_ARGS,
        "tests.support.journal_app:app",
        "--app-dir",
        str(REPO),
        "--host",
        host.address,
        "--port",
        "0",
        "--no-access-log",
        "--task-journal",
        url,
        "--task-journal-lease",
        str(LEASE),
    ]
    extra = {"JOURNAL_TEST_RUNS": str(tmp_path / "runs.txt")}
    extra["JOURNAL_TEST_TASK_SECONDS"] = repr(task_seconds)
    if release is not None:
        extra["JOURNAL_TEST_RELEASE"] = str(release)
    proc = await asyncio.create_subprocess_exec(
        *host.command(argv),
        cwd=tmp_path,
        env=environment(**extra),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    process = RawbgProcess(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while not (found := SERVING.search((await proc.stdout.readline()).decode())):
                assert proc.returncode is None, f"the node exited:\n{process.log}"
        process.port = int(found.group(2))
        yield process
    finally:
        await process.stop()


def runs(tmp_path: Path) -> list[tuple[int, int]]:
    """(task number, pid of the node that ran it), one per finished run."""
    path = tmp_path / "runs.txt"
    if not path.exists():
        return []
    return [
        (int(n), int(pid))
        for kind, n, pid in (line.split() for line in path.read_text().splitlines())
        if kind == "run"
    ]


async def keep_posting(
    host: Host, port: int, path: str, numbers: Iterator[int], acknowledged: set[int]
) -> None:
    """One keep-alive client: POST path/N until the connection breaks."""
    try:
        client = await RawClient.connect(port, host.address)
    except OSError:
        return
    try:
        while True:
            n = next(numbers)
            await client.send(request_bytes("POST", f"{path}/{n}"))
            response = await client.read_response(method=b"POST", timeout=WAIT)
            if response.status_code == 200:
                acknowledged.add(n)
    except Exception:
        return  # its node was killed, or the test is over
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def post(host: Host, port: int, path: str) -> int:
    client = await RawClient.connect(port, host.address)
    try:
        await client.send(request_bytes("POST", path))
        return (await client.read_response(method=b"POST", timeout=WAIT)).status_code
    finally:
        await client.close()


async def test_when_one_of_two_nodes_is_sigkilled_the_other_runs_every_task_it_acknowledged(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with machines(postgres, 2) as (host_a, host_b):
        acknowledged: set[int] = set()
        numbers = itertools.count(1)
        async with (
            node(host_a, postgres, tmp_path, task_seconds=1.0) as a,
            node(host_b, postgres, tmp_path, task_seconds=1.0) as b,
        ):
            load = [
                asyncio.create_task(keep_posting(host, n.port, "/work", numbers, acknowledged))
                for host, n in ((host_a, a), (host_b, b))
                for _ in range(10)
            ]
            await asyncio.sleep(1.5)  # 1 s tasks: at the kill, about a second's worth run on a
            a.signal(signal.SIGKILL)
            killed = time.monotonic()
            await a.proc.wait()
            ran_before = {n for n, pid in runs(tmp_path) if pid == a.proc.pid}
            await b.wait_for_log(r"took over \d+ task\(s\) from node node0", timeout=WAIT)
            takeover = time.monotonic() - killed
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            async with asyncio.timeout(WAIT):
                while not acknowledged <= {n for n, _ in runs(tmp_path)}:
                    await asyncio.sleep(0.05)
            assert await post(host_b, b.port, "/work/0") == 200  # and b still serves
    counts = collections.Counter(n for n, _ in runs(tmp_path))
    twice = {n for n, c in counts.items() if c > 1}
    print(
        f"\ntwo nodes, one SIGKILLed: acknowledged {len(acknowledged)}, ran on the killed "
        f"node {len(ran_before)}, ran twice {len(twice)}; taken over {takeover:.2f} s after "
        f"the kill (lease {LEASE:g} s)"
    )
    assert acknowledged <= set(counts)
    # only tasks running at the kill (their done-marks not yet committed) ran again
    assert twice <= ran_before
    assert takeover < 3 * LEASE


async def test_a_node_paused_past_its_lease_runs_nothing_it_lost_and_its_marks_count_for_nothing(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # Each request queues two tasks that run one after the other; the first waits for
    # its node's release file. At the pause, the first tasks are running on a, the
    # second ones not started.
    releases = {name: tmp_path / f"{name}.release" for name in ("a", "b")}
    with machines(postgres, 2) as (host_a, host_b):
        async with (
            node(host_a, postgres, tmp_path, release=releases["a"]) as a,
            node(host_b, postgres, tmp_path, release=releases["b"]) as b,
        ):
            for n in range(1, 6):
                assert await post(host_a, a.port, f"/work-twice/{n}") == 200
            a.signal(signal.SIGSTOP)
            await b.wait_for_log(r"took over 10 task\(s\) from node node0", timeout=WAIT)
            # a comes back, and its running tasks end: they were running at the pause,
            # and may run twice; its done-marks of them count for nothing (b holds them)
            releases["a"].touch()
            a.signal(signal.SIGCONT)
            await a.wait_for_log(r"registered again as", timeout=WAIT)
            async with asyncio.timeout(WAIT):
                while len(runs(tmp_path)) < 5:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # time for a to run what it should not
            on_a = sorted(n for n, pid in runs(tmp_path) if pid == a.proc.pid)
            assert await pending_count(postgres) == 10
            # b finishes both tasks of every request
            releases["b"].touch()
            async with asyncio.timeout(WAIT):
                while len([1 for _, pid in runs(tmp_path) if pid == b.proc.pid]) < 10:
                    await asyncio.sleep(0.05)
            assert await post(host_a, a.port, "/work/100") == 200  # a serves, on a new lease
    on_b = sorted(n for n, pid in runs(tmp_path) if pid == b.proc.pid)
    print(f"\npaused node: ran on a after its pause {on_a}; on b {on_b}")
    assert on_a == [1, 2, 3, 4, 5]  # the running ones; none of the second tasks
    assert on_b == [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]
    assert await pending_count(postgres) == 0


async def pending_count(postgres: PostgresServer) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM rawbg_tasks")).fetchone()
    assert row is not None
    return int(row[0])
