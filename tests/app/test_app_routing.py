"""Routing, return values, response classes and errors, as a client sees them."""

import dataclasses
import logging
import threading

import pytest

from rawbg import (
    App,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from rawbg.testing import serve_app

JSON = "application/json"


def verbs_app() -> App:
    app = App()

    @app.get("/things")
    async def list_things():
        return {"verb": "get"}

    @app.post("/things")
    async def create_thing():
        return {"verb": "post"}

    @app.put("/things")
    async def replace_thing():
        return {"verb": "put"}

    @app.patch("/things")
    async def update_thing():
        return {"verb": "patch"}

    @app.delete("/things")
    async def delete_thing():
        return {"verb": "delete"}

    @app.route("/multi", methods=["GET", "post", "DELETE"])
    async def multi():
        return "multi"

    return app


async def test_each_verb_decorator_routes_its_own_method():
    async with serve_app(verbs_app(), in_memory=True) as client:
        for method in ("get", "post", "put", "patch", "delete"):
            response = await client.request(method, "/things")
            assert response.status_code == 200, method
            assert response.headers["content-type"] == JSON
            assert response.body == b'{"verb":"%s"}' % method.encode()


async def test_route_with_a_list_of_methods_answers_each_of_them_and_no_other():
    async with serve_app(verbs_app(), in_memory=True) as client:
        for method in ("GET", "POST", "DELETE"):
            response = await client.request(method, "/multi")
            assert (response.status_code, response.body) == (200, b'"multi"'), method
        response = await client.put("/multi")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, HEAD, POST"


async def test_route_methods_must_be_a_list_not_a_string():
    app = App()
    with pytest.raises(TypeError, match="methods must be a list of strings, not the string 'GET'"):

        @app.route("/x", methods="GET")
        async def handler():
            return None


async def test_status_code_on_the_decorator_is_the_status_of_returned_values():
    app = App()

    @app.post("/items", status_code=201)
    async def create():
        return {"id": 1}

    @app.get("/accepted", status_code=202)
    def accepted():
        return "queued"

    @app.post("/explicit", status_code=201)
    async def explicit():
        # a Response returned by the handler keeps its own status
        return PlainTextResponse("mine", status_code=200)

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/items")
        assert (response.status_code, response.body) == (201, b'{"id":1}')
        response = await client.get("/accepted")
        assert (response.status_code, response.body) == (202, b'"queued"')
        response = await client.post("/explicit")
        assert (response.status_code, response.body) == (200, b"mine")


async def test_path_templates_with_several_parameters():
    app = App()

    @app.get("/users/{user_id}/items/{item_id}")
    async def item(user_id: int, item_id: str):
        return {"user_id": user_id, "item_id": item_id}

    @app.get("/a/{x}/b/{y}/c/{z}")
    async def three(z: str, x: str, y: str):
        return [x, y, z]

    @app.get("/files/{file_path:path}")
    async def files(file_path: str):
        return file_path

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/users/7/items/abc")
        assert response.status_code == 200
        assert response.body == b'{"user_id":7,"item_id":"abc"}'
        assert (await client.get("/a/1/b/2/c/3")).body == b'["1","2","3"]'
        assert (await client.get("/files/docs/readme.md")).body == b'"docs/readme.md"'
        # a {name} segment never matches a slash, nor an empty segment
        assert (await client.get("/users/7/items/a/b")).status_code == 404
        assert (await client.get("/users//items/abc")).status_code == 404


async def test_unknown_path_is_404_with_a_json_detail():
    async with serve_app(verbs_app(), in_memory=True) as client:
        response = await client.get("/nowhere")
        assert response.status_code == 404
        assert response.headers["content-type"] == JSON
        assert response.body == b'{"detail":"Not Found"}'
        response = await client.post("/things/extra")
        assert (response.status_code, response.body) == (404, b'{"detail":"Not Found"}')


async def test_known_path_with_another_method_is_405_with_allow():
    app = App()

    @app.get("/only-get")
    async def only_get():
        return "ok"

    @app.post("/only-post")
    async def only_post():
        return "ok"

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/only-get")
        assert response.status_code == 405
        assert response.headers["content-type"] == JSON
        assert response.body == b'{"detail":"Method Not Allowed"}'
        assert response.headers["allow"] == "GET, HEAD"

        response = await client.get("/only-post")
        assert (response.status_code, response.body) == (405, b'{"detail":"Method Not Allowed"}')
        assert response.headers["allow"] == "POST"

    async with serve_app(verbs_app(), in_memory=True) as client:
        response = await client.request("OPTIONS", "/things")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH, POST, PUT"


async def test_get_routes_answer_head_with_the_get_headers_and_no_body():
    app = App()
    calls = []

    @app.get("/page")
    async def page():
        calls.append("page")
        return {"hello": "world"}

    async with serve_app(app, in_memory=True) as client:
        get = await client.get("/page")
        head = await client.head("/page")
        assert head.status_code == 200
        assert head.body == b""
        assert head.headers["content-type"] == JSON
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
        assert calls == ["page", "page"]


async def test_an_explicit_head_route_replaces_the_implicit_one():
    app = App()

    @app.get("/r")
    async def get_r():
        return "get"

    @app.route("/r", methods=["HEAD"])
    async def head_r():
        return PlainTextResponse("", headers={"x-from": "head"})

    async with serve_app(app, in_memory=True) as client:
        response = await client.head("/r")
        assert response.status_code == 200
        assert response.headers["x-from"] == "head"
        assert (await client.get("/r")).body == b'"get"'


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str = "p"


@pytest.mark.parametrize(
    ("value", "body"),
    [
        ({"a": 1, "b": [1, 2], "c": {"d": None}}, b'{"a":1,"b":[1,2],"c":{"d":null}}'),
        ([1, "two", 3.5, True, None], b'[1,"two",3.5,true,null]'),
        ("hello", b'"hello"'),
        ("caf\u00e9 \u2603", '"caf\u00e9 \u2603"'.encode()),
        (42, b"42"),
        (-1.25, b"-1.25"),
        (True, b"true"),
        (False, b"false"),
        (None, b"null"),
        (Point(1, 2.5), b'{"x":1,"y":2.5,"label":"p"}'),
        ([Point(0, 0.0, "o")], b'[{"x":0,"y":0.0,"label":"o"}]'),
    ],
    ids=[
        "dict",
        "list",
        "str",
        "unicode",
        "int",
        "float",
        "true",
        "false",
        "none",
        "dataclass",
        "list-of-dataclass",
    ],
)
async def test_returned_values_become_compact_json(value, body):
    app = App()

    @app.get("/")
    async def index():
        return value

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"] == JSON
        assert response.body == body
        assert response.headers["content-length"] == str(len(body))


async def test_response_classes_set_their_content_type_status_and_headers():
    app = App()

    @app.get("/raw")
    async def raw():
        return Response(b"\x00\x01", media_type="application/octet-stream")

    @app.get("/bare")
    async def bare():
        return Response("no type", status_code=203)

    @app.get("/text")
    async def text():
        return PlainTextResponse("plain", status_code=418)

    @app.get("/html")
    async def html():
        return HTMLResponse("<h1>hi</h1>")

    @app.get("/json")
    async def json_response():
        return JSONResponse({"k": [1, 2]}, status_code=201, headers={"X-Custom": "yes"})

    @app.get("/typed")
    async def typed():
        return PlainTextResponse("x", headers={"Content-Type": "text/csv"})

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/raw")
        assert (response.status_code, response.body) == (200, b"\x00\x01")
        assert response.headers["content-type"] == "application/octet-stream"

        response = await client.get("/bare")
        assert (response.status_code, response.body) == (203, b"no type")
        assert "content-type" not in response.headers

        response = await client.get("/text")
        assert (response.status_code, response.body) == (418, b"plain")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"

        response = await client.get("/html")
        assert (response.status_code, response.body) == (200, b"<h1>hi</h1>")
        assert response.headers["content-type"] == "text/html; charset=utf-8"

        response = await client.get("/json")
        assert (response.status_code, response.body) == (201, b'{"k":[1,2]}')
        assert response.headers["content-type"] == JSON
        assert response.headers["x-custom"] == "yes"

        response = await client.get("/typed")
        assert response.headers.getlist("content-type") == ["text/csv"]


async def test_http_exception_gives_its_status_detail_and_headers():
    app = App()

    @app.get("/teapot")
    async def teapot():
        raise HTTPException(418, detail="I refuse", headers={"X-Reason": "tea"})

    @app.get("/structured")
    def structured():
        raise HTTPException(409, detail={"field": "name", "problem": ["taken"]})

    @app.get("/default")
    async def default():
        raise HTTPException(403)

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/teapot")
        assert response.status_code == 418
        assert response.headers["content-type"] == JSON
        assert response.body == b'{"detail":"I refuse"}'
        assert response.headers["x-reason"] == "tea"

        response = await client.get("/structured")
        assert response.status_code == 409
        assert response.body == b'{"detail":{"field":"name","problem":["taken"]}}'

        response = await client.get("/default")
        assert (response.status_code, response.body) == (403, b'{"detail":"Forbidden"}')


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_an_unexpected_exception_is_a_logged_500_and_the_server_keeps_serving(kind, caplog):
    app = App()

    if kind == "async":

        @app.get("/boom")
        async def boom():
            raise RuntimeError("secret internals")
    else:

        @app.get("/boom")
        def boom():
            raise RuntimeError("secret internals")

    @app.get("/ok")
    async def ok():
        return "fine"

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/boom")
        assert response.status_code == 500
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.body == b"Internal Server Error"  # no traceback for the client
        response = await client.get("/ok")
        assert (response.status_code, response.body) == (200, b'"fine"')
        assert (await client.get("/boom")).status_code == 500

    errors = [r for r in caplog.records if r.name == "rawbg.app" and r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].getMessage() == "handler of GET /boom raised"
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


async def test_def_handlers_run_in_a_worker_thread_and_async_def_on_the_loop_thread():
    app = App()
    seen: dict[str, threading.Thread] = {}

    @app.get("/sync")
    def sync_handler():
        seen["sync"] = threading.current_thread()
        return "sync"

    @app.get("/async")
    async def async_handler():
        seen["async"] = threading.current_thread()
        return "async"

    loop_thread = threading.current_thread()  # the test and the server share one loop
    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/sync")).body == b'"sync"'
        assert (await client.get("/async")).body == b'"async"'
    assert seen["async"] is loop_thread
    assert seen["sync"] is not loop_thread
    assert seen["sync"] is not threading.main_thread()
