"""An app whose durable tasks write down each run: the task journal's tests serve it.

Its task functions live at module level so that the journal can import them
by qualified name, in this process (tests with `serving`) or in a server
subprocess (``python -m rawbg tests.support.journal_app:app``). Each finished run
appends ``run N PID`` to the file named by ``JOURNAL_TEST_RUNS``.
"""

from __future__ import annotations

import asyncio
import os

import rawbg
from rawbg import App, BackgroundTasks, StreamingResponse

RUNS = os.environ.get("JOURNAL_TEST_RUNS", "runs.txt")
TASK_SECONDS = float(os.environ.get("JOURNAL_TEST_TASK_SECONDS", "0"))
#: a file whose existence lets the tasks finish (tests across processes)
RELEASE = os.environ.get("JOURNAL_TEST_RELEASE")
#: also note ``start N PID`` when a task starts (tests that must know it runs)
NOTE_STARTS = bool(os.environ.get("JOURNAL_TEST_NOTE_STARTS"))
#: set by in-process tests: tasks wait for it before finishing
GATE: asyncio.Event | None = None
#: attempts seen by `flaky`, per key
ATTEMPTS: dict[str, int] = {}

app = App()


def note(kind: str, n: object) -> None:
    with open(RUNS, "a") as runs:  # one short append: atomic enough for the tests
        runs.write(f"{kind} {n} {os.getpid()}\n")


async def record_run(n: int) -> None:
    if NOTE_STARTS:
        note("start", n)
    if GATE is not None:
        await GATE.wait()
    await asyncio.sleep(TASK_SECONDS)
    while RELEASE is not None and not os.path.exists(RELEASE):
        await asyncio.sleep(0.02)
    note("run", n)


@rawbg.task(retries=2, backoff=0.05)
async def flaky(key: str, failures: int) -> None:
    """Fails its first `failures` attempts."""
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] <= failures:
        raise ConnectionError(f"attempt {ATTEMPTS[key]} of {key} fails")
    note("flaky", key)


@rawbg.task(durable=False)
async def not_durable(n: int) -> None:
    note("not-durable", n)


@app.post("/work/{n}")
async def work(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(record_run, n)
    return {"queued": n}


async def nothing(n: int) -> None:
    """A task that does nothing: what a test of many entries runs."""


@app.post("/work-twice/{n}")
async def work_twice(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(record_run, n)
    background_tasks.add_task(record_run, -n)
    return {"queued": [n, -n]}


@app.post("/flaky/{key}/{failures}")
async def queue_flaky(key: str, failures: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(flaky, key, failures)
    return {"queued": key}


@app.post("/opted-out/{n}")
async def opted_out(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(not_durable, n)
    return {"queued": n}


@app.post("/not-journalable/{what}")
async def not_journalable(what: str, background_tasks: BackgroundTasks):
    async def local_task() -> None:
        return None

    try:
        if what == "local":
            background_tasks.add_task(local_task)
        else:
            background_tasks.add_task(record_run, object())  # type: ignore[arg-type]
    except TypeError as exc:
        return {"error": str(exc)}
    return {"error": None}


@app.post("/stream-fails/{n}")
async def stream_fails(n: int, background_tasks: BackgroundTasks):
    background_tasks.add_task(record_run, n)

    async def body():
        yield b"first piece"
        raise RuntimeError("the body broke")

    return StreamingResponse(body())
