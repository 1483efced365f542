"""Whose journaled tasks may be taken over at once, before their owner's lease expires.

An owner of this host is gone when its process no longer runs. A pid alone
cannot say so:

* a SIGKILLed process stays a zombie until its parent reaps it; when that parent
was killed too (a supervisor and its workers, all killed at once), the zombie
waits for init, which in a container may never come. ``kill(pid, 0)`` still
succeeds on a zombie, so the next start took its tasks as a live process's and
ran them only once its lease expired (up to ``--task-journal-lease``, 30 s),
instead of at start-up;
* a container whose rawbg is PID 1, killed and restarted, gets the dead
  owner's pid back, and any pid is in time reused by another process: the
  pid runs, and the dead owner's tasks waited out its lease too. The owner
  row now records its process's start (boot id and start time), and a pid
  that runs a process with another start is gone.

No socket: the journal file, the store, and real processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from rawbg.tasks.journal.sqlite import SQLiteTaskStore, process_start
from rawbg.tasks.journal.store import NewEntry
from tests.support.processes import environment

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
            [[NewEntry("tests.support.journal_app:record", "[[1],{}]", "POST /t")]],
            owner="killed",
            finished=[],
            attempts=[],
        )
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as db, db:  # the row process `pid` would have written
        db.execute(
            "UPDATE rawbg_owners SET pid = ?, started = ? WHERE owner = 'killed'",
            (pid, process_start(pid)),
        )


def test_the_tasks_of_a_killed_process_not_yet_reaped_are_taken_over_at_once(
    tmp_path: Path, zombie: int
) -> None:
    path = tmp_path / "tasks.db"
    journal_with_one_task_of(path, zombie)
    assert claimed_by_a_new_owner(path) == ["tests.support.journal_app:record"]


def test_the_tasks_of_a_live_process_are_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    journal_with_one_task_of(path, os.getppid())  # alive: the process that ran pytest
    assert claimed_by_a_new_owner(path) == []


def claimed_by_a_new_owner(path: Path) -> list[str]:
    """The functions of the entries a newly started owner claims at once."""
    store = SQLiteTaskStore(str(path), sync="normal", busy_timeout=1.0)
    store.open(owner="restarted", lease_until=time.time() + FAR)
    try:
        return [entry.function for entry in store.claim_orphans(owner="restarted", now=time.time())]
    finally:
        store.close()


def test_a_row_with_this_processs_pid_and_another_owner_is_taken_over_at_once(
    tmp_path: Path,
) -> None:
    """PID 1 in a container, SIGKILLed and restarted: the new process has the dead one's pid."""
    path = tmp_path / "tasks.db"
    before_the_kill = SQLiteTaskStore(str(path), sync="normal", busy_timeout=1.0)
    before_the_kill.open(owner="pid-1-before-restart", lease_until=time.time() + FAR)
    before_the_kill.write(
        [[NewEntry("tests.support.journal_app:record", "[[1],{}]", "POST /t")]],
        owner="pid-1-before-restart",
        finished=[],
        attempts=[],
    )
    before_the_kill.close()  # no retire: killed; its row says this pid, with its lease
    assert claimed_by_a_new_owner(path) == ["tests.support.journal_app:record"]


# A process that journals one task as owner "child", says "ready", then either
# waits to be killed ("wait") or kills itself at once ("die").
CHILD = """
import os, signal, sys, time
from rawbg.tasks.journal.store import NewEntry
from rawbg.tasks.journal.sqlite import SQLiteTaskStore
store = SQLiteTaskStore(sys.argv[1], sync="normal", busy_timeout=1.0)
store.open(owner="child", lease_until=time.time() + 3600)
store.write([[NewEntry("tests.support.journal_app:record", "[[1],{}]", "POST /t")]],
            owner="child", finished=[], attempts=[])
print("ready", flush=True)
if sys.argv[2] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()
"""


def journaling_child(path: Path, then: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), then],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment(),
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def owner_row(path: Path) -> tuple[int, str | None]:
    with closing(sqlite3.connect(path)) as db:
        pid, started = db.execute(
            "SELECT pid, started FROM rawbg_owners WHERE owner = 'child'"
        ).fetchone()
    return pid, started


def test_the_tasks_of_a_dead_process_whose_pid_now_runs_another_are_taken_over_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    dead = journaling_child(path, "die")
    dead.communicate(timeout=30)
    assert dead.returncode == -signal.SIGKILL
    _, started = owner_row(path)
    # the pid is reused: by the process that ran pytest, alive, started earlier
    reused_by = os.getppid()
    assert started is not None and started != process_start(reused_by)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE rawbg_owners SET pid = ? WHERE owner = 'child'", (reused_by,))
    assert claimed_by_a_new_owner(path) == ["tests.support.journal_app:record"]


def test_a_live_process_with_the_start_its_row_records_keeps_its_tasks(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    live = journaling_child(path, "wait")
    try:
        assert owner_row(path) == (live.pid, process_start(live.pid))
        assert claimed_by_a_new_owner(path) == []
    finally:
        live.kill()
        live.communicate(timeout=30)
