"""The task journal in one process: real SQLite files, a real server on a real socket.

The tests with several processes (a SIGKILL mid-load, a lease takeover) are in
test_journal_processes.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import rawbg
from rawbg import Server
from rawbg.server.config import ServerConfig
from rawbg.tasks.journal.sqlite import INSERT, SQLiteTaskStore
from rawbg.tasks.journal.store import FORMAT_VERSION, JournalError
from rawbg.tasks.policy import TaskPolicy
from rawbg.testing import serve_app
from tests.support import journal_app

WAIT = 5.0


def runs_of(path: Path) -> list[str]:
    return (
        [" ".join(line.split()[:2]) for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


def rows(journal: Path) -> list[tuple[int, str, str, int, int]]:
    with contextlib.closing(sqlite3.connect(journal)) as db:
        return db.execute(
            "SELECT id, function, arguments, state, attempts FROM rawbg_tasks ORDER BY id"
        ).fetchall()


async def until(condition, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_task_is_in_the_journal_when_its_response_arrives_and_gone_once_it_ran(
    tmp_path: Path, runs: Path
):
    journal = tmp_path / "tasks.db"
    journal_app.GATE = asyncio.Event()
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        response = await client.post("/work/7")
        assert response.status_code == 200
        # committed before the first byte: another connection to the file sees it now
        assert [(f, a, s) for _, f, a, s, _ in rows(journal)] == [
            ("tests.support.journal_app:record_run", "[[7],{}]", 0)
        ]
        journal_app.GATE.set()
        await client.wait_for_background()
        assert runs_of(runs) == ["run 7"]
        assert rows(journal) == []  # its work ended only once its done-mark was committed


@pytest.mark.parametrize("path", ["/work/7", "/work-twice/7"])
async def test_a_journaled_tasks_work_ends_only_once_its_done_mark_is_committed(
    tmp_path: Path, runs: Path, path: str
):
    """So that a crash runs again only work that had not ended (one task, and two in a row)."""
    journal = tmp_path / "tasks.db"
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        for _ in range(5):
            assert (await client.post(path)).status_code == 200
            await client.wait_for_background()
            assert rows(journal) == []
    assert len(runs_of(runs)) == 5 * (1 + path.startswith("/work-twice"))


async def test_group_commit_puts_concurrent_requests_in_fewer_transactions(
    tmp_path: Path, runs: Path
):
    async with serve_app(journal_app.app, task_journal=str(tmp_path / "j.db")) as client:
        responses = await asyncio.gather(*(client.post(f"/work/{n}") for n in range(40)))
        assert {r.status_code for r in responses} == {200}
        await client.wait_for_background()
        commits = client.server.journal.commits
    assert sorted(runs_of(runs)) == sorted(f"run {n}" for n in range(40))
    assert commits < 40


async def test_one_commit_per_request_when_group_commit_is_off(tmp_path: Path, runs: Path):
    options = {"task_journal": str(tmp_path / "j.db"), "task_journal_group_commit": False}
    async with serve_app(journal_app.app, **options) as client:
        responses = await asyncio.gather(*(client.post(f"/work/{n}") for n in range(20)))
        assert {r.status_code for r in responses} == {200}
        commits = client.server.journal.commits
    assert commits == 20


async def test_tasks_of_a_response_that_failed_are_dropped_from_the_journal_too(
    tmp_path: Path, runs: Path
):
    journal = tmp_path / "j.db"
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        with pytest.raises(Exception):  # noqa: B017 - the body is cut short: any client error
            await client.post("/stream-fails/4")
        await client.wait_for_background()
        await until(lambda: rows(journal) == [])  # journaled, then dropped with the tasks
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        await client.wait_for_background()
    assert runs_of(runs) == []  # neither then nor at the next start


@pytest.mark.parametrize(
    ("what", "why"),
    [("local", "cannot be imported by name"), ("object", "not JSON-serialisable")],
)
async def test_add_task_of_a_task_that_cannot_be_journaled_raises_type_error_saying_why(
    tmp_path: Path, runs: Path, what: str, why: str
):
    async with serve_app(journal_app.app, task_journal=str(tmp_path / "j.db")) as client:
        error = (await client.post(f"/not-journalable/{what}")).json()["error"]
    assert error is not None
    assert why in error
    assert "@rawbg.task(durable=False)" in error


async def test_without_a_journal_any_task_is_accepted(runs: Path):
    async with serve_app(journal_app.app) as client:
        assert (await client.post("/not-journalable/local")).json() == {"error": None}
        assert (await client.post("/not-journalable/object")).json() == {"error": None}


async def test_a_task_opted_out_with_durable_false_runs_but_is_not_journaled(
    tmp_path: Path, runs: Path
):
    journal = tmp_path / "j.db"
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        assert (await client.post("/opted-out/3")).status_code == 200
        await client.wait_for_background()
        assert client.server.journal.commits == 0
    assert runs_of(runs) == ["not-durable 3"]


async def test_the_request_gets_503_and_its_task_is_not_queued_when_the_journal_is_locked(
    tmp_path: Path, runs: Path
):
    journal = tmp_path / "j.db"
    options = {"task_journal": str(journal), "task_journal_busy_timeout": 0.2}
    async with serve_app(journal_app.app, **options) as client:
        locker = sqlite3.connect(journal, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            refused = await client.post("/work/1")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        accepted = await client.post("/work/2")
        await client.wait_for_background()
    assert refused.status_code == 503
    assert refused.headers.get("retry-after") == "1"
    assert accepted.status_code == 200
    assert runs_of(runs) == ["run 2"]


async def test_retries_with_backoff_without_a_journal(runs: Path, caplog):
    caplog.set_level(logging.WARNING, logger="rawbg.background")
    async with serve_app(journal_app.app) as client:
        await client.post("/flaky/a/2")  # fails twice, succeeds on its third attempt
        await client.post("/flaky/b/5")  # fails all three
        await client.wait_for_background()
    assert journal_app.ATTEMPTS == {"a": 3, "b": 3}
    assert runs_of(runs) == ["flaky a"]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 4
    # only the last attempt of b is an error (another test's failure count may be logged too)
    [final] = [
        r for r in caplog.records if r.levelno == logging.ERROR and "flaky" in r.getMessage()
    ]
    assert final.exc_info[0] is ConnectionError


async def test_a_task_that_fails_its_last_attempt_is_kept_in_the_journal_as_failed(
    tmp_path: Path, runs: Path
):
    journal = tmp_path / "j.db"
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        await client.post("/flaky/c/9")
        await client.wait_for_background()
        await until(lambda: [r[3:] for r in rows(journal)] == [(2, 2)])  # failed, 2 retries noted


def test_backoff_doubles_from_its_first_delay():
    policy = TaskPolicy(retries=3, backoff=0.5)
    assert [policy.delay_before(n) for n in (2, 3, 4)] == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="retries"):
        rawbg.task(retries=-1)


async def test_tasks_cancelled_at_the_shutdown_timeout_stay_and_run_at_the_next_start(
    tmp_path: Path, runs: Path, caplog
):
    caplog.set_level(logging.INFO, logger="rawbg.server")
    journal = tmp_path / "j.db"
    options = {"task_journal": str(journal), "timeout_graceful_shutdown": 0.1}
    journal_app.GATE = asyncio.Event()  # never set while the first server runs
    async with serve_app(journal_app.app, **options) as client:
        for n in (1, 2):
            assert (await client.post(f"/work/{n}")).status_code == 200
    assert runs_of(runs) == []
    assert len(rows(journal)) == 2

    journal_app.GATE = None
    async with serve_app(journal_app.app, **options) as client:
        await until(lambda: len(runs_of(runs)) == 2)
        await client.wait_for_background()
        await until(lambda: rows(journal) == [])
    assert sorted(runs_of(runs)) == ["run 1", "run 2"]
    assert any("2 unfinished task(s) recovered" in r.getMessage() for r in caplog.records)


def make_journal(path: Path) -> None:
    """Create an empty journal, as a server's first start does."""

    async def start_and_stop() -> None:
        server = Server(journal_app.app, ServerConfig(port=0, task_journal=str(path)))
        await server.start()
        await server.shutdown()

    asyncio.run(start_and_stop())


