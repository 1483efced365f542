"""Response classes, response_class=, the `response: Response` parameter and cookies."""

import dataclasses
import datetime
import decimal
import sys
import threading
from typing import Annotated, Any

import pytest

from rawbg import (
    App,
    Depends,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    ORJSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    RouteDefinitionError,
    StreamingResponse,
    UJSONResponse,
    status,
)
from rawbg.responses import format_cookie
from rawbg.testing import serve_app

# -- redirects -----------------------------------------------------------------


async def test_a_redirect_is_a_307_with_a_location_and_an_empty_body():
    app = App()

    @app.get("/typer")
    async def typer():
        return RedirectResponse("https://typer.tiangolo.com")

    @app.get("/found")
    async def found():
        return RedirectResponse("/elsewhere", status_code=302, headers={"x-why": "moved"})

    async with serve_app(app) as client:
        response = await client.get("/typer")
        assert response.status_code == 307
        assert response.headers["location"] == "https://typer.tiangolo.com"
        assert (response.headers["content-length"], response.body) == ("0", b"")
        assert "content-type" not in response.headers
        response = await client.get("/found")
        assert response.status_code == 302
        assert response.headers["location"] == "/elsewhere"
        assert response.headers["x-why"] == "moved"


def test_a_redirect_location_escapes_what_a_header_cannot_carry_and_keeps_the_rest():
    response = RedirectResponse("/café/a b?q=1&r=%20#top")
    assert response.headers["location"] == "/caf%C3%A9/a%20b?q=1&r=%20#top"


async def test_response_class_redirect_turns_a_returned_url_into_a_redirect():
    app = App()

    @app.get("/fastapi", response_class=RedirectResponse)
    async def redirect_fastapi():
        return "https://fastapi.tiangolo.com"

    @app.get("/pydantic", response_class=RedirectResponse, status_code=302)
    async def redirect_pydantic():
        return "https://docs.pydantic.dev/"

    async with serve_app(app) as client:
        response = await client.get("/fastapi")
        assert (response.status_code, response.headers["location"]) == (
            307,
            "https://fastapi.tiangolo.com",
        )
        response = await client.get("/pydantic")
        assert (response.status_code, response.headers["location"]) == (
            302,
            "https://docs.pydantic.dev/",
        )


# -- response_class and default_response_class ----------------------------------


async def test_response_class_renders_the_return_value_with_its_media_type():
    app = App()

    @app.get("/html", response_class=HTMLResponse)
    async def html():
        return "<h1>hi</h1>"

    @app.get("/text", response_class=PlainTextResponse, status_code=201)
    def text():
        return "Hello World"

    @app.get("/explicit", response_class=HTMLResponse)
    async def explicit():
        return PlainTextResponse("returned responses are sent as they are")

    async with serve_app(app) as client:
        response = await client.get("/html")
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.text == "<h1>hi</h1>"
        response = await client.get("/text")
        assert response.status_code == 201
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text == "Hello World"
        response = await client.get("/explicit")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_the_apps_default_response_class_applies_unless_the_route_says_otherwise():
    app = App(default_response_class=HTMLResponse)

    @app.get("/items/")
    async def read_items():
        return "<h1>Items</h1>"

    @app.get("/json", response_class=JSONResponse)
    async def as_json():
        return "<h1>Items</h1>"

    async with serve_app(app) as client:
        response = await client.get("/items/")
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.text == "<h1>Items</h1>"
        response = await client.get("/json")
        assert response.headers["content-type"] == "application/json"
        assert response.json() == "<h1>Items</h1>"


@dataclasses.dataclass
class Event:
    name: str
    at: datetime.datetime


