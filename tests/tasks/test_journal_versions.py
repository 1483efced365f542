"""A journal written by an older rawbg: migrated in place when it is opened, its tasks kept.

Version 1 had no ``started`` column in ``rawbg_owners`` (what tells a process
from a later one with the same pid). The test builds a version-1 file with
that version's own schema, as the rawbg of that time left it after a kill,
and opens it with today's server: a real SQLite file, a real server.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from rawbg.testing import serve_app
from tests.support import journal_app
from tests.support.processes import environment

# rawbg_meta, rawbg_owners and rawbg_tasks as version 1 created them
V1_SCHEMA = """
CREATE TABLE rawbg_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rawbg_owners (
    owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, lease_until REAL NOT NULL
);
CREATE TABLE rawbg_tasks (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    arguments TEXT NOT NULL,
    label TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    note TEXT
);
CREATE INDEX rawbg_tasks_unfinished ON rawbg_tasks (owner) WHERE state = 0;
INSERT INTO rawbg_meta VALUES ('format', 'rawbg-task-journal'), ('version', '1');
PRAGMA journal_mode = WAL;
"""


def version_1_journal(path: Path, *, pending: list[int]) -> None:
    """A version-1 journal left by a killed process: its owner row, its unfinished tasks."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(V1_SCHEMA)
        # its lease has expired: a version-1 row says nothing else about it
        db.execute(
            "INSERT INTO rawbg_owners VALUES ('killed', ?, 999999999, ?)",
            (socket.gethostname(), time.time() - 60),
        )
        db.executemany(
            "INSERT INTO rawbg_tasks (function, arguments, label, owner, created) "
            "VALUES ('tests.support.journal_app:record_run', ?, 'POST /work', 'killed', 0)",
            [(f"[[{n}],{{}}]",) for n in pending],
        )


def version_and_owner_columns(path: Path) -> tuple[str, list[str]]:
    with closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("SELECT value FROM rawbg_meta WHERE key = 'version'").fetchone()
        columns = [row[1] for row in db.execute("PRAGMA table_info(rawbg_owners)")]
    return version, columns


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file where journal_app's tasks note each run."""
    path = tmp_path / "runs.txt"
    monkeypatch.setattr(journal_app, "RUNS", str(path))
    monkeypatch.setattr(journal_app, "GATE", None)
    return path


async def test_a_version_1_journal_is_migrated_at_open_and_its_pending_tasks_run(
    tmp_path: Path, runs: Path
) -> None:
    journal = tmp_path / "tasks.db"
    version_1_journal(journal, pending=[1, 2, 3])
    async with serve_app(journal_app.app, task_journal=str(journal)) as client:
        # migrated before this server registered: its own row has a start
        version, columns = version_and_owner_columns(journal)
        assert (version, columns[-1]) == ("2", "started")
        async with asyncio.timeout(5.0):
            while not runs.exists() or len(runs.read_text().splitlines()) < 3:
                await asyncio.sleep(0.01)
        await client.wait_for_background()
        assert (await client.post("/work/4")).status_code == 200  # and it journals new work
        await client.wait_for_background()
    ran = sorted(" ".join(line.split()[:2]) for line in runs.read_text().splitlines())
    assert ran == ["run 1", "run 2", "run 3", "run 4"]


def test_several_processes_opening_one_version_1_journal_at_once_migrate_it_once(
    tmp_path: Path,
) -> None:
    """Workers open an old journal together: one migrates it, the others find it migrated."""
    path = tmp_path / "tasks.db"
    version_1_journal(path, pending=[1])
    script = (
        "import sys, time\n"
        "from rawbg.tasks.journal.sqlite import SQLiteTaskStore\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "store = SQLiteTaskStore(sys.argv[1], sync='normal', busy_timeout=1.0)\n"
        "store.open(owner=sys.argv[3], lease_until=time.time() + 30)\n"
        "print(len(store.claim_orphans(owner=sys.argv[3], now=time.time())), flush=True)\n"
        "sys.stdin.read()\n"  # alive until every one has claimed: a dead owner's tasks move
    )
    start = time.time() + 0.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(start), f"owner{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
            text=True,
        )
        for n in range(4)
    ]
    claimed = []
    for proc in procs:
        assert proc.stdout is not None
        claimed.append(proc.stdout.readline().strip())
    outcomes = [proc.communicate(timeout=30) for proc in procs]
    # every one opened it, and the one pending task was claimed by exactly one
    assert sorted(claimed) == ["0", "0", "0", "1"], outcomes
    assert version_and_owner_columns(path) == (
        "2",
        ["owner", "host", "pid", "lease_until", "started"],
    )
