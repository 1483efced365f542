"""The synchronous TestClient: a real server in a thread, FastAPI's calling shape."""

from __future__ import annotations

import threading

from rawbg import App, BackgroundTasks, Request, Response, status
from rawbg.testclient import TestClient


def make_app(events: list[str]) -> App:
    app = App()

    def remember(text: str) -> None:
        events.append(text)

    @app.post("/notes/{text}")
    async def add_note(text: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(remember, text)
        return {"queued": text}

    @app.get("/echo")
    async def echo(request: Request) -> dict[str, object]:
        return {
            "query": sorted((k, request.query_params.getlist(k)) for k in request.query_params),
            "host": request.headers.get("host"),
            "cookie": request.headers.get("cookie"),
            "agent": request.headers.get("x-agent"),
        }

    @app.post("/body")
    async def body(request: Request) -> dict[str, object]:
        return {
            "type": request.headers.get("content-type"),
            "body": (await request.body()).decode(),
        }

    @app.get("/old")
    async def old() -> Response:
        return Response(status_code=307, headers={"location": "/echo?moved=yes"})

    @app.get("/login")
    async def login() -> Response:
        return Response(content=b"ok", headers={"set-cookie": "session=abc; Path=/"})

    return app


def test_post_returns_after_the_background_task_has_run() -> None:
    events: list[str] = []
    with TestClient(make_app(events)) as client:
        response = client.post("/notes/hello")
        assert events == ["hello"]
    assert response.status_code == 200
    assert response.json() == {"queued": "hello"}


def test_without_waiting_the_response_comes_before_the_task_finishes() -> None:
    release = threading.Event()
    seen: list[str] = []
    app = App()

    def slow() -> None:
        release.wait(5)
        seen.append("task")

    @app.get("/")
    async def index(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(slow)
        return {"ok": True}

    with TestClient(app, wait_for_background=False) as client:
        assert client.get("/").json() == {"ok": True}
        assert seen == []
        release.set()
    # leaving the block shut the server down gracefully: the task was drained
    assert seen == ["task"]


def test_params_headers_and_cookies_are_sent() -> None:
    with TestClient(make_app([]), headers={"x-agent": "pytest"}) as client:
        response = client.get("/echo", params={"q": ["a", "b"], "flag": True}, cookies={"c": "1"})
    assert response.json() == {
        "query": [["flag", ["true"]], ["q", ["a", "b"]]],
        "host": "testserver",
        "cookie": "c=1",
        "agent": "pytest",
    }


def test_json_and_form_bodies_carry_their_content_type() -> None:
    with TestClient(make_app([])) as client:
        as_json = client.post("/body", json={"a": 1}).json()
        as_form = client.post("/body", data={"a": "1", "b": "x y"}).json()
    assert as_json == {"type": "application/json", "body": '{"a":1}'}  # compact, as httpx
    assert as_form == {"type": "application/x-www-form-urlencoded", "body": "a=1&b=x+y"}


def test_redirects_are_followed_unless_asked_not_to() -> None:
    with TestClient(make_app([])) as client:
        followed = client.get("/old")
        stopped = client.get("/old", follow_redirects=False)
    assert followed.status_code == 200
    assert followed.json()["query"] == [["moved", ["yes"]]]
    assert followed.url == "http://testserver/echo?moved=yes"
    assert stopped.status_code == 307
    assert stopped.headers["location"] == "/echo?moved=yes"


def test_cookies_set_by_a_response_are_sent_with_the_next_request() -> None:
    with TestClient(make_app([])) as client:
        assert client.get("/login").cookies == {"session": "abc"}
        assert client.get("/echo").json()["cookie"] == "session=abc"


def test_without_with_the_server_starts_at_the_first_request() -> None:
    events: list[str] = []
    client = TestClient(make_app(events))
    assert events == []
    assert client.post("/notes/lazy").status_code == 200
    client.close()
    assert events == ["lazy"]


def test_an_https_base_url_is_the_request_scheme_and_gzip_bodies_are_decoded() -> None:
    from rawbg.middleware.gzip import GZipMiddleware

    app = App()

    @app.get("/scheme")
    async def scheme(request: Request) -> dict[str, str]:
        return {"scheme": request.scheme, "padding": "x" * 600}

    app.add_middleware(GZipMiddleware)
    with TestClient(app, base_url="https://testserver") as client:
        response = client.get("/scheme", headers={"accept-encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["scheme"] == "https"
    with TestClient(app) as client:
        assert client.get("/scheme").json()["scheme"] == "http"


def test_an_exception_that_ended_in_a_500_is_raised_in_the_test_unless_asked_not_to() -> None:
    app = App()

    class PortalGunError(Exception):
        pass

    @app.get("/boom")
    async def boom() -> None:
        raise PortalGunError("too dangerous")

    with TestClient(app) as client:
        try:
            client.get("/boom")
        except PortalGunError as exc:
            assert exc.args == ("too dangerous",)
        else:
            raise AssertionError("the app's exception was not raised in the test")
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"


def test_it_says_who_it_is_and_sends_a_header_given_twice_twice() -> None:
    app = App()

    @app.get("/")
    async def index(request: Request) -> dict[str, object]:
        return {"agent": request.headers["user-agent"], "tokens": request.headers.getlist("x-t")}

    with TestClient(app) as client:
        response = client.get("/", headers=[("X-T", "a"), ("X-T", "b")])
    assert response.json() == {"agent": "testclient", "tokens": ["a", "b"]}


def test_cookies_can_be_set_on_the_client_as_with_httpx() -> None:
    with TestClient(make_app([])) as client:
        client.cookies.set("flavour", "ginger")
        assert client.get("/echo").json()["cookie"] == "flavour=ginger"


def test_the_app_sees_the_client_as_testclient_as_in_starlette() -> None:
    app = App()

    @app.get("/who")
    async def who(request: Request) -> list[object]:
        assert request.client is not None
        return [request.client.host, request.client.port]

    with TestClient(app) as client:
        assert client.get("/who").json() == ["testclient", 50000]
        sent = client.get("/who", headers={"X-Forwarded-For": "203.0.113.7"}).json()
        assert sent == ["203.0.113.7", 0]


def test_cookies_set_on_the_client_are_sent_with_every_request() -> None:
    app = App()

    @app.get("/cookie")
    async def cookie(request: Request) -> str:
        return request.headers.get("cookie", "")

    with TestClient(app) as client:
        client.cookies.set("last_query", "from_cookie")
        assert client.get("/cookie").json() == "last_query=from_cookie"


def test_a_status_code_is_the_very_int_object_rawbg_status_holds() -> None:
    # FastAPI's TestClient hands back the int the app used, often a status constant,
    # so tests compare with `is` (expects' `be(status.HTTP_302_FOUND)`).
    app = App()

    @app.get("/status/{code}")
    async def answer(code: int) -> Response:
        return Response(status_code=code)

    with TestClient(app) as client:
        for constant in (
            status.HTTP_302_FOUND,
            status.HTTP_404_NOT_FOUND,
            status.HTTP_503_SERVICE_UNAVAILABLE,
        ):
            got = client.get(f"/status/{constant}", follow_redirects=False).status_code
            assert got is constant
        unprocessable = client.get("/status/x").status_code
        assert unprocessable is status.HTTP_422_UNPROCESSABLE_CONTENT
        assert unprocessable is status.HTTP_422_UNPROCESSABLE_ENTITY
        assert client.get("/status/299").status_code == 299  # no constant: still the number


def test_a_root_path_is_the_apps_and_a_url_under_it_reaches_the_app_without_it() -> None:
    app = App()

    @app.get("/items/{item_id}")
    async def item(item_id: str, request: Request) -> list[str]:
        return [item_id, request.path, request.root_path, str(request.url_for("item", item_id=1))]

    with TestClient(app, root_path="/api/v1") as client:
        under = client.get("/api/v1/items/a?x=1")
        plain = client.get("/items/b")
        beside = client.get("/api/v10/items/c")
    url = "http://testserver/api/v1/items/1"
    assert under.json() == ["a", "/items/a", "/api/v1", url]
    assert plain.json() == ["b", "/items/b", "/api/v1", url]
    assert beside.status_code == 404
