"""rawbg: an asyncio HTTP/1.1 server whose background tasks run after the response is flushed.

Everything public is re-exported here; the modules underneath each have one job
(see docs/ARCHITECTURE.md).
"""

from . import status
from .app import App
from .background import BackgroundTask, BackgroundTasks
from .datastructures import URL, State
from .dependencies import Depends
from .errors import HTTPException, RequestValidationError, RouteDefinitionError
from .param_functions import Body, Cookie, Header, Path, Query
from .policy import task
from .requests import Request
from .responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    ORJSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
    UJSONResponse,
)
from .routers import APIRouter
from .server import Server, run, serving

__all__ = [
    "URL",
    "APIRouter",
    "App",
    "BackgroundTask",
    "BackgroundTasks",
    "Body",
    "Cookie",
    "Depends",
    "FileResponse",
    "HTMLResponse",
    "HTTPException",
    "Header",
    "JSONResponse",
    "ORJSONResponse",
    "Path",
    "PlainTextResponse",
    "Query",
    "RedirectResponse",
    "Request",
    "RequestValidationError",
    "Response",
    "RouteDefinitionError",
    "Server",
    "State",
    "StreamingResponse",
    "UJSONResponse",
    "run",
    "serving",
    "status",
    "task",
]

__version__ = "0.1.0"
