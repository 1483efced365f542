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
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.journal_nodes import (
    WAIT,
    keep_posting,
    node as journal_node,
    post,
    runs,
    together,
)
from tests.support.netns import Host, NoNamespaces, covering, hosts
from tests.support.postgres_server import PostgresServer
from tests.support.processes import RawbgProcess
from tests.support.services import in_ci

pytestmark = [pytest.mark.slow, pytest.mark.service]

LEASE = 1.0


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


def node(
    host: Host, postgres: PostgresServer, tmp_path: Path, **options: Any
) -> contextlib.AbstractAsyncContextManager[RawbgProcess]:
    return journal_node(host, postgres, tmp_path, lease=LEASE, **options)


async def test_when_one_of_two_nodes_is_sigkilled_the_other_runs_every_task_it_acknowledged(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with machines(postgres, 2) as (host_a, host_b):
        acknowledged: set[int] = set()
        numbers = itertools.count(1)
        async with together(
            node(host_a, postgres, tmp_path, task_seconds=1.0),
            node(host_b, postgres, tmp_path, task_seconds=1.0),
        ) as (a, b):
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
        async with together(
            node(host_a, postgres, tmp_path, release=releases["a"], note_starts=True),
            node(host_b, postgres, tmp_path, release=releases["b"]),
        ) as (a, b):
            for n in range(1, 6):
                assert await post(host_a, a.port, f"/work-twice/{n}") == 200
            async with asyncio.timeout(WAIT):  # each first task runs
                while len(runs(tmp_path, "start")) < 5:
                    await asyncio.sleep(0.01)
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