async def test_an_entry_whose_function_no_longer_imports_is_set_aside_and_kept(
    tmp_path: Path, runs: Path, caplog
):
    journal = tmp_path / "j.db"
    await asyncio.to_thread(make_journal, journal)
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        insert = (
            "INSERT INTO rawbg_tasks (function, arguments, label, owner, created) "
            "VALUES (?, ?, ?, 'gone', 0)"
        )
        db.execute(insert, ("tests.support.journal_app:renamed_since", "[[1],{}]", "POST /x"))
        db.execute(insert, ("tests.support.journal_app:record_run", "not json", "POST /x"))
        db.execute(insert, ("tests.support.journal_app:record_run", "[[5],{}]", "POST /x"))
    caplog.set_level(logging.ERROR, logger="rawbg.journal")
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        await until(lambda: runs_of(runs) == ["run 5"])
        await client.wait_for_background()
        assert (await client.post("/work/6")).status_code == 200  # it still serves
        await client.wait_for_background()
    messages = [r.getMessage() for r in caplog.records]
    assert any("set aside" in m and "renamed_since" in m for m in messages)
    assert any("set aside" in m and "corrupt" in m for m in messages)
    await until(
        lambda: (
            [(f, s) for _, f, _, s, _ in rows(journal)]
            == [
                ("tests.support.journal_app:renamed_since", 3),
                ("tests.support.journal_app:record_run", 3),
            ]
        )
    )


