"""The same endpoint on bare Starlette: what FastAPI costs on top of it.

``python -m uvicorn benchmarks.apps.starlette_app:app --http httptools --loop uvloop ...``
"""

import asyncio

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import MESSAGE, task_seconds

TASK_SECONDS = task_seconds()


async def send_email(email: str) -> None:
    await asyncio.sleep(TASK_SECONDS)


async def send_notification(request: Request) -> JSONResponse:
    email = request.path_params["email"]
    return JSONResponse(MESSAGE, background=BackgroundTask(send_email, email))


app = Starlette(routes=[Route("/send-notification/{email}", send_notification, methods=["POST"])])
