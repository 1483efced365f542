"""The FastAPI and Starlette modules rawbg has no counterpart for, and what to use instead.

A user moving an app changes ``from fastapi.security import ...`` into
``from rawbg.security import ...``. Where rawbg has no such module, the import
would fail with a bare ``No module named 'rawbg.security'``; with `install`
(called once by ``import rawbg``) it fails with the same exception type
saying what rawbg offers in its place and where the differences are listed
(docs/fastapi-compat.md).

Only the names in `MISSING` are answered, and only when no real module of
that name exists: the finder sits at the end of ``sys.meta_path``, so Python's
own finders have looked first, and a name it does not know is left to fail
as usual. It costs nothing at ``import rawbg`` but one list append, and
nothing on any import that succeeds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

#: where each FastAPI feature's row is
DOCS = "docs/fastapi-compat.md"

#: ``rawbg.X`` (as a migrated ``fastapi.X`` or ``starlette.X`` import reads) -> what to use
MISSING: dict[str, str] = {
    "rawbg.applications": "FastAPI's `FastAPI` class is `rawbg.App` (`from rawbg import App`)",
    "rawbg.exceptions": "`HTTPException`, `RequestValidationError` and rawbg's other "
    "exceptions are in `rawbg.errors` (and `from rawbg import HTTPException`)",
    "rawbg.routing": "`APIRouter` and `APIRoute` are in `rawbg.app.routing` "
    "(and `from rawbg import APIRouter`)",
    "rawbg.param_functions": "`Query`, `Path`, `Body`, `Header`, `Cookie`, `Form` and `File` "
    "are in `rawbg.params` (and `from rawbg import Query`)",
    "rawbg.dependencies": "`Depends` is `from rawbg import Depends`; FastAPI's dependency "
    "internals have no counterpart",
    "rawbg.concurrency": "a plain `def` handler, dependency or task already runs in rawbg's "
    "thread pool; in async code, `await asyncio.to_thread(func, ...)` does what "
    "`run_in_threadpool` does",
    "rawbg.logger": "rawbg logs under `rawbg.` loggers (`logging.getLogger('rawbg')`)",
    "rawbg.websockets": "rawbg serves HTTP/1.1 requests only: there are no WebSockets",
    "rawbg.endpoints": "class-based endpoints (`HTTPEndpoint`) are not supported: "
    "declare a function per method",
    "rawbg.authentication": "there is no authentication middleware: check credentials in a "
    "dependency (`Depends`) shared by the routes or the router",
    "rawbg.config": "Starlette's `Config` has no counterpart: read `os.environ` or use "
    "pydantic-settings",
    "rawbg.middleware.base": "`BaseHTTPMiddleware` is in `rawbg.middleware`",
    "rawbg.middleware.sessions": "there is no session middleware: keep the session in a "
    "signed cookie yourself (`request.cookies`, `response.set_cookie`)",
    "rawbg.middleware.authentication": "there is no authentication middleware: check "
    "credentials in a dependency (`Depends`) shared by the routes or the router",
    "rawbg.middleware.wsgi": "rawbg serves one rawbg `App`: it cannot mount a WSGI or "
    "ASGI application",
}


class MissingModuleFinder:
    """A meta path finder that only ever refuses: a name of `MISSING`, with its advice."""

    @classmethod
    def find_spec(
        cls,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        advice = MISSING.get(fullname)
        if advice is None:
            return None  # not ours to explain: the import fails (or succeeds) as usual
        # no `name=`: `from rawbg import security` would turn it into a bare
        # "cannot import name" (the import system drops an error naming the module)
        raise ModuleNotFoundError(missing_message(fullname, advice))


def missing_message(fullname: str, advice: str) -> str:
    """The error for an import of `fullname`, which rawbg does not have."""
    theirs = fullname.removeprefix("rawbg.")
    return (
        f"No module named {fullname!r} (what fastapi.{theirs} or starlette.{theirs} "
        f"would be): {advice}. rawbg's differences from FastAPI are listed in {DOCS}, "
        "in rawbg's repository"
    )


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once)."""
    if MissingModuleFinder not in sys.meta_path:
        sys.meta_path.append(MissingModuleFinder)
