"""Whose journaled tasks may be taken over: a process that was killed and not yet reaped is gone.

A SIGKILLed process stays a zombie until its parent reaps it; when that parent
was killed too (a supervisor and its workers, all killed at once), the zombie
waits for init, which in a container may never come. ``kill(pid, 0)`` still
succeeds on a zombie, so the next start took its tasks as a live process's and
ran them only once its lease expired (up to ``--task-journal-lease``, 30 s),
instead of at start-up. No socket: the journal file and a real zombie process.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawbg.journal import NewEntry
from rawbg.sqlite_journal import SQLiteTaskStore

FAR = 3600.0  # a lease that does not expire during the test


@pytest.fixture
def zombie() -> Iterator[int]:
    """The pid of a child that has exited and is not reaped yet."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    else:
        pytest.fail(f"child {pid} did not become a zombie")
    try:
        yield pid
    finally:
        os.waitpid(pid, 0)


def journal_with_one_task_of(path: Path, pid: int) -> None:
    """A journal holding one unfinished task owned by process `pid` of this host."""
    store = SQLiteTaskStore(str(path), sync="normal", busy_timeout=1.0)
    store.open(owner="killed", lease_until=time.time() + FAR)
    try:
        store.write(
            [[NewEntry("tests.journal_app:record", "[[1],{}]", "POST /t")]],
            owner="killed",
            finished=[],
            attempts=[],
        )
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE rawbg_owners SET pid = ? WHERE owner = 'killed'", (pid,))


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombies are read from /proc")
def test_the_tasks_of_a_killed_process_not_yet_reaped_are_taken_over_at_once(
    tmp_path: Path, zombie: int
) -> None:
    path = tmp_path / "tasks.db"
    journal_with_one_task_of(path, zombie)
    store = SQLiteTaskStore(str(path), sync="normal", busy_timeout=1.0)
    store.open(owner="restarted", lease_until=time.time() + FAR)
    try:
        taken = store.claim_orphans(owner="restarted", now=time.time())
    finally:
        store.close()
    assert [entry.function for entry in taken] == ["tests.journal_app:record"]


def test_the_tasks_of_a_live_process_are_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    journal_with_one_task_of(path, os.getppid())  # alive: the process that ran pytest
    store = SQLiteTaskStore(str(path), sync="normal", busy_timeout=1.0)
    store.open(owner="restarted", lease_until=time.time() + FAR)
    try:
        taken = store.claim_orphans(owner="restarted", now=time.time())
    finally:
        store.close()
    assert taken == []
