"""app.mount of a sub-App: its routes under the prefix, its own middleware, errors and
background tasks; url_path_for / request.url_for; Jinja2Templates."""

import subprocess
import sys
import textwrap

import pytest

from rawbg import App, BackgroundTasks, HTMLResponse, Request, RouteDefinitionError
from rawbg.app.mounts import NoMatchFound
from rawbg.staticfiles import StaticFiles
from rawbg.templating import Jinja2Templates
from rawbg.testing import serve_app


def sub_app(done: list[str]) -> App:
    sub = App()

    @sub.get("/items/{item_id}")
    async def item(item_id: int, request: Request, tasks: BackgroundTasks):
        tasks.add_task(done.append, f"item {item_id}")
        return {
            "id": item_id,
            "path": request.path,
            "root_path": request.root_path,
            "url": str(request.url),
            "self": str(request.url_for("item", item_id=item_id)),
        }

    @sub.middleware("http")
    async def mark(request, call_next):
        response = await call_next(request)
        response.headers["x-sub"] = "1"
        return response

    return sub


async def test_a_mounted_app_answers_under_its_prefix_with_its_own_middleware_and_tasks():
    done: list[str] = []
    app = App()

    @app.get("/")
    async def root():
        return "main"

    app.mount("/sub", sub_app(done), name="sub")
    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/sub/items/3?q=1")
        invalid = await client.get("/sub/items/x")
        missing = await client.get("/sub/nothing")
        main = await client.get("/")
        await client.wait_for_background()
    assert response.json() == {
        "id": 3,
        "path": "/items/3",
        "root_path": "/sub",
        "url": "http://127.0.0.1/sub/items/3?q=1",
        "self": "http://127.0.0.1/sub/items/3",
    }
    assert response.headers["x-sub"] == "1"
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["path", "item_id"]
    assert (missing.status_code, missing.headers["x-sub"]) == (404, "1")
    assert main.body == b'"main"'
    assert "x-sub" not in main.headers
    assert done == ["item 3"]


async def test_a_mounted_apps_route_reads_a_body_over_the_servers_limit_when_it_allows_it():
    # the body goes to the sub-App's route unread: its own max_body_size decides, not the server's
    sub = App()

    @sub.post("/upload", max_body_size=64 * 1024)
    async def upload(request: Request):
        return {"size": len(await request.body())}

    app = App()
    app.mount("/sub", sub)
    body = b"x" * (32 * 1024)
    async with serve_app(app, max_body_size=1024) as client:
        mounted = await client.post("/sub/upload", content=body)
        over = await client.post("/sub/upload", content=body * 3)
    assert (mounted.status_code, mounted.json()) == (200, {"size": len(body)})
    assert over.status_code == 413


def test_url_path_for_names_routes_and_mounts_and_refuses_unknown_ones(tmp_path):
    app = App()

    @app.get("/files/{name:path}", name="file")
    async def file(name: str):
        return name

    app.mount("/static", StaticFiles(directory=tmp_path), name="static")
    app.mount("/sub", sub_app([]), name="sub")
    assert app.url_path_for("file", name="a b/c.txt") == "/files/a%20b/c.txt"
    assert app.url_path_for("static", path="/css/site.css") == "/static/css/site.css"
    assert app.url_path_for("sub:item", item_id=4) == "/sub/items/4"
    with pytest.raises(NoMatchFound):
        app.url_path_for("file")
    with pytest.raises(NoMatchFound):
        app.url_path_for("nothing")


def test_what_cannot_be_mounted_is_refused_at_mount_time():
    app = App()

    class AsgiApp:
        async def __call__(self, scope, receive, send): ...

    with pytest.raises(RouteDefinitionError, match="ASGI"):
        app.mount("/asgi", AsgiApp())
    with pytest.raises(RouteDefinitionError, match="cannot mount"):
        app.mount("/x", object())
    with pytest.raises(RouteDefinitionError, match="must start with"):
        app.mount("static", sub_app([]))


async def test_a_template_renders_with_the_request_and_url_for(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "static").mkdir()
    (tmp_path / "templates" / "item.html").write_text(
        "<a href=\"{{ url_for('item', id=id) }}\">{{ id }}</a>"
        "<link href=\"{{ url_for('static', path='/s.css').path }}\">{{ '<b>' }}"
    )
    templates = Jinja2Templates(directory=tmp_path / "templates")
    app = App()
    app.mount("/static", StaticFiles(directory=tmp_path / "static"), name="static")

    @app.get("/items/{id}", response_class=HTMLResponse)
    async def item(request: Request, id: str):
        return templates.TemplateResponse(request=request, name="item.html", context={"id": id})

    main = App()
    main.mount("/shop", app)
    async with serve_app(main, in_memory=True) as client:
        response = await client.get("/shop/items/7")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.body == (
        b'<a href="http://127.0.0.1/shop/items/7">7</a><link href="/shop/static/s.css">&lt;b&gt;'
    )


def test_without_jinja2_importing_works_and_making_templates_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["jinja2"] = None  # as if not installed
        import rawbg, rawbg.templating
        try:
            rawbg.templating.Jinja2Templates(directory=".")
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'rawbg[templates]'" in done.stdout
