"""The docs pages: /openapi.json, /docs (with its OAuth2 redirect page), /redoc, over a socket."""

from __future__ import annotations

import importlib
import json
import logging
import re
from pathlib import Path

import pytest

from rawbg import App, Body, Depends, HTTPException, Query
from rawbg.app.openapi import assets
from rawbg.openapi.docs import get_redoc_html, get_swagger_ui_html
from rawbg.openapi.utils import get_openapi
from rawbg.testclient import TestClient

pydantic = importlib.import_module("pydantic")


def shop(**options: object) -> App:
    app = App(title="Shop", **options)  # type: ignore[arg-type]

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
        return {"item_id": item_id, "q": q}

    return app


def test_the_document_and_both_pages_are_served_and_point_at_it() -> None:
    with TestClient(shop()) as client:
        document = client.get("/openapi.json")
        swagger = client.get("/docs")
        redoc = client.get("/redoc")
        redirect = client.get("/docs/oauth2-redirect")
    assert document.status_code == 200
    assert document.headers["content-type"] == "application/json"
    assert document.json()["paths"]["/items/{item_id}"]["get"]["operationId"] == (
        "read_item_items__item_id__get"
    )
    assert swagger.status_code == redoc.status_code == redirect.status_code == 200
    assert swagger.headers["content-type"].startswith("text/html")
    assert "<title>Shop - Swagger UI</title>" in swagger.text
    assert 'url: "/openapi.json",' in swagger.text
    assert 'oauth2RedirectUrl: window.location.origin + "/docs/oauth2-redirect",' in swagger.text
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" in swagger.text
    assert '<redoc spec-url="/openapi.json"></redoc>' in redoc.text
    assert "<title>Shop - ReDoc</title>" in redoc.text
    assert "window.opener.swaggerUIRedirectOauth2" in redirect.text


@pytest.mark.parametrize(
    ("options", "served"),
    [
        ({"docs_url": None}, {"/openapi.json", "/redoc"}),
        ({"redoc_url": None}, {"/openapi.json", "/docs", "/docs/oauth2-redirect"}),
        ({"swagger_ui_oauth2_redirect_url": None}, {"/openapi.json", "/docs", "/redoc"}),
        ({"openapi_url": None}, set()),
        ({"openapi_url": ""}, set()),  # FastAPI's conditional_openapi: an empty setting
        (  # the redirect page keeps its own URL, as in FastAPI
            {"docs_url": "/documentation", "redoc_url": None},
            {"/openapi.json", "/documentation", "/docs/oauth2-redirect"},
        ),
    ],
)
def test_each_page_is_turned_off_by_its_url_set_to_none(
    options: dict[str, object], served: set[str]
) -> None:
    pages = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/documentation"}
    with TestClient(shop(**options)) as client:
        answered = {page for page in pages if client.get(page).status_code == 200}
    assert answered == served


def test_a_catch_all_route_does_not_swallow_the_docs_pages() -> None:
    # issue 27: a URL shortener's /{short_url} answered /docs and /openapi.json
    app = App()
    looked_up: list[str] = []

    @app.get("/{short_url}")
    async def follow(short_url: str) -> dict[str, str]:
        looked_up.append(short_url)
        raise HTTPException(404, "no such link")

    with TestClient(app) as client:
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").json()["paths"]["/{short_url}"]["get"]
        assert client.get("/abc").status_code == 404
    assert looked_up == ["abc"]