async def test_a_custom_response_class_gets_the_value_made_jsonable_first():
    class Indented(Response):
        media_type = "application/json"

        def render(self, content: Any) -> bytes:
            import json

            return json.dumps(content, indent=2).encode()

    app = App()

    @app.get("/", response_class=Indented)
    async def main():
        return {"event": Event("launch", datetime.datetime(2024, 1, 2, 3, 4, 5))}

    async with serve_app(app) as client:
        response = await client.get("/")
    assert response.body == (
        b'{\n  "event": {\n    "name": "launch",\n    "at": "2024-01-02T03:04:05"\n  }\n}'
    )


async def test_orjson_and_ujson_responses_render_json():
    app = App()

    @app.get("/orjson", response_class=ORJSONResponse)
    async def by_orjson():
        return [{"item_id": "Foo", "at": datetime.date(2024, 1, 1)}]

    @app.get("/ujson", response_class=UJSONResponse)
    async def by_ujson():
        return [{"item_id": "Foo", "price": decimal.Decimal("1.5")}]

    @app.get("/returned")
    async def returned():
        return ORJSONResponse({"é": 1}, status_code=201)

    async with serve_app(app) as client:
        response = await client.get("/orjson")
        assert response.headers["content-type"] == "application/json"
        assert response.body == b'[{"item_id":"Foo","at":"2024-01-01"}]'
        response = await client.get("/ujson")
        assert response.headers["content-type"] == "application/json"
        assert response.json() == [{"item_id": "Foo", "price": 1.5}]
        response = await client.get("/returned")
        assert (response.status_code, response.body) == (201, '{"é":1}'.encode())


@pytest.mark.parametrize(
    ("response_class", "package"), [(ORJSONResponse, "orjson"), (UJSONResponse, "ujson")]
)
def test_without_its_library_a_json_response_class_is_an_import_error_naming_it(
    monkeypatch, response_class, package
):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now fails
    app = App()
    with pytest.raises(
        ImportError, match=rf"{response_class.__name__} needs the {package} package"
    ):
        app.add_route("/", lambda: None, methods=["GET"], response_class=response_class)
    with pytest.raises(ImportError, match=rf"pip install 'rawbg\[{package}\]'"):
        response_class({"a": 1})


def test_a_response_class_that_is_not_a_response_is_refused_at_registration():
    app = App()
    with pytest.raises(RouteDefinitionError, match=r"response_class of GET / must be a Response"):
        app.add_route("/", lambda: None, methods=["GET"], response_class=dict)  # type: ignore[arg-type]
    with pytest.raises(RouteDefinitionError, match=r"default_response_class=...\) must be"):
        App(default_response_class=str)  # type: ignore[arg-type]


def test_a_response_class_in_a_union_return_annotation_is_refused_unless_response_model_none():
    # FastAPI's tutorial response_model/tutorial003_04 (and 003_05, its way out)
    app = App()
    with pytest.raises(
        RouteDefinitionError, match=r"Response \| dict mixes a Response class"
    ) as caught:

        @app.get("/portal")
        async def portal(teleport: bool = False) -> Response | dict:
            return RedirectResponse("/elsewhere") if teleport else {"message": "here"}

    assert "response_model=None" in str(caught.value)
    assert "[route GET /portal]" in str(caught.value)
    with pytest.raises(RouteDefinitionError, match=r"RedirectResponse \| None mixes"):
        app.add_route("/maybe", _maybe_redirect, methods=["GET"])

    @app.get("/portal", response_model=None)
    async def portal_without_a_model(teleport: bool = False) -> Response | dict:
        return RedirectResponse("/elsewhere") if teleport else {"message": "here"}

    @app.get("/plain")
    async def plain() -> RedirectResponse:  # a Response class alone is never a model
        return RedirectResponse("/portal")

    assert [route.path for route in app.routes][-2:] == ["/portal", "/plain"]


async def _maybe_redirect() -> RedirectResponse | None:
    return None


async def test_json_responses_encode_what_jsonable_encoder_does():
    app = App()

    @app.get("/")
    async def main():
        return {"price": decimal.Decimal("2.50"), "took": datetime.timedelta(seconds=3)}

    async with serve_app(app) as client:
        assert (await client.get("/")).json() == {"price": 2.5, "took": 3.0}


