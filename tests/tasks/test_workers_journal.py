"""``--workers N`` with ``--task-journal``: a SIGKILLed worker's tasks are not lost.

The workers share one journal. A worker killed with SIGKILL leaves the tasks
it had acknowledged in it; its replacement (at start-up) or a sibling (when
the dead worker's lease is taken over) runs them. A journal that cannot be
used is one error from the supervisor, before any worker starts.
docs/server-behavior.md, "Workers and signals" and "The task journal".
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from rawbg.server.config import EXIT_ERROR, EXIT_OK
from rawbg.tasks.journal.sqlite import SQLiteTaskStore
from rawbg.tasks.journal.store import FORMAT_VERSION
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.processes import WAIT, environment, post, rawbg_process

pytestmark = pytest.mark.slow

# In the worker that acknowledged it, the task waits until the test creates
# `release` (so it is still pending when that worker is killed); anywhere
# else it runs at once.
JOURNAL_APP = """
import asyncio
import os

from rawbg import App, BackgroundTasks

app = App()


async def append(job: str, slow_in_pid: int) -> None:
    while os.getpid() == slow_in_pid and not os.path.exists("release"):
        await asyncio.sleep(0.05)
    with open("tasks.txt", "a") as out:
        out.write(f"{job} {os.getpid()}\\n")


@app.post("/job/{job}")
async def job(job: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(append, job, os.getpid())
    return {"job": job, "pid": os.getpid()}
"""


async def test_a_sigkilled_workers_journaled_tasks_run_in_its_replacement_or_a_sibling(tmp_path):
    (tmp_path / "journal_app.py").write_text(JOURNAL_APP)
    args = ("journal_app:app", "--app-dir", str(tmp_path), "--port", "0", "--no-access-log")
    journal = ("--task-journal", str(tmp_path / "tasks.journal"), "--task-journal-lease", "2")
    async with rawbg_process(tmp_path, *args, *journal, "--workers", "2") as server:
        await server.wait_for_log("worker ready", count=2)
        answers = [await post(server.port, f"/job/{n}") for n in range(6)]
        assert all(status == 200 for status, _ in answers)
        acknowledged_by: dict[str, int] = {}
        for _, body in answers:
            answer = json.loads(body)
            acknowledged_by[answer["job"]] = answer["pid"]
        victim = acknowledged_by["0"]
        lost_with_victim = {job for job, pid in acknowledged_by.items() if pid == victim}
        os.kill(victim, signal.SIGKILL)
        await server.wait_for_log(rf"worker {victim} died \(killed by SIGKILL\)")
        tasks = tmp_path / "tasks.txt"
        async with asyncio.timeout(WAIT):
            while True:
                done = tasks.read_text().splitlines() if tasks.exists() else []
                if lost_with_victim <= {line.split()[0] for line in done}:
                    break
                await asyncio.sleep(0.1)
        (tmp_path / "release").touch()  # the sibling's own tasks may finish now
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log
    lines = tasks.read_text().splitlines()
    ran = [line.split()[0] for line in lines]
    # every job ran exactly once; those of the victim in another process
    assert sorted(ran) == sorted(acknowledged_by), lines
    assert all(int(line.split()[1]) != victim for line in lines)


def unusable_journal(tmp_path: Path, kind: str) -> Path:
    if kind == "missing directory":
        return tmp_path / "no" / "such" / "tasks.journal"
    path = tmp_path / "tasks.journal"
    if kind == "not a journal":
        path.write_text("these are my notes, not a database\n" * 100)
    else:  # a journal written by a newer rawbg
        store = SQLiteTaskStore(str(path), sync="normal", busy_timeout=1.0)
        store.open(owner="newer", lease_until=time.time())
        store.retire(owner="newer")
        store.close()
        with closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "UPDATE rawbg_meta SET value = ? WHERE key = 'version'", (str(FORMAT_VERSION + 1),)
            )
    return path


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("missing directory", "cannot open"),
        ("not a journal", "not a usable task journal"),
        ("newer version", "written by a newer rawbg"),
    ],
)
async def test_an_unusable_journal_stops_the_supervisor_with_one_line_before_any_worker(
    tmp_path: Path, kind: str, why: str
) -> None:
    (tmp_path / "journal_app.py").write_text(JOURNAL_APP)
    journal = unusable_journal(tmp_path, kind)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rawbg",
        "journal_app:app",
        "--app-dir",
        str(tmp_path),
        "--port",
        "0",
        "--workers",
        "2",
        "--task-journal",
        str(journal),
        *CLI_LOOP_ARGS,
        cwd=tmp_path,
        env=environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode == EXIT_ERROR == 1, err.decode()
    assert out == b""
    # one line, and no worker was started (the supervisor logs each start)
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: --task-journal {journal}: "), line
    assert why in line
