"""The same endpoint on FastAPI (no return annotation, as in the tutorial: no response model).

``python -m uvicorn benchmarks.apps.fastapi_app:app --http h11 ...``
"""

import asyncio

from fastapi import BackgroundTasks, FastAPI

from . import MESSAGE, task_seconds

TASK_SECONDS = task_seconds()

app = FastAPI()


async def send_email(email: str) -> None:
    await asyncio.sleep(TASK_SECONDS)


# No return annotation, as in the tutorial (FastAPI would make it a response model).
@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(send_email, email)
    return MESSAGE