async def test_trace_shows_journaled_recovered_and_retry_events(tmp_path: Path, runs: Path, caplog):
    caplog.set_level(logging.INFO, logger="rawbg.trace")
    journal = tmp_path / "j.db"
    options = {"task_journal": str(journal), "trace": True, "timeout_graceful_shutdown": 0.05}
    journal_app.GATE = asyncio.Event()
    async with serve_app(journal_app.app, **options) as client:
        await client.post("/work/1")
        await client.post("/flaky/t/1")
        await until(lambda: journal_app.ATTEMPTS.get("t") == 2)
    journal_app.GATE = None
    async with serve_app(journal_app.app, **options) as client:
        await until(lambda: runs_of(runs).count("run 1") == 1)
    events = [r.getMessage() for r in caplog.records]
    assert any("journaled" in e and "entries=1" in e for e in events)
    assert any("retry" in e and "task=flaky" in e and "attempt=2" in e for e in events)
    assert any(
        e.startswith("journal req") and "recovered" in e and "record_run" in e for e in events
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("directory", "is a directory"),
        ("missing parent", "cannot open"),
        ("text file", "not a usable task journal"),
        ("other database", "not a rawbg task journal"),
        ("newer version", "newer rawbg"),
    ],
)
async def test_a_journal_that_cannot_be_used_is_a_clear_start_up_error(
    tmp_path: Path, setup: str, message: str
):
    path = tmp_path / "j.db"
    if setup == "directory":
        path.mkdir()
    elif setup == "missing parent":
        path = tmp_path / "no" / "such" / "j.db"
    elif setup == "text file":
        path.write_text("these are my notes, not a database\n" * 100)
    elif setup == "other database":
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE users (name TEXT)")
    else:
        await asyncio.to_thread(make_journal, path)
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "UPDATE rawbg_meta SET value = ? WHERE key = 'version'", (str(FORMAT_VERSION + 1),)
            )
    server = Server(journal_app.app, ServerConfig(port=0, task_journal=str(path)))
    with pytest.raises(JournalError, match=message) as raised:
        await server.start()
    assert "\n" not in str(raised.value)


def test_several_processes_opening_one_new_journal_at_once_all_open_it(tmp_path):
    """Workers open a new journal together; the WAL switch must not fail one of them."""
    import subprocess
    import sys

    path = tmp_path / "tasks.db"
    script = (
        "import sys, time\n"
        "from rawbg.tasks.journal.sqlite import SQLiteTaskStore\n"
        "start = float(sys.argv[2])\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "store = SQLiteTaskStore(sys.argv[1], sync='normal', busy_timeout=1.0)\n"
        "store.open(owner=sys.argv[3], lease_until=time.time() + 30)\n"
        "print('opened')\n"
    )
    import time

    start = time.time() + 0.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(start), f"owner{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    outcomes = [proc.communicate(timeout=30) for proc in procs]
    assert [out.strip() for out, _ in outcomes] == ["opened"] * 6, [err for _, err in outcomes]