# -- the response: Response parameter -------------------------------------------


async def test_a_response_parameter_adds_headers_cookies_and_status_to_the_returned_value():
    app = App()
    tasks = {"foo": "Listen to the Bar Fighters"}

    async def tracking(response: Response) -> None:
        response.headers["x-tracked"] = "yes"
        response.set_cookie("seen", "1")

    @app.put("/get-or-create-task/{task_id}", status_code=200)
    def get_or_create_task(task_id: str, response: Response, _: Annotated[None, Depends(tracking)]):
        response.headers["X-Cat-Dog"] = "alone in the world"
        response.set_cookie(key="fakesession", value="fake-cookie-session-value")
        if task_id not in tasks:
            tasks[task_id] = "This didn't exist before"
            response.status_code = status.HTTP_201_CREATED
        return tasks[task_id]

    async with serve_app(app) as client:
        response = await client.put("/get-or-create-task/foo")
        assert (response.status_code, response.json()) == (200, "Listen to the Bar Fighters")
        assert response.headers["x-cat-dog"] == "alone in the world"
        assert response.headers["x-tracked"] == "yes"
        assert response.headers["content-type"] == "application/json"
        assert response.headers.getlist("set-cookie") == [
            "seen=1; Path=/; SameSite=lax",
            "fakesession=fake-cookie-session-value; Path=/; SameSite=lax",
        ]
        response = await client.put("/get-or-create-task/bar")
        assert (response.status_code, response.json()) == (201, "This didn't exist before")


async def test_the_response_parameter_is_one_object_per_request_shared_by_its_dependencies():
    app = App()
    # the objects themselves, not their id(): a freed one's address may be reused
    seen: list[Response] = []

    async def first(response: Response) -> None:
        seen.append(response)
        response.headers["x-first"] = "1"

    @app.get("/")
    async def handler(response: Response, _: Annotated[None, Depends(first)]):
        seen.append(response)
        return "ok"

    async with serve_app(app) as client:
        assert "x-first" in (await client.get("/")).headers
        assert "x-first" in (await client.get("/")).headers
    assert seen[0] is seen[1] and seen[2] is seen[3] and seen[0] is not seen[2]


async def test_the_response_parameter_is_not_applied_to_a_returned_response_or_an_error():
    # As in FastAPI: a Response the handler returns is sent as it is.
    app = App()

    @app.get("/returned")
    async def returned(response: Response):
        response.headers["x-lost"] = "1"
        response.status_code = 202
        return PlainTextResponse("mine")

    @app.get("/error")
    async def error(response: Response):
        response.headers["x-lost"] = "1"
        raise HTTPException(409, "conflict")

    async with serve_app(app) as client:
        response = await client.get("/returned")
        assert (response.status_code, response.text) == (200, "mine")
        assert "x-lost" not in response.headers
        response = await client.get("/error")
        assert response.status_code == 409
        assert "x-lost" not in response.headers


# -- cookies and headers ----------------------------------------------------------


async def test_set_cookie_and_delete_cookie_each_send_their_own_set_cookie_line():
    app = App()

    @app.post("/cookie/")
    def create_cookie():
        response = JSONResponse({"message": "Come to the dark side, we have cookies"})
        response.set_cookie(key="fakesession", value="fake-cookie-session-value")
        response.set_cookie("prefs", "dark mode", httponly=True, secure=True, samesite="strict")
        response.delete_cookie("old")
        return response

    async with serve_app(app) as client:
        response = await client.post("/cookie/")
    assert response.json() == {"message": "Come to the dark side, we have cookies"}
    cookies = response.headers.getlist("set-cookie")
    assert cookies[0] == "fakesession=fake-cookie-session-value; Path=/; SameSite=lax"
    assert cookies[1] == 'prefs="dark mode"; HttpOnly; Path=/; SameSite=strict; Secure'
    assert cookies[2].startswith('old=""; expires=')
    assert "Max-Age=0" in cookies[2]


