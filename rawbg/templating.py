"""`Jinja2Templates`: HTML pages from Jinja2 templates (``pip install 'rawbg[templates]'``).

As Starlette's class, which FastAPI re-exports::

    templates = Jinja2Templates(directory="templates")

    @app.get("/items/{id}", response_class=HTMLResponse)
    async def read_item(request: Request, id: str):
        return templates.TemplateResponse(request, "item.html", {"id": id})

A template gets its context, the ``request``, and ``url_for(name, **params)``,
the request's absolute URL of a route or mount (``url_for('static',
path='/site.css')``). Jinja2 is imported when the first `Jinja2Templates` is
made: without it, that is an `ImportError` naming the extra, and importing
this module (or rawbg) still works.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from rawbg.requests import Request
from rawbg.responses import Background, HTMLResponse

__all__ = ["Jinja2Templates"]


def _jinja2() -> ModuleType:
    try:
        return importlib.import_module("jinja2")
    except ImportError as exc:
        raise ImportError(
            "Jinja2Templates needs Jinja2: pip install 'rawbg[templates]' (or pip install jinja2)"
        ) from exc


def _url_for(context: Any, name: str, /, **path_params: Any) -> Any:
    """``url_for`` in a template: the rendering request's `Request.url_for`."""
    return context["request"].url_for(name, **path_params)


class _TemplateResponse(HTMLResponse):
    """The rendered page, keeping what rendered it (tests read ``.template`` and ``.context``)."""

    def __init__(
        self,
        template: Any,
        context: dict[str, Any],
        status_code: int,
        headers: Mapping[str, str] | None,
        media_type: str | None,
        background: Background | None,
    ) -> None:
        self.template = template
        self.context = context
        super().__init__(template.render(context), status_code, headers, media_type, background)


class Jinja2Templates:
    """The templates of `directory` (or of a Jinja2 ``env`` of your own)."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        context_processors: Sequence[Callable[[Request], dict[str, Any]]] | None = None,
        env: Any = None,
        **env_options: Any,
    ) -> None:
        jinja2 = _jinja2()
        if (directory is None) == (env is None):
            raise TypeError("Jinja2Templates takes directory= or env=, one of them")
        if env is None:
            env_options.setdefault("loader", jinja2.FileSystemLoader(directory))
            env_options.setdefault("autoescape", True)
            env = jinja2.Environment(**env_options)
        self.env = env
        self.context_processors = list(context_processors or ())

        self.env.globals.setdefault("url_for", jinja2.pass_context(_url_for))

    def get_template(self, name: str) -> Any:
        return self.env.get_template(name)

    def TemplateResponse(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: Background | None = None,
    ) -> HTMLResponse:
        """Render template `name` with `context` (and ``request``) into an HTML response."""
        if not isinstance(request, Request):
            raise TypeError(
                "TemplateResponse takes the request first: "
                "TemplateResponse(request, name, context), as Starlette's current signature"
            )
        full: dict[str, Any] = dict(context or {})
        for processor in self.context_processors:
            full.update(processor(request))
        full.setdefault("request", request)
        template = self.get_template(name)
        return _TemplateResponse(template, full, status_code, headers, media_type, background)
