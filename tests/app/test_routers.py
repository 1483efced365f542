"""APIRouter, include_router, route dependencies, the trailing-slash redirect, duplicate routes.

What a client sees, through in-memory connections (`serve_app(..., in_memory=True)`),
and over a real socket where the test is about the raw bytes. `Router.match`
itself is tested alone in test_routing_match.py.
"""

import inspect
import logging
import os
from typing import Annotated

import pytest

from rawbg import App, Depends, HTTPException, Request
from rawbg.app.routing import APIRouter
from rawbg.cli import registration_site
from rawbg.errors import RouteDefinitionError
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes


def token_query(token: str):
    if token != "jessica":
        raise HTTPException(status_code=400, detail="No Jessica token provided")


def bigger_app(calls: list[str]) -> App:
    """The shape of FastAPI's bigger-applications chapter, with a record of what ran."""

    def x_token(request: Request):
        calls.append("x_token")
        if request.headers.get("x-token") != "secret":
            raise HTTPException(status_code=400, detail="X-Token header invalid")

    def app_token(token: str):
        calls.append("app_token")
        token_query(token)

    items = APIRouter(prefix="/items", tags=["items"], dependencies=[Depends(x_token)],
                      responses={404: {"description": "Not found"}})  # fmt: skip

    @items.get("/")
    async def read_items():
        calls.append("read_items")
        return ["plumbus"]

    @items.put("/{item_id}", tags=["custom"], responses={403: {"description": "no"}})
    async def update_item(item_id: str):
        return {"item_id": item_id}

    users = APIRouter()

    @users.get("/users/me", tags=["users"])
    async def read_user_me():
        return {"username": "me"}

    @users.get("/users/{username}", tags=["users"])
    async def read_user(username: str):
        return {"username": username}

    admin = APIRouter()

    @admin.post("/")
    async def update_admin():
        calls.append("update_admin")
        return {"message": "admin"}

    app = App(dependencies=[Depends(app_token)])
    app.include_router(users)
    app.include_router(items)
    app.include_router(
        admin, prefix="/admin", tags=["admin"], dependencies=[Depends(x_token)],
        responses={418: {"description": "I'm a teapot"}},
    )  # fmt: skip
    return app


async def test_included_routers_answer_under_their_prefixes():
    calls: list[str] = []
    async with serve_app(bigger_app(calls), in_memory=True) as client:
        response = await client.get("/users/me?token=jessica")
        assert (response.status_code, response.json()) == (200, {"username": "me"})
        response = await client.get("/users/rick?token=jessica")
        assert response.json() == {"username": "rick"}
        response = await client.get("/items/?token=jessica", headers={"x-token": "secret"})
        assert (response.status_code, response.json()) == (200, ["plumbus"])
        response = await client.put("/items/gun?token=jessica", headers={"x-token": "secret"})
        assert response.json() == {"item_id": "gun"}
        response = await client.post("/admin/?token=jessica", headers={"x-token": "secret"})
        assert (response.status_code, response.json()) == (200, {"message": "admin"})


async def test_app_then_router_dependencies_run_before_the_handler_in_order():
    calls: list[str] = []
    async with serve_app(bigger_app(calls), in_memory=True) as client:
        await client.get("/items/?token=jessica", headers={"x-token": "secret"})
    assert calls == ["app_token", "x_token", "read_items"]


async def test_a_failing_route_dependency_answers_and_the_handler_does_not_run():
    calls: list[str] = []
    async with serve_app(bigger_app(calls), in_memory=True) as client:
        response = await client.get("/items/?token=jessica", headers={"x-token": "wrong"})
        assert (response.status_code, response.json()) == (
            400,
            {"detail": "X-Token header invalid"},
        )
        response = await client.get("/items/?token=monica", headers={"x-token": "secret"})
        assert response.json() == {"detail": "No Jessica token provided"}
        response = await client.post("/admin/?token=jessica")
        assert response.status_code == 400
    assert "read_items" not in calls and "update_admin" not in calls


async def test_missing_parameters_of_route_dependencies_are_422_entries_with_the_handlers():
    app = App(dependencies=[Depends(token_query)])

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int, q: int):
        return thing_id

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/things/x?q=y")
    assert response.status_code == 422
    assert [entry["loc"] for entry in response.json()["detail"]] == [
        ["query", "token"],
        ["path", "thing_id"],
        ["query", "q"],
    ]


async def test_route_dependencies_share_the_request_cache_and_yield_ones_are_cleaned_up():
    events: list[str] = []

    def counted():
        events.append("counted")
        return 7

    async def session():
        events.append("open")
        yield "db"
        events.append("close")

    app = App()

    @app.get("/r", dependencies=[Depends(counted), Depends(session)])
    async def handler(
        value: Annotated[int, Depends(counted)], db: Annotated[str, Depends(session)]
    ):
        events.append(f"handler {value} {db}")
        return "ok"

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/r")).json() == "ok"
        await client.wait_for_background()
    assert events == ["counted", "open", "handler 7 db", "close"]


async def test_nested_routers_stack_prefixes_and_dependencies():
    order: list[str] = []

    def dep(name: str):
        def record():
            order.append(name)

        return record

    inner = APIRouter(prefix="/inner", dependencies=[Depends(dep("inner"))])

    @inner.get("/leaf", dependencies=[Depends(dep("route"))])
    async def leaf():
        order.append("handler")
        return "leaf"

    outer = APIRouter(prefix="/outer", dependencies=[Depends(dep("outer"))])
    outer.include_router(inner, prefix="/mid", dependencies=[Depends(dep("include inner"))])
    app = App(dependencies=[Depends(dep("app"))])
    app.include_router(outer, prefix="/v1", dependencies=[Depends(dep("include outer"))])

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/v1/outer/mid/inner/leaf")
    assert (response.status_code, response.json()) == (200, "leaf")
    assert order == ["app", "include outer", "outer", "include inner", "inner", "route", "handler"]


async def test_including_is_a_snapshot_of_the_router():
    router = APIRouter()

    @router.get("/before")
    async def before():
        return 1

    app = App()
    app.include_router(router)

    @router.get("/after")
    async def after():
        return 2

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/before")).status_code == 200
        assert (await client.get("/after")).status_code == 404


def test_router_prefixes_are_checked_and_an_empty_path_needs_a_prefix():
    with pytest.raises(ValueError, match="must start with '/'"):
        APIRouter(prefix="items")
    with pytest.raises(ValueError, match="must not end with '/'"):
        APIRouter(prefix="/items/")
    router = APIRouter()
    with pytest.raises(RouteDefinitionError, match="cannot both be empty"):

        @router.get("")
        async def nothing():
            return None


def test_a_broken_route_in_a_router_fails_when_it_is_included():
    router = APIRouter()

    @router.get("/x/{thing}")
    async def handler(thing: dict):
        return None

    with pytest.raises(RouteDefinitionError, match="parameter 'thing'"):
        App().include_router(router)


def test_a_route_refused_at_include_router_is_blamed_on_its_own_definition_line():
    # FastAPI refuses such a route where it is declared; rawbg plans it when the router
    # is included, so the error names the route's line, not the include_router call's.
    inner, outer = APIRouter(prefix="/users"), APIRouter()
    definition = inspect.currentframe().f_lineno + 2  # type: ignore[union-attr]

    @inner.get("/me/{thing}")
    async def me(thing: dict):
        return None

    outer.include_router(inner)
    with pytest.raises(RouteDefinitionError, match="parameter 'thing'") as caught:
        App().include_router(outer)
    assert caught.value.site == f"{__file__}:{definition}"
    assert registration_site(caught.value) == f"{os.path.relpath(__file__)}:{definition}"


def test_route_dependencies_must_be_depends_of_a_callable():
    app = App()
    with pytest.raises(RouteDefinitionError, match="each item must be Depends"):
        app.get("/x", dependencies=[token_query])(token_query)
    with pytest.raises(RouteDefinitionError, match="must be a list of Depends"):
        App(dependencies=Depends(token_query))  # type: ignore[arg-type]


def test_openapi_only_options_are_accepted_and_unknown_ones_named():
    app = App(title="t", version="1", description="d")
    for decorate in (app.get, app.post):
        decorate(
            "/documented",
            tags=["a"],
            summary="s",
            description="d",
            response_description="r",
            deprecated=True,
            operation_id="op",
            include_in_schema=False,
            responses={404: {}},
            name="n",
        )(lambda: None)
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*: tagz"):
        app.get("/x", tagz=["a"])(token_query)


async def test_head_options_and_api_route_register_their_methods():
    app = App()

    @app.head("/h")
    async def head_only():
        return None

    @app.options("/o")
    async def options_only():
        return {"allow": "everything"}

    @app.api_route("/both", methods=["GET", "POST"])
    async def both(request: Request):
        return request.method

    async def plain():
        return "plain"

    app.add_api_route("/plain", plain)  # GET, as in FastAPI
    router = APIRouter(prefix="/r")
    router.add_api_route("/plain", plain, methods=["PUT"])
    app.include_router(router)

    async with serve_app(app, in_memory=True) as client:
        assert (await client.head("/h")).status_code == 200
        assert (await client.get("/h")).status_code == 405
        response = await client.request("OPTIONS", "/o")
        assert response.json() == {"allow": "everything"}
        assert (await client.get("/both")).json() == "GET"
        assert (await client.post("/both")).json() == "POST"
        assert (await client.put("/both")).status_code == 405
        assert (await client.get("/plain")).json() == "plain"
        assert (await client.put("/r/plain")).json() == "plain"


