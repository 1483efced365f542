"""--routes prints every route with its dependency tree, from the registered plans."""

import subprocess
import sys
import textwrap
from typing import Annotated

from rawbg import App, BackgroundTasks, Depends, Query, Request
from rawbg.app.route_listing import describe_routes


def test_routes_show_methods_sources_and_the_shared_dependency_cache():
    app = App()

    def db():
        yield "session"

    def user(session: Annotated[str, Depends(db)], token: str) -> str:
        return token

    def audit(session: Annotated[str, Depends(db)], request: Request) -> None:
        return None

    @app.get("/items/{item_id}")
    async def read(
        item_id: int,
        u: Annotated[str, Depends(user)],
        a: Annotated[None, Depends(audit)],
        tags: Annotated[list[str], Query()] = [],  # noqa: B006
        fresh: str = Depends(db, use_cache=False),
    ):
        return {}

    @app.post("/items")
    def create(item: dict, background_tasks: BackgroundTasks):
        return item

    text = describe_routes(app)
    assert "GET, HEAD /items/{item_id}" in text
    assert "POST /items" in text
    assert "item_id: int  <- path" in text
    assert "token: str  <- query" in text
    assert "tags: list[str] = []  <- query (repeated key)" in text
    assert "item: dict  <- body" in text
    assert "request: Request  <- request" in text
    assert "background_tasks: BackgroundTasks  <- background tasks" in text
    # db is computed once under `user`, then shared by `audit`; use_cache=False is called again
    assert (
        text.count(
            "Depends(test_routes_show_methods_sources_and_the_shared_dependency_cache"
            ".<locals>.db) [generator, in the thread pool, clean-up scope=request; "
            "computed, then cached for the request]"
        )
        == 1
    )
    assert "shared: value from the per-request cache" in text
    assert "called each time (use_cache=False)" in text


def test_routes_flag_prints_the_tree_and_exits_without_serving(tmp_path):
    (tmp_path / "shop.py").write_text(
        textwrap.dedent("""
        from rawbg import App
        app = App()

        @app.get("/ping")
        async def ping(loud: bool = False):
            return "pong"
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "rawbg", "shop:app", "--app-dir", str(tmp_path), "--routes"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "GET, HEAD /ping" in result.stdout
    assert "loud: bool = False  <- query" in result.stdout
    assert "serving on" not in result.stdout


def test_routes_show_the_response_parameter_and_the_response_class():
    from rawbg import HTMLResponse, Response

    app = App()

    @app.get("/page", response_class=HTMLResponse)
    def page(response: Response):
        return "<p>"

    text = describe_routes(app)
    assert "[def, in the thread pool]  -> HTMLResponse" in text
    assert "response: Response  <- response (headers, cookies, status)" in text


def test_routes_show_route_dependencies_before_the_parameters_and_the_middleware():
    from rawbg.app.routing import APIRouter
    from rawbg.middleware.cors import CORSMiddleware

    def check_token(token: str) -> None:
        return None

    router = APIRouter(prefix="/items", dependencies=[Depends(check_token)])

    @router.get("/{item_id}")
    async def read(item_id: int):
        return item_id

    app = App()
    app.include_router(router)

    @app.middleware("http")
    async def timing(request, call_next):
        return await call_next(request)

    app.add_middleware(CORSMiddleware, allow_origins=["*"])
    lines = describe_routes(app).splitlines()
    assert lines[0] == (
        "middleware, outermost first: CORSMiddleware -> "
        "test_routes_show_route_dependencies_before_the_parameters_and_the_middleware"
        ".<locals>.timing"
    )
    first, second = [line for line in lines if "├─" in line or "└─" in line][:2]
    assert first.startswith("  ├─ dependencies[0]  <- Depends(")
    assert "check_token" in first
    assert second.startswith("  │  └─ token: str  <- query")


def test_routes_show_form_fields_files_and_the_routes_body_limit():
    from rawbg import Form, UploadFile

    app = App()

    @app.post("/upload", max_body_size=1000)
    async def upload(file: UploadFile, note: Annotated[str, Form(alias="n")] = ""):
        return {}

    @app.post("/json")
    async def json_body(item: dict):
        return item

    text = describe_routes(app)
    assert "  body: at most 1000 bytes, read as it arrives" in text
    assert "file: UploadFile  <- an uploaded file 'file' (multipart/form-data)" in text
    assert "<- a form field 'n' (application/x-www-form-urlencoded)" in text
    assert text.count("  body: ") == 1  # a JSON route with the server's limit says nothing