def test_cookie_attributes_follow_starlettes_arguments():
    common: dict[str, Any] = {
        "max_age": None,
        "expires": None,
        "path": "/",
        "domain": None,
        "secure": False,
        "httponly": False,
        "samesite": "lax",
        "partitioned": False,
    }
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert format_cookie("a", "1", **{**common, "max_age": 60, "domain": "example.com"}) == (
        "a=1; Domain=example.com; Max-Age=60; Path=/; SameSite=lax"
    )
    assert format_cookie("a", "1", **{**common, "expires": expires, "samesite": None}) == (
        "a=1; expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/"
    )
    assert format_cookie("a", "1", **{**common, "partitioned": True, "path": None}).endswith(
        "SameSite=lax; Partitioned"
    )
    with pytest.raises(ValueError, match="samesite must be 'strict', 'lax' or 'none'"):
        format_cookie("a", "1", **{**common, "samesite": "sometimes"})
    with pytest.raises(ValueError, match="cannot set cookie 'a b'"):
        format_cookie("a b", "1", **common)


def test_response_headers_are_case_insensitive_and_repeatable():
    response = Response(headers={"X-One": "1"})
    response.headers["x-one"] = "one"
    response.headers.append("Set-Cookie", "a=1")
    response.headers.append("set-cookie", "b=2")
    assert response.headers["X-ONE"] == "one"
    assert response.headers.getlist("SET-COOKIE") == ["a=1", "b=2"]
    assert list(response.headers) == ["x-one", "set-cookie"]
    del response.headers["Set-Cookie"]
    assert "set-cookie" not in response.headers
    assert response.head_fields() == [(b"x-one", b"one"), (b"content-length", b"0")]


async def test_a_content_type_header_given_by_the_app_is_not_doubled():
    app = App()

    @app.get("/legacy/")
    def get_legacy_data():
        return Response(content="<shampoo/>", media_type="application/xml")

    @app.get("/own")
    def own():
        return JSONResponse([1], headers={"Content-Type": "application/vnd.x+json"})

    async with serve_app(app) as client:
        response = await client.get("/legacy/")
        assert (response.headers["content-type"], response.text) == (
            "application/xml",
            "<shampoo/>",
        )
        response = await client.get("/own")
        assert response.headers.getlist("content-type") == ["application/vnd.x+json"]


# -- streaming ------------------------------------------------------------------------


async def test_a_plain_iterator_is_advanced_in_a_worker_thread_and_closed_when_done():
    app = App()
    threads: set[int] = set()
    closed = threading.Event()

    def iterfile():
        try:
            for i in range(3):
                threads.add(threading.get_ident())
                yield f"chunk {i};"
        finally:
            closed.set()

    @app.get("/")
    def main():
        return StreamingResponse(iterfile(), media_type="video/mp4")

    async with serve_app(app) as client:
        response = await client.get("/")
        assert response.body == b"chunk 0;chunk 1;chunk 2;"
        assert response.headers["content-type"] == "video/mp4"
    assert threading.get_ident() not in threads
    assert closed.is_set()


async def test_a_routers_response_class_survives_include_router():
    from rawbg import APIRouter

    router = APIRouter(prefix="/pages")

    @router.get("/home", response_class=HTMLResponse)
    async def home():
        return "<h1>home</h1>"

    app = App()
    app.include_router(router)
    async with serve_app(app) as client:
        response = await client.get("/pages/home")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == "<h1>home</h1>"


async def test_a_header_value_a_header_cannot_carry_is_a_500_from_the_handler(caplog):
    app = App()

    @app.get("/")
    async def main(response: Response):
        response.headers["x-name"] = "Zoë 🦄"
        return "never"

    async with serve_app(app) as client:
        response = await client.get("/")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert "header 'x-name': 'Zoë 🦄' cannot be sent" in str(caplog.records[0].exc_info[1])