def remove_journal(journal: Path) -> None:
    """``rm tasks.db*``: the file and SQLite's -wal and -shm beside it."""
    for path in journal.parent.glob(journal.name + "*"):
        path.unlink()


@pytest.mark.parametrize("change", ["deleted", "replaced"])
async def test_a_journal_deleted_or_replaced_under_the_server_gets_no_acknowledgement_into_it(
    tmp_path: Path, runs: Path, change: str
):
    # Issue 24: after `rm tasks.db*` (or a new journal moved to its path) the server went on
    # answering 200, journaling into the file it still had open, which no restart reads:
    # about 8,000 acknowledged tasks were lost. Either the request is refused (503), or its
    # task is in the journal that the path names now.
    journal = tmp_path / "tasks.db"
    journal_app.GATE = asyncio.Event()  # the tasks stay pending: their rows stay
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        try:
            assert (await client.post("/work/1")).status_code == 200
            remove_journal(journal)
            if change == "replaced":
                other = tmp_path / "other.db"
                SQLiteTaskStore(str(other), sync="normal", busy_timeout=1.0).check()
                other.rename(journal)
            response = await client.post("/work/2")
        finally:
            journal_app.GATE.set()
        await client.wait_for_background()
    if response.status_code == 503:
        return
    assert response.status_code == 200, response.status_code
    assert journal.exists(), "acknowledged, and there is no journal at the path"
    assert "[[2],{}]" in [arguments for _, _, arguments, _, _ in rows(journal)]


