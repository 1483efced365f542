"""The task journal on PostgreSQL, in one process: a real server on a real socket, a real cluster.

Each test gets a cluster of its own (the ``postgres`` fixture: a copy of one
template, about 0.3 s). Several nodes are several `Server`s of this process,
each with its own registration: what the database sees of several machines.
The tests with real processes (SIGKILL, SIGSTOP, network namespaces) are in
test_journal_postgres_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rawbg.server.config import ServerConfig, configured_store
from rawbg.tasks.journal import postgres as pg_journal
from rawbg.tasks.journal.postgres import ID_BITS, PostgresTaskStore
from rawbg.tasks.journal.store import JournalError, LeaseLost, NewEntry
from rawbg.testing import serve_app
from tests.support import journal_app
from tests.support.journal_nodes import entry_count, leave_entries
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.service

WAIT = 10.0


def ran(path: Path) -> list[int]:
    """The task numbers that ran, in the order they finished."""
    if not path.exists():
        return []
    return [
        int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("run")
    ]


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def pending(url: str) -> list[str]:
    """The arguments of every pending entry."""
    return sorted(row[0] for row in sql(url, "SELECT arguments FROM rawbg_tasks"))


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def node(url: str, **options: Any) -> AsyncIterator[Any]:
    """A server of journal_app on the PostgreSQL journal at `url`: one node."""
    async with serve_app(journal_app.app, task_journal=url, **options) as client:
        yield client


async def test_a_task_is_in_the_database_when_its_response_arrives_and_gone_once_it_ran(
    postgres: PostgresServer, runs: Path
) -> None:
    journal_app.GATE = asyncio.Event()
    async with node(postgres.url) as client:
        response = await client.post("/work/7")
        assert response.status_code == 200
        assert pending(postgres.url) == ["[[7],{}]"]
        journal_app.GATE.set()
        await client.wait_for_background()
        assert pending(postgres.url) == []
    assert ran(runs) == [7]


async def test_concurrent_requests_share_a_group_commit(postgres: PostgresServer, runs: Path):
    async with node(postgres.url) as client:
        await client.post("/work/0")  # the first commit prepares nothing yet
        journal = client.server.journal
        before = journal.commits
        responses = await asyncio.gather(*(client.post(f"/work/{n}") for n in range(1, 33)))
        await client.wait_for_background()
        assert {r.status_code for r in responses} == {200}
        assert journal.commits - before < 32
    assert sorted(ran(runs)) == list(range(33))


def test_a_postgresql_url_names_the_postgresql_store_and_a_path_sqlite(tmp_path: Path):
    shared = ServerConfig(task_journal="postgresql://rawbg@127.0.0.1:1/db")
    assert isinstance(configured_store(shared), PostgresTaskStore)
    assert shared.journal_lease == 10.0
    local = ServerConfig(task_journal=str(tmp_path / "postgresql:" / "tasks.db"))
    assert type(configured_store(local)).__name__ == "SQLiteTaskStore"
    assert local.journal_lease == 30.0


def test_the_password_of_a_journal_url_is_never_shown():
    config = ServerConfig(task_journal="postgresql://app:s3cret@db.example:5432/tasks")
    assert config.journal_name == "postgresql://app:***@db.example:5432/tasks"


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pg_journal, "HAVE_PSYCOPG", False)
    with pytest.raises(JournalError, match=r"pip install 'rawbg\[postgres\]'"):
        configured_store(ServerConfig(task_journal="postgresql://rawbg@127.0.0.1:1/db"))


def store(url: str, *, lease: float = 10.0) -> PostgresTaskStore:
    return PostgresTaskStore(url, lease=lease, commit_deadline=1.0)


def test_an_unreachable_database_is_a_one_line_start_up_error(postgres: PostgresServer):
    postgres.stop()
    with pytest.raises(JournalError, match="cannot connect") as failure:
        store(postgres.url).check()
    assert "\n" not in str(failure.value)


def test_the_schema_is_created_with_its_version_once_by_nodes_starting_together(
    postgres: PostgresServer,
):
    import threading

    errors: list[BaseException] = []

    def check() -> None:
        try:
            store(postgres.url).check()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert dict(sql(postgres.url, "SELECT key, value FROM rawbg_meta")) == {
        "format": "rawbg-task-journal",
        "version": str(pg_journal.SCHEMA_VERSION),
    }


def test_tables_of_a_newer_rawbg_or_of_someone_else_are_refused(postgres: PostgresServer):
    store(postgres.url).check()
    sql(postgres.url, "UPDATE rawbg_meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(JournalError, match="newer rawbg"):
        store(postgres.url).check()
    sql(postgres.url, "DROP TABLE rawbg_meta")
    with pytest.raises(JournalError, match="not a rawbg task journal"):
        store(postgres.url).check()


def test_an_older_schema_is_migrated_in_one_transaction_with_its_version(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    store(postgres.url).check()
    # a future version 2 adds a column: a journal of version 1 is brought to it
    monkeypatch.setattr(pg_journal, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(
        pg_journal, "MIGRATIONS", {1: ("ALTER TABLE rawbg_tasks ADD COLUMN priority integer",)}
    )
    caplog.set_level(logging.INFO, logger="rawbg.journal")
    store(postgres.url).check()
    assert sql(postgres.url, "SELECT value FROM rawbg_meta WHERE key = 'version'") == [("2",)]
    assert sql(postgres.url, "SELECT count(*) FROM rawbg_tasks WHERE priority IS NULL") == [(0,)]
    assert "migrated its tables from version 1 to 2" in caplog.text
    # a migration that fails leaves the version and the tables as they were
    monkeypatch.setattr(pg_journal, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(
        pg_journal, "MIGRATIONS", {2: ("ALTER TABLE rawbg_tasks ADD COLUMN x int", "SELECT 1/0")}
    )
    with pytest.raises(JournalError, match="division by zero"):
        store(postgres.url).check()
    assert sql(postgres.url, "SELECT value FROM rawbg_meta WHERE key = 'version'") == [("2",)]


def entries(count: int) -> list[NewEntry]:
    return [
        NewEntry("tests.support.journal_app:record_run", f"[[{n}],{{}}]", "POST /work/{n}")
        for n in range(count)
    ]


def test_a_fenced_node_commits_nothing_and_its_late_done_marks_count_for_nothing(
    postgres: PostgresServer,
):
    # `a` stops renewing (a pause); `b`, renewing all along, takes over its entries.
    a, b = store(postgres.url, lease=0.5), store(postgres.url, lease=30)
    a.open(owner="a", lease_until=0)
    b.open(owner="b", lease_until=0)
    [ids] = a.write([entries(3)], owner="a", finished=(), attempts=())
    assert all(a.holds(entry_id) for entry_id in ids)
    # b's streak must cover a lease of a's since a's last renewal (rule 7)
    time.sleep(0.6)
    b.renew(owner="b", lease_until=0)
    taken = b.claim_orphans(owner="b", now=0)
    assert sorted(entry.arguments for entry in taken) == ["[[0],{}]", "[[1],{}]", "[[2],{}]"]
    assert all(entry.id >> ID_BITS != ids[0] >> ID_BITS for entry in taken)  # new ids
    # a is back: its done-marks of the entries it held change nothing...
    with pytest.raises(LeaseLost):
        a.write([], owner="a", finished=[postgres_outcome(i) for i in ids], attempts=())
    assert len(pending(postgres.url)) == 3
    # ...it registered again, and holds none of them
    assert not any(a.holds(entry_id) for entry_id in ids)
    assert not any(a.holds(entry.id) for entry in taken)
    assert all(b.holds(entry.id) for entry in taken)
    b.write([], owner="b", finished=[postgres_outcome(e.id) for e in taken], attempts=())
    assert pending(postgres.url) == []
    a.close()
    b.close()


def postgres_outcome(entry_id: int) -> Any:
    from rawbg.tasks.journal.store import Outcome

    return Outcome(entry_id, failed=False)


def test_a_renewal_after_a_takeover_is_refused_and_the_node_registers_again(
    postgres: PostgresServer,
):
    a, b = store(postgres.url, lease=0.5), store(postgres.url, lease=30)
    a.open(owner="a", lease_until=0)
    b.open(owner="b", lease_until=0)
    a.write([entries(1)], owner="a", finished=(), attempts=())
    time.sleep(0.6)
    b.renew(owner="b", lease_until=0)
    assert len(b.claim_orphans(owner="b", now=0)) == 1
    with pytest.raises(LeaseLost, match="registered again"):
        a.renew(owner="a", lease_until=0)
    assert isinstance(a.renew(owner="a", lease_until=0), float)  # the new one renews
    a.close()
    b.close()


# -- faults: the database hangs, restarts -------------------------------------------


async def test_while_the_database_hangs_durable_requests_get_503_at_the_deadline_and_others_200(
    postgres: PostgresServer, runs: Path
) -> None:
    async with node(postgres.url, task_journal_busy_timeout=0.5) as client:
        assert (await client.post("/work/1")).status_code == 200
        await client.wait_for_background()
        postgres.pause()  # connections are accepted, nothing is answered
        try:
            began = time.monotonic()
            refused = await client.post("/work/2")
            waited = time.monotonic() - began
            # a request that queues no durable task does not need the database
            opted_out = await client.post("/opted-out/3")
        finally:
            postgres.resume()
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert 0.45 <= waited < 1.5, waited
        assert opted_out.status_code == 200
        # the node reconnects by itself, and acknowledges again
        async with asyncio.timeout(WAIT):
            while (await client.post("/work/4")).status_code != 200:
                await asyncio.sleep(0.1)
        await client.wait_for_background()
    # the server ran the refused request's commit once it ran again: the node deleted it
    assert pending(postgres.url) == []
    assert 2 not in ran(runs)
    assert {1, 4} <= set(ran(runs))


async def test_a_database_restart_mid_load_refuses_with_503_then_loses_nothing(
    postgres: PostgresServer, runs: Path
) -> None:
    acknowledged: set[int] = set()
    refused: set[int] = set()
    others: list[int] = []
    numbers = iter(range(1, 1_000_000))

    async with node(postgres.url) as client:

        async def durable() -> None:
            while not stop.is_set():
                n = next(numbers)
                response = await client.post(f"/work/{n}")
                if response.status_code == 200:
                    acknowledged.add(n)
                else:
                    assert response.status_code == 503, response.status_code
                    assert response.headers["retry-after"] == "1"
                    refused.add(n)

        async def not_durable() -> None:
            while not stop.is_set():
                others.append((await client.post(f"/opted-out/{next(numbers)}")).status_code)

        stop = asyncio.Event()
        load = [asyncio.create_task(durable()) for _ in range(8)]
        load.append(asyncio.create_task(not_durable()))
        await asyncio.sleep(0.5)
        restarted_at = len(acknowledged)
        await asyncio.to_thread(postgres.restart)
        async with asyncio.timeout(WAIT):  # acknowledged again after the restart
            while len(acknowledged) < restarted_at + 50:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*load)
        await client.wait_for_background()
        assert pending(postgres.url) == []
    print(
        f"\ndatabase restart: {len(acknowledged)} acknowledged, {len(refused)} refused (503), "
        f"{len(others)} requests without durable tasks"
    )
    assert refused, "no request fell in the restart"
    assert set(others) == {200}
    assert acknowledged <= set(ran(runs))  # nothing acknowledged was lost
    assert not refused & set(ran(runs))  # nothing refused ran


# -- takeover, release ------------------------------------------------------------------


async def test_a_takeover_is_logged_naming_the_dead_node_and_counted_in_the_trace(
    postgres: PostgresServer, runs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rawbg")
    dead = store(postgres.url, lease=0.3)
    dead.open(owner="the-dead-node", lease_until=0)
    dead.write([entries(3)], owner="the-dead-node", finished=(), attempts=())
    dead.close()  # no release: as if it was killed
    async with node(postgres.url, task_journal_lease=0.5, trace=True) as client:
        await until(lambda: len(ran(runs)) == 3)
        await client.wait_for_background()
        await until(lambda: "taken_over=3" in caplog.text)
    assert sorted(ran(runs)) == [0, 1, 2]
    assert "took over 3 task(s) from node the-dead-node (its lease ended" in caplog.text
    assert "journal counts  pending=0 running=0 taken_over=3" in caplog.text


async def test_a_node_that_stops_hands_its_unfinished_tasks_to_another_at_once(
    postgres: PostgresServer, runs: Path
) -> None:
    # Leases of a minute: a takeover that waited for one would not come in time.
    journal_app.GATE = asyncio.Event()
    async with node(postgres.url, task_journal_lease=60) as other:
        async with node(
            postgres.url, task_journal_lease=60, timeout_graceful_shutdown=0.2
        ) as stopping:
            assert (await stopping.post("/work/1")).status_code == 200
            await asyncio.sleep(0.05)  # it runs, and waits
        # cancelled at the shutdown timeout: it stays in the journal, the node's row is
        # fenced, and the other node, told by NOTIFY, takes it at once
        journal_app.GATE.set()
        began = time.monotonic()
        await until(lambda: ran(runs) == [1], timeout=5)
        print(f"\ntaken over {time.monotonic() - began:.3f} s after the stop")
        assert time.monotonic() - began < 2  # its heartbeat is every 12 s
        assert other.server.journal is not None and other.server.journal.taken_over == 1


async def test_tasks_not_started_when_a_stop_begins_go_to_another_node(
    postgres: PostgresServer, runs: Path
) -> None:
    async with node(postgres.url, task_journal_lease=60) as other:
        async with node(postgres.url, task_journal_lease=60) as stopping:
            journal = stopping.server.journal
            assert journal is not None
            journal.release_unstarted()  # what its shutdown does first
            # a request still in progress at the stop is answered: its task is recorded,
            # and started by the other node, not here
            assert (await stopping.post("/work/9")).status_code == 200
            await until(lambda: ran(runs) == [9], timeout=5)
            assert journal.running == 0
        assert other.server.journal is not None and other.server.journal.taken_over == 1


# -- many entries --------------------------------------------------------------------


async def test_with_100_000_entries_pending_a_node_starts_at_once_and_takes_them_steadily(
    postgres: PostgresServer,
) -> None:
    # What must not grow with the backlog: the start-up (no scan of the table) and
    # the cost of each takeover (a batch of 1 000 found by the primary key). Taking
    # all 100 000 is measured by the benchmarks (benchmarks/pg_takeover.py); here,
    # the first 10 000, at the rate the node can run them.
    leave_entries(postgres.url, 100_000)
    began = time.monotonic()
    async with node(postgres.url) as client:
        up = time.monotonic() - began
        journal = client.server.journal
        assert journal is not None
        async with asyncio.timeout(30):
            while (left := await asyncio.to_thread(entry_count, postgres.url)) > 90_000:
                await asyncio.sleep(0.1)
        took = time.monotonic() - began - up
        taken = journal.taken_over
    print(
        f"\n100 000 pending: serving after {up:.2f} s; {100_000 - left} taken and run in "
        f"{took:.2f} s ({(100_000 - left) / took:.0f}/s)"
    )
    assert up < 2.0
    assert taken >= 10_000


def test_two_nodes_taking_over_the_same_dead_node_at_once_never_take_an_entry_twice(
    postgres: PostgresServer,
) -> None:
    import threading

    leave_entries(postgres.url, 10_000)
    claimers = [store(postgres.url, lease=60) for _ in range(2)]
    for n, claimer in enumerate(claimers):
        claimer.open(owner=f"claimer-{n}", lease_until=0)
    got: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def take_all(n: int) -> None:
        start.wait()
        # a claimer that finds the dead node locked by the other skips it (and finds
        # nothing): it tries again, as its next heartbeat would
        while len(got[0]) + len(got[1]) < 10_000:
            got[n].extend(
                e.arguments for e in claimers[n].claim_orphans(owner="", now=0, limit=250)
            )

    threads = [threading.Thread(target=take_all, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for claimer in claimers:
        claimer.close()
    print(f"\ntwo claimers of 10 000 entries: {len(got[0])} and {len(got[1])}")
    assert not set(got[0]) & set(got[1])
    assert len(got[0]) + len(got[1]) == 10_000 == len(set(got[0]) | set(got[1]))
