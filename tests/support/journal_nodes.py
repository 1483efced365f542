"""Task-journal nodes on hosts of their own, under load: for the PostgreSQL tests and benchmarks.

`node` starts ``python -m rawbg tests.support.journal_app:app`` on a host of
tests/support/netns.py, journaling in a PostgreSQL of
tests/support/postgres_server.py that the host reaches at its gateway;
`keep_posting` is one keep-alive client; `runs` reads what the tasks ran;
`leave_entries` fills a journal with the entries of a node that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg

from rawbg.tasks.journal.postgres import PostgresTaskStore
from tests.support import REPO
from tests.support.netns import Host
from tests.support.postgres_server import USER, PostgresServer
from tests.support.processes import RawbgProcess, rawbg_process
from tests.support.wire import RawClient, request_bytes

WAIT = 20.0


@contextlib.asynccontextmanager
async def together(
    *managers: contextlib.AbstractAsyncContextManager[RawbgProcess],
) -> AsyncIterator[list[RawbgProcess]]:
    """Enter `managers` at once (nodes start in parallel: each takes a second or two to
    import); leave every one that was entered on exit."""
    async with contextlib.AsyncExitStack() as stack:
        entered = await asyncio.gather(
            *(stack.enter_async_context(manager) for manager in managers),
            return_exceptions=True,
        )
        for outcome in entered:
            if isinstance(outcome, BaseException):
                raise outcome
        yield [outcome for outcome in entered if isinstance(outcome, RawbgProcess)]


@contextlib.asynccontextmanager
async def node(
    host: Host,
    postgres: PostgresServer,
    directory: Path,
    *,
    lease: float | None = None,
    task_seconds: float = 0.0,
    release: Path | None = None,
    note_starts: bool = False,
) -> AsyncIterator[RawbgProcess]:
    """journal_app on `host`, journaling in `postgres`; SIGTERMed (then killed) on exit.

    Its tasks note each run in `directory`/runs.txt (`runs`), and each start
    too with `note_starts` (`starts`); they take `task_seconds`, and wait for
    the file `release` if given.
    """
    url = f"postgresql://{USER}@{host.gateway}:{postgres.port}/postgres"
    args = ["tests.support.journal_app:app", "--app-dir", str(REPO), "--host", host.address]
    args += ["--port", "0", "--no-access-log", "--task-journal", url]
    if lease is not None:
        args += ["--task-journal-lease", str(lease)]
    env = {"JOURNAL_TEST_RUNS": str(directory / "runs.txt")}
    env["JOURNAL_TEST_TASK_SECONDS"] = repr(task_seconds)
    if release is not None:
        env["JOURNAL_TEST_RELEASE"] = str(release)
    if note_starts:
        env["JOURNAL_TEST_NOTE_STARTS"] = "1"
    async with rawbg_process(directory, *args, prefix=host.command([]), **env) as process:
        yield process


def runs(directory: Path, kind: str = "run") -> list[tuple[int, int]]:
    """(task number, pid of the node that ran it), one per finished run (or per start)."""
    path = directory / "runs.txt"
    if not path.exists():
        return []
    return [
        (int(n), int(pid))
        for noted, n, pid in (line.split() for line in path.read_text().splitlines())
        if noted == kind
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


DEAD_NODE = """
INSERT INTO rawbg_nodes (name, host, pidns, pid, lease, lease_until, streak_since, fenced_at)
VALUES ('the-dead-node', 'elsewhere', '', 1, interval '10 s', '-infinity', now(), now())
RETURNING token"""


def leave_entries(
    url: str, count: int, function: str = "tests.support.journal_app:nothing"
) -> None:
    """`count` pending entries of a node that is gone (fenced: taken over without waiting)."""
    PostgresTaskStore(url, lease=10.0, commit_deadline=1.0).check()
    [(token,)] = sql(url, DEAD_NODE)
    sql(
        url,
        "INSERT INTO rawbg_tasks (id, function, arguments, label) "
        "SELECT (%s::bigint << 40) | n, %s, '[[' || n || '],{}]', 'POST /work' "
        "FROM generate_series(1, %s) AS n",
        token,
        function,
        count,
    )


def entry_count(url: str) -> int:
    """How many entries the journal at `url` holds."""
    return int(sql(url, "SELECT count(*) FROM rawbg_tasks")[0][0])


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []
