"""FastAPI's background-tasks tutorial on rawbg, with a task that sleeps instead of writing.

Served by ``python -m rawbg benchmarks.apps.rawbg_app:app``.
"""

import asyncio

from rawbg import App, BackgroundTasks

from . import MESSAGE, task_seconds

TASK_SECONDS = task_seconds()

app = App()


async def send_email(email: str) -> None:
    await asyncio.sleep(TASK_SECONDS)


# No return annotation, as in the tutorial (FastAPI would make it a response model).
@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(send_email, email)
    return MESSAGE