def test_the_docs_pages_are_served_without_the_apps_dependencies() -> None:
    # as FastAPI's: a token every route asks for does not lock the docs
    def token(token: str = Query()) -> str:
        return token

    app = App(dependencies=[Depends(token)])

    @app.get("/private")
    async def private() -> str:
        return "secret"

    with TestClient(app) as client:
        assert client.get("/private").status_code == 422
        document = client.get("/openapi.json")
        assert client.get("/docs").status_code == 200
    assert document.status_code == 200
    parameters = document.json()["paths"]["/private"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["token"]
    assert "/openapi.json" not in document.json()["paths"]  # the pages are not described


def test_the_root_path_is_the_first_server_and_prefixes_the_pages_urls() -> None:
    app = shop(servers=[{"url": "https://shop.example.com"}])
    with TestClient(app, root_path="/api/v1") as client:
        document = client.get("/openapi.json").json()
        swagger = client.get("/docs").text
        redoc = client.get("/redoc").text
    assert document["servers"] == [{"url": "/api/v1"}, {"url": "https://shop.example.com"}]
    assert 'url: "/api/v1/openapi.json",' in swagger
    assert 'window.location.origin + "/api/v1/docs/oauth2-redirect"' in swagger
    assert 'spec-url="/api/v1/openapi.json"' in redoc
    assert "servers" not in app.openapi() or app.openapi()["servers"] == [
        {"url": "https://shop.example.com"}
    ]  # the kept document is not changed per request


def test_swagger_ui_parameters_and_init_oauth_are_json_that_cannot_close_the_script() -> None:
    app = shop(
        swagger_ui_parameters={"syntaxHighlight": False, "deepLinking": "</script><b>"},
        swagger_ui_init_oauth={"clientId": "me", "usePkceWithAuthorizationCodeGrant": True},
    )
    with TestClient(app) as client:
        page = client.get("/docs").text
    assert '"syntaxHighlight": false,' in page
    assert '"dom_id": "#swagger-ui",' in page  # the defaults stay
    assert '"deepLinking": "\\u003c/script\\u003e\\u003cb\\u003e",' in page
    assert page.count("</script>") == 2  # the bundle's element and ours, nothing injected
    assert 'ui.initOAuth({"clientId": "me", "usePkceWithAuthorizationCodeGrant": true})' in page


def test_a_custom_openapi_function_replaces_the_document_as_in_fastapi() -> None:
    app = shop()

    def custom_openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title="Custom", version="9", routes=app.routes)
        schema["info"]["x-logo"] = {"url": "logo.png"}
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    with TestClient(app) as client:
        info = client.get("/openapi.json").json()["info"]
    assert info == {"title": "Custom", "version": "9", "x-logo": {"url": "logo.png"}}


def test_custom_pages_from_rawbg_openapi_docs() -> None:
    app = App(docs_url=None, redoc_url=None)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> object:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Mine", swagger_js_url="/static/ui.js"
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> object:
        return get_redoc_html(openapi_url="/openapi.json", title="Mine", with_google_fonts=False)

    with TestClient(app) as client:
        swagger, redoc_page = client.get("/docs").text, client.get("/redoc").text
    assert '<script src="/static/ui.js"></script>' in swagger
    assert "fonts.googleapis.com" not in redoc_page
    assert "<title>Mine</title>" in redoc_page


class Opaque:
    pass


def test_a_document_that_cannot_be_built_is_a_500_with_a_log_line_naming_the_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()

    async def add(thing: pydantic.InstanceOf[Opaque] = Body()) -> None:
        return None

    app.add_route("/things", add, methods=["POST"])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 500
    logged = [
        record.getMessage() + (f" {record.exc_info[1]}" if record.exc_info else "")
        for record in caplog.records
        if record.levelno >= logging.ERROR
    ]
    assert any("route POST /things: the body parameter 'thing' of" in line for line in logged)


# -- offline: the docs-offline extra --------------------------------------------------------


def test_offline_docs_serve_swagger_ui_and_redoc_from_the_app() -> None:
    app = shop(offline_docs=True)
    with TestClient(app, root_path="/api") as client:
        swagger = client.get("/docs").text
        redoc = client.get("/redoc").text
        script = client.get("/docs-assets/swagger-ui-bundle.js")
        css = client.get("/docs-assets/swagger-ui.css")
        missing = client.get("/docs-assets/other.js")
    assert '<script src="/api/docs-assets/swagger-ui-bundle.js"></script>' in swagger
    assert 'href="/api/docs-assets/swagger-ui.css"' in swagger
    assert '<script src="/api/docs-assets/redoc.standalone.js"></script>' in redoc
    assert "cdn.jsdelivr.net" not in swagger + redoc
    assert "fonts.googleapis.com" not in redoc
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == assets.CACHE_CONTROL
    assert b"SwaggerUIBundle" in script.body
    assert len(script.body) == Path(assets.find_assets()["swagger-ui-bundle.js"]).stat().st_size
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert missing.status_code == 404


def test_offline_docs_without_the_extra_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(assets, "PACKAGE", "no_such_docs_package")
    with pytest.raises(RuntimeError, match=re.escape("pip install 'rawbg[docs-offline]'")):
        App(offline_docs=True)


def test_the_document_is_json_as_served() -> None:
    app = shop()
    with TestClient(app) as client:
        body = client.get("/openapi.json").body
    assert json.loads(body) == app.openapi()
