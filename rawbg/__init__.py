"""rawbg: an asyncio HTTP/1.1 server whose background tasks run after the response is flushed.

Everything public is re-exported here; the modules underneath each have one job
(see docs/ARCHITECTURE.md).
"""

from .app import App
from .background import BackgroundTask, BackgroundTasks
from .dependencies import Depends
from .errors import HTTPException, RequestValidationError, RouteDefinitionError
from .param_functions import Body, Cookie, Header, Path, Query
from .requests import Request
from .responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from .server import Server, run, serving

__all__ = [
    "App",
    "BackgroundTask",
    "BackgroundTasks",
    "Body",
    "Cookie",
    "Depends",
    "HTMLResponse",
    "HTTPException",
    "Header",
    "JSONResponse",
    "Path",
    "PlainTextResponse",
    "Query",
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
