"""rawbg: an asyncio HTTP/1.1 server whose background tasks run after the response is flushed.

Everything public is re-exported here; the modules underneath each have one job
(see docs/ARCHITECTURE.md).
"""

from rawbg import missing_modules, status
from rawbg.app.application import App
from rawbg.app.dependencies import Depends, Security
from rawbg.app.routing import APIRoute, APIRouter
from rawbg.datastructures import URL, State
from rawbg.errors import HTTPException, RequestValidationError, RouteDefinitionError
from rawbg.params import Body, Cookie, File, Form, Header, Path, Query
from rawbg.requests import Request
from rawbg.responses import (
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
from rawbg.server.server import Server, run, serving
from rawbg.tasks.calls import BackgroundTask, BackgroundTasks
from rawbg.tasks.policy import task
from rawbg.uploads import UploadFile

__all__ = [
    "URL",
    "APIRoute",
    "APIRouter",
    "App",
    "BackgroundTask",
    "BackgroundTasks",
    "Body",
    "Cookie",
    "Depends",
    "File",
    "FileResponse",
    "Form",
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
    "Security",
    "Server",
    "State",
    "StreamingResponse",
    "UJSONResponse",
    "UploadFile",
    "run",
    "serving",
    "status",
    "task",
]

__version__ = "0.1.0"

# `import rawbg.security` (a name FastAPI has and rawbg lacks) says what to use instead
missing_modules.install()