async def test_a_duplicate_route_keeps_the_first_and_logs_a_warning(caplog):
    app = App()

    @app.get("/x")
    async def first():
        return 1

    with caplog.at_level(logging.WARNING, logger="rawbg.app"):

        @app.get("/x")
        async def second():
            return 2

    [record] = caplog.records
    assert "GET /x is already registered" in record.getMessage()
    assert "first" in record.getMessage() and "second" in record.getMessage()
    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/x")).json() == 1


# -- the trailing-slash redirect ----------------------------------------------------


def slash_app(**options) -> App:
    app = App(**options)

    @app.get("/items/")
    async def items():
        return "items"

    @app.post("/users")
    async def users():
        return "users"

    @app.get("/files/{name}/")
    async def files(name: str):
        return name

    return app


async def test_a_missing_trailing_slash_redirects_with_307_keeping_the_query():
    async with serve_app(slash_app()) as server_client:
        client = await RawClient.connect(server_client.port)
        try:
            await client.send(request_bytes("GET", "/items?q=1&r=%20", headers={"host": "h:8"}))
            response = await client.read_response()
            assert response.status_code == 307
            assert response.headers["location"] == "http://h:8/items/?q=1&r=%20"
            await client.send(request_bytes("POST", "/users/", headers={"host": "h:8"}))
            response = await client.read_response(method=b"POST")
            assert (response.status_code, response.headers["location"]) == (307, "http://h:8/users")
            await client.send(request_bytes("GET", "/files/a%20b", headers={"host": "h"}))
            response = await client.read_response()
            assert response.headers["location"] == "http://h/files/a%20b/"
        finally:
            await client.close()


async def test_the_redirect_goes_where_a_route_is_and_the_target_answers():
    async with serve_app(slash_app(), in_memory=True) as client:
        response = await client.get("/items")
        assert response.status_code == 307
        location = response.headers["location"]
        assert location.endswith("/items/")
        assert (await client.get("/items/")).json() == "items"
        assert (await client.get("/nothing")).status_code == 404
        assert (await client.get("/nothing/")).status_code == 404


async def test_no_redirect_when_turned_off_or_to_another_host():
    async with serve_app(slash_app(redirect_slashes=False), in_memory=True) as client:
        assert (await client.get("/items")).status_code == 404
    app = App()

    @app.get("//evil.example/")
    async def odd():
        return None

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("//evil.example")).status_code == 404


async def test_a_path_that_matches_with_another_method_is_405_not_a_redirect():
    app = App()

    @app.get("/a")
    async def get_a():
        return None

    @app.post("/a/")
    async def post_a():
        return None

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/a")
        assert response.status_code == 405


async def test_a_bad_host_header_gives_a_relative_location():
    async with serve_app(slash_app(), in_memory=True) as client:
        # valid RFC 3986 hosts, but not names the redirect will put in a Location
        for host in ("my_host", "a!b$c", "%65vil.example"):
            response = await client.get("/items", headers={"host": host})
            assert (response.status_code, response.headers["location"]) == (307, "/items/")
        # invalid ones never reach the app: the server refuses them (RFC 9112 3.2)
        for host in ("a b/c", "evil.example/path", "h@evil.example"):
            response = await client.get("/items", headers={"host": host})
            assert response.status_code == 400
            assert "location" not in response.headers


def test_mounting_an_asgi_application_is_refused_with_what_to_do_instead():
    # a rawbg App can be mounted since issue 22 (tests/app/test_mount.py); an ASGI one cannot
    import rawbg

    class AsgiApp:
        async def __call__(self, scope, receive, send): ...

    assert rawbg.APIRouter is APIRouter
    with pytest.raises(RouteDefinitionError, match=r"not ASGI.*include_router"):
        App().mount("/subapi", AsgiApp())


async def test_the_redirect_keeps_the_root_path_and_the_scheme_a_trusted_proxy_gave():
    async with serve_app(
        slash_app(), root_path="/api", forwarded_allow_ips="127.0.0.1", in_memory=True
    ) as client:
        response = await client.get(
            "/items?q=1", headers={"host": "example.com", "x-forwarded-proto": "https"}
        )
    assert (response.status_code, response.headers["location"]) == (
        307,
        "https://example.com/api/items/?q=1",
    )


async def test_a_fixed_path_registered_after_a_template_that_matches_it_is_warned_about(caplog):
    app = App()

    @app.get("/users/{user_id}")
    async def read_user(user_id: str):
        return user_id

    with caplog.at_level(logging.WARNING, logger="rawbg.app"):

        @app.get("/users/me")
        async def read_me():
            return "me"

        @app.post("/users/new")  # no POST template matches it: no warning
        async def create():
            return "new"

    [record] = caplog.records
    assert record.getMessage().startswith("/users/me is registered after /users/{user_id}")
    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/users/me")).json() == "me"  # FastAPI: read_user("me")
