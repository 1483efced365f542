"""FastAPI's background-tasks tutorial on rawbg, with a task that sleeps instead of writing.

Served by ``python -m rawbg benchmarks.apps.rawbg_app:app``.
"""

import asyncio
import os

from rawbg import App, BackgroundTasks

from . import MESSAGE, task_seconds

TASK_SECONDS = task_seconds()

app = App()

if diagnostics_file := os.environ.get("BENCH_DIAGNOSTICS"):  # benchmarks/apps/diagnostics.py

    @app.on_event("startup")
    async def start_diagnostics() -> None:
        from .diagnostics import install

        install(diagnostics_file)


if gc_setting := os.environ.get("BENCH_GC"):  # a diagnosis only: benchmarks/apps/diagnostics.py

    @app.on_event("startup")
    async def apply_gc() -> None:
        from .diagnostics import apply_gc_setting

        apply_gc_setting(gc_setting)


async def send_email(email: str) -> None:
    await asyncio.sleep(TASK_SECONDS)


# No return annotation, as in the tutorial (FastAPI would make it a response model).
@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(send_email, email)
    return MESSAGE
