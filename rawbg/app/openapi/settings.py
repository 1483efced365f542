"""The App's OpenAPI options, ``app.openapi()``, and the routes of the docs pages.

`OpenAPISettings` is mixed into `rawbg.app.application.App`: it holds what
FastAPI's ``FastAPI(...)`` takes to describe the app (``title``, ``version``,
``openapi_tags``, ``servers``, ...) and to serve the docs (``openapi_url``,
``docs_url``, ``redoc_url``, ``swagger_ui_oauth2_redirect_url``, ...), with
FastAPI's defaults. `add_docs_routes` registers the pages, first, as FastAPI
does, so that a catch-all route such as ``/{short_url}`` cannot swallow
``/docs``; each page is turned off by its URL set to None.

``app.openapi()`` builds the document once (`rawbg.app.openapi.document`) and
keeps it in ``app.openapi_schema``; a route added afterwards makes the next call
build it again. Assigning ``app.openapi = custom_openapi`` replaces it, as in
FastAPI: the ``/openapi.json`` route calls whatever ``app.openapi`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rawbg.app.openapi.callbacks import WebhookRouter
from rawbg.app.routing import APIRoute, APIRouter
from rawbg.requests import Request
from rawbg.responses import HTMLResponse, JSONResponse, Response
from rawbg.types import Handler


class OpenAPISettings:
    """FastAPI's OpenAPI and docs options, and ``openapi()``; mixed into `App`."""

    routes: list[APIRoute]
    #: ``App(root_path=)`` and ``App(root_path_in_servers=)``, kept by `App` itself
    root_path: str
    root_path_in_servers: bool

    def add_route(
        self, path: str, handler: Handler, *, methods: Sequence[str], **options: Any
    ) -> None:
        raise NotImplementedError

    def configure_openapi(
        self,
        *,
        title: str = "FastAPI",
        summary: str | None = None,
        description: str = "",
        version: str = "0.1.0",
        openapi_version: str = "3.1.0",
        openapi_url: str | None = "/openapi.json",
        openapi_tags: list[dict[str, Any]] | None = None,
        servers: list[dict[str, Any]] | None = None,
        docs_url: str | None = "/docs",
        redoc_url: str | None = "/redoc",
        swagger_ui_oauth2_redirect_url: str | None = "/docs/oauth2-redirect",
        swagger_ui_init_oauth: dict[str, Any] | None = None,
        swagger_ui_parameters: dict[str, Any] | None = None,
        offline_docs: bool = False,
        terms_of_service: str | None = None,
        contact: dict[str, Any] | None = None,
        license_info: dict[str, Any] | None = None,
        openapi_external_docs: dict[str, Any] | None = None,
        separate_input_output_schemas: bool = True,
        webhooks: APIRouter | None = None,
        debug: bool = False,
    ) -> None:
        """Keep the options (`App` passes its OpenAPI keywords here)."""
        if openapi_url and not openapi_url.startswith("/"):  # "" or None: no document
            raise ValueError(f"openapi_url must start with '/': {openapi_url!r}")
        self.title = title
        self.summary = summary
        self.description = description
        self.version = version
        self.openapi_version = openapi_version
        self.openapi_url = openapi_url
        self.openapi_tags = openapi_tags
        self.servers = list(servers or [])
        self.docs_url = docs_url
        self.redoc_url = redoc_url
        self.swagger_ui_oauth2_redirect_url = swagger_ui_oauth2_redirect_url
        self.swagger_ui_init_oauth = swagger_ui_init_oauth
        self.swagger_ui_parameters = swagger_ui_parameters
        self.terms_of_service = terms_of_service
        self.contact = contact
        self.license_info = license_info
        self.openapi_external_docs = openapi_external_docs
        self.separate_input_output_schemas = separate_input_output_schemas
        #: ``@app.webhooks.post("new-subscription")``: requests the app sends, described
        self.webhooks = webhooks if webhooks is not None else WebhookRouter()
        self.debug = debug
        #: the document, once built (``app.openapi()``); assign to replace it
        self.openapi_schema: dict[str, Any] | None = None
        self._openapi_routes = -1  # how many routes the kept document describes
        self._docs_assets: dict[str, str] | None = None
        #: the paths `add_docs_routes` registered (``--routes`` lists them on one line)
        self.docs_pages: list[str] = []
        if offline_docs:
            from rawbg.app.openapi.assets import find_assets

            self._docs_assets = find_assets()

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, built on the first call and kept (``app.openapi_schema``)."""
        described = len(self.routes) + len(self.webhooks.routes)
        if self.openapi_schema is None or self._openapi_routes != described:
            from rawbg.app.openapi.document import get_openapi

            self.openapi_schema = get_openapi(
                title=self.title,
                version=self.version,
                openapi_version=self.openapi_version,
                summary=self.summary,
                description=self.description,
                terms_of_service=self.terms_of_service,
                contact=self.contact,
                license_info=self.license_info,
                routes=self.routes,
                webhooks=self.webhooks.routes,
                tags=self.openapi_tags,
                servers=self.servers,
                separate_input_output_schemas=self.separate_input_output_schemas,
                external_docs=self.openapi_external_docs,
            )
            self._openapi_routes = described
        return self.openapi_schema

    def add_docs_routes(self) -> None:
        """Register ``/openapi.json``, ``/docs`` (and its OAuth2 redirect page), ``/redoc``."""
        openapi_url = self.openapi_url
        if not openapi_url:
            return
        self._add_page(openapi_url, self._openapi_json)
        if self.docs_url:
            self._add_page(self.docs_url, self._swagger_ui)
            if self.swagger_ui_oauth2_redirect_url:
                self._add_page(self.swagger_ui_oauth2_redirect_url, self._oauth2_redirect)
        if self.redoc_url:
            self._add_page(self.redoc_url, self._redoc)
        if self._docs_assets is not None:
            from rawbg.app.openapi.assets import ASSETS_PATH, serve_asset

            assets = self._docs_assets

            async def docs_asset(name: str) -> Response:
                return serve_asset(assets, name)

            self._add_page(ASSETS_PATH + "{name}", docs_asset)

    def _add_page(self, path: str, handler: Callable[..., Any]) -> None:
        self.docs_pages.append(path)
        self.add_route(
            path, handler, methods=["GET"], include_in_schema=False, app_dependencies=False
        )

    def _root_path(self, request: Request) -> str:
        return (request.root_path or self.root_path).rstrip("/")

    async def _openapi_json(self, request: Request) -> JSONResponse:
        schema = self.openapi()
        root_path = self._root_path(request)
        if root_path and self.root_path_in_servers:
            urls = {server.get("url") for server in schema.get("servers", [])}
            if root_path not in urls:
                schema = {**schema, "servers": [{"url": root_path}, *schema.get("servers", [])]}
        return JSONResponse(schema)

    def _asset_urls(self, root_path: str) -> dict[str, str]:
        if self._docs_assets is None:
            return {}
        from rawbg.app.openapi.assets import asset_urls

        return asset_urls(root_path)

    async def _swagger_ui(self, request: Request) -> HTMLResponse:
        from rawbg.app.openapi.docs import get_swagger_ui_html

        root_path = self._root_path(request)
        assert self.openapi_url is not None  # the page exists only with a document
        redirect = self.swagger_ui_oauth2_redirect_url
        urls = self._asset_urls(root_path)
        return get_swagger_ui_html(
            openapi_url=root_path + self.openapi_url,
            title=f"{self.title} - Swagger UI",
            oauth2_redirect_url=root_path + redirect if redirect else None,
            init_oauth=self.swagger_ui_init_oauth,
            swagger_ui_parameters=self.swagger_ui_parameters,
            **{k: v for k, v in urls.items() if k.startswith("swagger_")},
        )

    async def _oauth2_redirect(self) -> HTMLResponse:
        from rawbg.app.openapi.docs import get_swagger_ui_oauth2_redirect_html

        return get_swagger_ui_oauth2_redirect_html()

    async def _redoc(self, request: Request) -> HTMLResponse:
        from rawbg.app.openapi.docs import get_redoc_html

        root_path = self._root_path(request)
        assert self.openapi_url is not None
        urls = self._asset_urls(root_path)
        return get_redoc_html(
            openapi_url=root_path + self.openapi_url,
            title=f"{self.title} - ReDoc",
            with_google_fonts=not urls,
            **{k: v for k, v in urls.items() if k.startswith("redoc_")},
        )