async def test_a_deleted_journal_is_one_error_in_the_log_however_many_requests_it_refuses(
    tmp_path: Path, runs: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="rawbg")
    journal = tmp_path / "tasks.db"
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        assert (await client.post("/work/1")).status_code == 200
        await client.wait_for_background()  # its done-mark went into the open file
        remove_journal(journal)
        statuses = [(await client.post(f"/work/{n}")).status_code for n in range(2, 12)]
        await client.wait_for_background()
    assert statuses == [503] * 10
    records = rawbg_records(caplog)
    assert len(records) <= 4, records  # not one or two per refused request
    moved = [r for r in records if r.startswith("ERROR") and "no longer the file" in r]
    # the first refusal's error; the writer logs a failure once per streak
    assert [r.split(":")[0] for r in moved] == ["ERROR the task journal could not commit"], moved
    assert runs_of(runs) == ["run 1"]


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the test (skipped where mount is not allowed)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def fill(path: Path) -> None:
    """Take every free block of the filesystem that `path` is on."""
    with open(path, "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(bytes(4096))


def fill_after_emptying_the_wal(journal: Path, filler: Path) -> None:
    """A full disk with nothing in the journal's WAL to give back.

    A journal that meets a full disk truncates its WAL and commits again in the
    space that frees, so a WAL with frames in it would let the next commits
    through: emptied first, it has none.
    """
    with contextlib.closing(sqlite3.connect(journal)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    fill(filler)


def rawbg_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("rawbg.") and r.levelno >= logging.WARNING
    ]


async def test_a_journal_on_a_small_filesystem_keeps_serving_as_its_wal_is_checkpointed(
    tmp_path: Path, runs: Path
):
    # Issue 24: on a small filesystem the WAL filled it within a second, and from then on
    # every durable request got 503. Here each task runs and is marked done before the
    # next request, so the journal's live content is one row: 2 MiB is room enough if the
    # WAL is checkpointed and kept small. Today the first 503 comes after about 130
    # requests, once the WAL holds 2 MiB.
    with small_filesystem(tmp_path / "small", "2m") as small:
        journal = small / "tasks.db"
        statuses = collections.Counter()
        async with serve_app(journal_app.app, task_journal=str(journal)) as client:
            for n in range(400):
                statuses[(await client.post(f"/work/{n}")).status_code] += 1
                await client.wait_for_background()
            wal = (small / "tasks.db-wal").stat().st_size
    assert statuses == {200: 400}, statuses
    assert wal < 1024 * 1024, wal


async def test_refusals_on_a_full_disk_are_logged_a_few_times_not_once_each(
    tmp_path: Path, runs: Path, caplog: pytest.LogCaptureFixture
):
    # Issue 24 counted 7,433 log lines in 6 s on a full disk: an ERROR for each failed
    # commit and a WARNING for each refused request. Task failures are already logged once
    # per interval with a count (rawbg/tasks/failure_log.py); these should be too.
    caplog.set_level(logging.WARNING, logger="rawbg")
    with small_filesystem(tmp_path / "small", "1m") as small:
        journal = small / "tasks.db"
        async with serve_app(journal_app.app, task_journal=str(journal)) as client:
            fill_after_emptying_the_wal(journal, small / "filler")
            statuses = [(await client.post(f"/work/{n}")).status_code for n in range(40)]
            (small / "filler").unlink()
            await client.wait_for_background()
    assert statuses.count(503) >= 35, statuses
    assert len(rawbg_records(caplog)) <= 6, rawbg_records(caplog)


async def test_a_journal_on_a_full_disk_commits_again_as_soon_as_space_is_freed(
    tmp_path: Path, runs: Path
):
    # Issue 24: once the disk had been full, the server stayed at 503 after space was freed.
    with small_filesystem(tmp_path / "small", "1m") as small:
        journal = small / "tasks.db"
        async with serve_app(journal_app.app, task_journal=str(journal)) as client:
            fill_after_emptying_the_wal(journal, small / "filler")
            refused = (await client.post("/work/1")).status_code
            (small / "filler").unlink()
            served = (await client.post("/work/2")).status_code
            await client.wait_for_background()
    assert (refused, served) == (503, 200)
    assert runs_of(runs) == ["run 2"]


async def test_a_task_that_ends_on_a_full_disk_stays_pending_until_its_done_mark_is_committed(
    tmp_path: Path, runs: Path
):
    # Issue 24: done-marks failed while the disk was full and the work counted as ended,
    # so after a crash 3,215 tasks that had finished ran again. Now the work ends only
    # once its mark is in the file: while the disk is full it stays pending (a crash
    # then runs it again, as it does for any task still running), and once space is
    # free the mark is retried and committed by itself.
    with small_filesystem(tmp_path / "small", "1m") as small:
        journal = small / "tasks.db"
        journal_app.GATE = asyncio.Event()
        async with serve_app(journal_app.app, task_journal=str(journal)) as client:
            assert (await client.post("/work/1")).status_code == 200
            fill_after_emptying_the_wal(journal, small / "filler")
            journal_app.GATE.set()
            await until(lambda: runs_of(runs) == ["run 1"])
            await asyncio.sleep(0.5)  # its mark has failed by now, and been retried
            assert client.server.pending.count == 1, "the work ended with its mark unwritten"
            (small / "filler").unlink()
            await client.wait_for_background()  # the retried mark is committed
            assert rows(journal) == []


def leave_orphans(journal: Path, count: int) -> None:
    """A journal holding `count` unfinished `record_run` tasks of an owner that is gone."""
    SQLiteTaskStore(str(journal), sync="normal", busy_timeout=1.0).check()
    with contextlib.closing(sqlite3.connect(journal, isolation_level=None)) as db:
        db.execute("BEGIN")
        for n in range(count):
            function = "tests.support.journal_app:record_run"
            row = (function, f"[[{n}],{{}}]", "POST /work/{n}", "gone", 0)
            db.execute(INSERT, row)
        db.execute("COMMIT")


async def test_a_recovered_backlog_over_the_pending_bound_leaves_the_server_answering(
    tmp_path: Path, runs: Path
):
    # Issue 24: with 20,000 recovered tasks the server accepted connections and answered
    # nothing, not even a 404 or a 503, for 8.6 s. Every recovered task is admitted at once,
    # over the bound, and a connection reads no request while the bound is full: here the
    # 200 recovered tasks wait (as long ones would) and nothing is answered until they end.
    journal = tmp_path / "tasks.db"
    leave_orphans(journal, 200)
    journal_app.GATE = asyncio.Event()
    options = {"task_journal": str(journal), "max_pending_tasks": 20}
    async with serve_app(journal_app.app, **options) as client:
        try:
            async with asyncio.timeout(1.0):
                response = await client.get("/health")
        except TimeoutError:
            raise AssertionError("no answer within 1 s of listening") from None
        finally:
            journal_app.GATE.set()
            await client.wait_for_background()
    assert response.status_code == 404
    assert len(runs_of(runs)) == 200  # and the backlog all ran
