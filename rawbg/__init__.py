"""rawbg: an asyncio HTTP/1.1 server whose background tasks run after the response is flushed.

Everything public is re-exported here; the modules underneath each have one job
(see docs/ARCHITECTURE.md).
"""

from .app import App
from .background import BackgroundTask, BackgroundTasks
from .dependencies import Depends
from .errors import HTTPException, RequestValidationError, RouteDefinitionError
from .requests import Request
from .responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from .routers import APIRouter
from .server import Server, run, serving

__all__ = [
    "APIRouter",
    "App",
    "BackgroundTask",
    "BackgroundTasks",
    "Depends",
    "HTMLResponse",
    "HTTPException",
    "JSONResponse",
    "PlainTextResponse",
    "Request",
    "RequestValidationError",
    "Response",
    "RouteDefinitionError",
    "Server",
    "StreamingResponse",
    "run",
    "serving",
]

__version__ = "0.1.0"
