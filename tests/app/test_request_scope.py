"""``request.scope`` (read-only, the keys FastAPI apps read), the root path, and
``strict_content_type=False``: issue 22, item 7."""

import warnings

import pytest

from rawbg import App, Request
from rawbg.errors import FastAPIDeprecationWarning
from rawbg.testclient import TestClient
from rawbg.testing import serve_app


def scope_app() -> App:
    app = App()

    @app.get("/items/{item_id}")
    async def read(item_id: int, request: Request):
        scope = request.scope
        return {
            key: scope[key]
            for key in ("type", "method", "scheme", "path", "root_path", "client", "server")
        } | {
            "query_string": scope["query_string"].decode(),
            "raw_path": scope["raw_path"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"] if k == b"x-a"],
            "path_params": scope["path_params"],
            "route": scope["route"].label,
            "app": scope["app"] is request.app,
        }

    @app.get("/change")
    async def change(request: Request):
        try:
            request.scope["root_path"] = "/elsewhere"  # type: ignore[index]
        except TypeError as exc:
            return {"refused": type(exc).__name__}
        return {"refused": None}

    return app


async def test_the_scope_holds_the_keys_fastapi_apps_read() -> None:
    async with serve_app(scope_app(), root_path="/api") as client:
        response = await client.get("/items/3?q=a%20b", headers={"x-a": "1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.pop("client")[0] == "127.0.0.1"
    assert body.pop("server")[0] == "127.0.0.1"
    assert body == {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/api/items/3",
        "root_path": "/api",
        "query_string": "q=a%20b",
        "raw_path": "/api/items/3",
        "headers": [["x-a", "1"]],
        "path_params": {"item_id": "3"},
        "route": "GET /items/{item_id}",
        "app": True,
    }


async def test_the_scope_cannot_be_changed() -> None:
    async with serve_app(scope_app()) as client:
        response = await client.get("/change")
    assert response.json() == {"refused": "TypeError"}


def test_the_test_client_reports_starlettes_server_and_client() -> None:
    with TestClient(scope_app(), root_path="/api/v1") as client:
        body = client.get("/items/1").json()
    assert (body["server"], body["client"], body["root_path"]) == (
        ["testserver", 80],
        ["testclient", 50000],
        "/api/v1",
    )


def test_an_apps_root_path_is_every_requests_with_fastapis_deprecation_warning() -> None:
    with pytest.warns(FastAPIDeprecationWarning, match="--root-path"):
        app = App(root_path="/v2")

    @app.get("/where")
    async def where(request: Request):
        return {"root_path": request.scope["root_path"], "url": str(request.url)}

    with TestClient(app, root_path="/server") as client:
        assert client.get("/where").json() == {
            "root_path": "/v2",
            "url": "http://testserver/v2/where",
        }


def test_root_path_in_servers_is_kept_on_the_app_for_the_openapi_document() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert App().root_path_in_servers is True
        assert App(root_path_in_servers=False).root_path_in_servers is False


def lax_app(**options) -> App:
    app = App(**options)

    @app.post("/items/")
    async def create(item: dict):
        return item

    @app.post("/strict/", strict_content_type=True)
    async def strict(item: dict):
        return item

    return app


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/items/", {}, 200),  # no Content-Type: JSON all the same
        ("/items/", {"content-type": "application/json"}, 200),
        ("/items/", {"content-type": "text/plain"}, 422),  # another type: still not JSON
        ("/strict/", {}, 422),  # the route's own option wins
    ],
)
async def test_strict_content_type_false_reads_a_body_without_a_content_type_as_json(
    path: str, headers: dict[str, str], status: int
) -> None:
    async with serve_app(lax_app(strict_content_type=False)) as client:
        response = await client.post(path, content='{"name": "Foo"}', headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json() == {"name": "Foo"}


async def test_by_default_a_body_without_a_content_type_is_not_json() -> None:
    async with serve_app(lax_app()) as client:
        response = await client.post("/items/", content='{"name": "Foo"}')
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "dict_type"


async def test_a_lax_body_that_is_not_json_is_a_json_invalid_422() -> None:
    async with serve_app(lax_app(strict_content_type=False)) as client:
        response = await client.post("/items/", content="{nope")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
