"""Path, query and body parameters, the Request object, and the 422/400 they answer with."""

import dataclasses
import enum
import sys
import uuid
from typing import Annotated, Any, Optional, Union

import pytest

from rawbg import App, Query, Request
from rawbg.testing import serve_app

INT_MSG = "Input should be a valid integer, unable to parse string as an integer"
FLOAT_MSG = "Input should be a valid number, unable to parse string as a number"
BOOL_MSG = "Input should be a valid boolean, unable to interpret input"


def detail(*entries: dict) -> dict:
    return {"detail": list(entries)}


# -- path parameters -----------------------------------------------------------


class Color(enum.Enum):
    red = "red"
    green = "green"


def path_app() -> App:
    app = App()

    @app.get("/str/{value}")
    async def as_str(value: str):
        return {"value": value, "type": type(value).__name__}

    @app.get("/int/{id}")
    async def as_int(id: int):
        return {"value": id, "type": type(id).__name__}

    @app.get("/float/{value}")
    async def as_float(value: float):
        return {"value": value, "type": type(value).__name__}

    @app.get("/bool/{value}")
    async def as_bool(value: bool):
        return {"value": value, "type": type(value).__name__}

    @app.get("/uuid/{id}")
    async def as_uuid(id: uuid.UUID):
        assert isinstance(id, uuid.UUID)
        return {"value": id, "type": type(id).__name__}

    @app.get("/enum/{color}")
    async def as_enum(color: Color):
        assert isinstance(color, Color)
        return {"value": color, "type": type(color).__name__}

    @app.get("/untyped/{value}")
    async def untyped(value):
        return {"value": value, "type": type(value).__name__}

    return app


@pytest.mark.parametrize(
    ("target", "value", "type_name"),
    [
        ("/str/hello", "hello", "str"),
        ("/str/42", "42", "str"),
        ("/str/hello%20world", "hello world", "str"),
        ("/int/42", 42, "int"),
        ("/int/-7", -7, "int"),
        ("/float/2.5", 2.5, "float"),
        ("/float/3", 3.0, "float"),
        ("/bool/true", True, "bool"),
        ("/bool/0", False, "bool"),
        (
            "/uuid/12345678-1234-5678-1234-567812345678",
            "12345678-1234-5678-1234-567812345678",
            "UUID",
        ),
        ("/enum/green", "green", "Color"),
        ("/untyped/7", "7", "str"),
    ],
)
async def test_path_parameters_are_converted_by_annotation(target, value, type_name):
    async with serve_app(path_app(), in_memory=True) as client:
        response = await client.get(target)
        assert response.status_code == 200, response.body
        assert response.json() == {"value": value, "type": type_name}


@pytest.mark.parametrize(
    ("target", "name", "type_", "msg", "raw"),
    [
        ("/int/abc", "id", "int_parsing", INT_MSG, "abc"),
        ("/int/1.5", "id", "int_parsing", INT_MSG, "1.5"),
        ("/float/x1", "value", "float_parsing", FLOAT_MSG, "x1"),
        ("/bool/maybe", "value", "bool_parsing", BOOL_MSG, "maybe"),
    ],
)
async def test_a_path_parameter_that_does_not_convert_is_a_422(target, name, type_, msg, raw):
    async with serve_app(path_app(), in_memory=True) as client:
        response = await client.get(target)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/json"
        assert response.json() == detail(
            {"type": type_, "loc": ["path", name], "msg": msg, "input": raw}
        )


async def test_uuid_and_enum_path_errors_carry_pydantics_ctx():
    async with serve_app(path_app(), in_memory=True) as client:
        response = await client.get("/uuid/not-a-uuid")
        problem = "invalid character: found `n` at 0"
        assert response.json() == detail(
            {
                "type": "uuid_parsing",
                "loc": ["path", "id"],
                "msg": f"Input should be a valid UUID, {problem}",
                "input": "not-a-uuid",
                "ctx": {"error": problem},
            }
        )
        response = await client.get("/enum/blue")
        assert response.json() == detail(
            {
                "type": "enum",
                "loc": ["path", "color"],
                "msg": "Input should be 'red' or 'green'",
                "input": "blue",
                "ctx": {"expected": "'red' or 'green'"},
            }
        )


# -- query parameters ----------------------------------------------------------


def query_app() -> App:
    app = App()

    @app.get("/default")
    async def with_default(x: int = 10):
        return x

    @app.get("/required")
    async def required(x: int, name: str):
        return [x, name]

    @app.get("/pipe-none")
    async def pipe_none(q: str | None = None):
        return q

    @app.get("/optional")
    async def optional(q: Optional[str] = None):  # noqa: UP045 - the spelling under test
        return q

    @app.get("/union")
    async def union(q: Union[str, None] = None):  # noqa: UP007 - the spelling under test
        return q

    @app.get("/flag")
    async def flag(flag: bool = False):
        return flag

    # a list is read from repeated query keys with Query(); without, from the body (FastAPI)
    @app.get("/tags")
    async def tags(tags: Annotated[list[str], Query()]):
        return tags

    @app.get("/ids")
    async def ids(ids: Annotated[list[int] | None, Query()] = None):
        return ids

    @app.get("/float")
    async def as_float(ratio: float = 0.5):
        return ratio

    return app


async def test_query_parameter_with_a_default():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/default")).body == b"10"
        assert (await client.get("/default?x=3")).body == b"3"
        assert (await client.get("/default?x=-3&other=ignored")).body == b"-3"
        assert (await client.get("/default?x=1&x=2")).body == b"2"  # the last value wins
        response = await client.get("/default?x=ten")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "int_parsing", "loc": ["query", "x"], "msg": INT_MSG, "input": "ten"}
        )


async def test_float_query_parameter():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/float")).body == b"0.5"
        assert (await client.get("/float?ratio=2")).body == b"2.0"
        response = await client.get("/float?ratio=half")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "float_parsing", "loc": ["query", "ratio"], "msg": FLOAT_MSG, "input": "half"}
        )


@pytest.mark.parametrize("path", ["/pipe-none", "/optional", "/union"])
async def test_optional_string_query_parameter_in_each_spelling(path):
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get(path)).body == b"null"
        assert (await client.get(f"{path}?q=hello")).body == b'"hello"'
        assert (await client.get(f"{path}?q=")).body == b'""'
        assert (await client.get(f"{path}?q=a%20b%26c")).body == b'"a b&c"'
        assert (await client.get(f"{path}?q=a+b")).body == b'"a b"'


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("TRUE", True),
        ("Off", False),
    ],
)
async def test_bool_query_parameter_accepts_the_usual_spellings(raw, value):
    async with serve_app(query_app(), in_memory=True) as client:
        response = await client.get(f"/flag?flag={raw}")
        assert response.status_code == 200
        assert response.json() is value


async def test_bool_query_parameter_defaults_and_rejects_other_words():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/flag")).body == b"false"
        response = await client.get("/flag?flag=maybe")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "bool_parsing", "loc": ["query", "flag"], "msg": BOOL_MSG, "input": "maybe"}
        )


async def test_list_query_parameter_collects_repeated_keys():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/tags?tags=a&tags=b&tags=a")).json() == ["a", "b", "a"]
        assert (await client.get("/tags?tags=only")).json() == ["only"]
        assert (await client.get("/ids?ids=3&ids=1")).json() == [3, 1]
        assert (await client.get("/ids")).json() is None
        response = await client.get("/tags")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "missing", "loc": ["query", "tags"], "msg": "Field required", "input": None}
        )


async def test_list_query_parameter_with_an_item_that_does_not_convert_is_a_422():
    async with serve_app(query_app(), in_memory=True) as client:
        response = await client.get("/ids?ids=1&ids=2&ids=x")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "int_parsing", "loc": ["query", "ids", 2], "msg": INT_MSG, "input": "x"}
        )


async def test_list_query_parameter_error_names_the_value_that_failed():
    async with serve_app(query_app(), in_memory=True) as client:
        response = await client.get("/ids?ids=1&ids=x&ids=3")
        assert response.status_code == 422
        assert response.json()["detail"][0]["input"] == "x"


async def test_missing_required_query_parameters_are_each_a_422_entry():
    async with serve_app(query_app(), in_memory=True) as client:
        response = await client.get("/required")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "missing", "loc": ["query", "x"], "msg": "Field required", "input": None},
            {"type": "missing", "loc": ["query", "name"], "msg": "Field required", "input": None},
        )
        response = await client.get("/required?name=ada")
        assert response.json() == detail(
            {"type": "missing", "loc": ["query", "x"], "msg": "Field required", "input": None}
        )
        response = await client.get("/required?x=1&name=ada")
        assert (response.status_code, response.json()) == (200, [1, "ada"])


async def test_path_and_query_errors_are_reported_together():
    app = App()

    @app.get("/items/{item_id}")
    async def item(item_id: int, limit: int, verbose: bool = False):
        return item_id

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/items/x?verbose=perhaps")
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "int_parsing", "loc": ["path", "item_id"], "msg": INT_MSG, "input": "x"},
            {"type": "missing", "loc": ["query", "limit"], "msg": "Field required", "input": None},
            {
                "type": "bool_parsing",
                "loc": ["query", "verbose"],
                "msg": BOOL_MSG,
                "input": "perhaps",
            },
        )


# -- the Request object --------------------------------------------------------


async def test_request_exposes_method_path_query_headers_params_and_client():
    app = App()
    seen = {}

    @app.route("/echo/{section}/{page}", methods=["GET", "PUT"])
    async def echo(request: Request, section: str):
        seen["client"] = request.client
        return {
            "method": request.method,
            "path": request.path,
            "query_string": request.query_string,
            "query": dict(request.query_params),
            "all_a": request.query_params.getlist("a"),
            "path_params": request.path_params,
            "header": request.headers["X-Custom-Header"],
            "header_lower": request.headers["x-custom-header"],
            "header_get": request.headers.get("X-CUSTOM-HEADER"),
            "has_header": "X-Custom-Header" in request.headers,
            "missing": request.headers.get("x-absent", "default"),
            "section": section,
        }

    async with serve_app(app, in_memory=True) as client:
        response = await client.put(
            "/echo/news/3?a=1&b=two%20words&a=2", headers={"X-Custom-Header": "Value 1"}
        )
        assert response.status_code == 200
        assert response.json() == {
            "method": "PUT",
            "path": "/echo/news/3",
            "query_string": "a=1&b=two%20words&a=2",
            "query": {"a": "2", "b": "two words"},
            "all_a": ["1", "2"],
            "path_params": {"section": "news", "page": "3"},
            "header": "Value 1",
            "header_lower": "Value 1",
            "header_get": "Value 1",
            "has_header": True,
            "missing": "default",
            "section": "news",
        }
    host, port = seen["client"]
    assert host == "127.0.0.1"
    assert isinstance(port, int) and port > 0


async def test_request_body_and_json():
    app = App()

    @app.post("/raw")
    async def raw(request: Request):
        body = await request.body()
        return {"length": len(body), "text": body.decode()}

    @app.post("/json")
    async def as_json(request: Request):
        document = await request.json()
        return {"got": document, "type": type(document).__name__}

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/raw", content="héllo")
        assert response.json() == {"length": 6, "text": "héllo"}
        response = await client.post("/raw")
        assert response.json() == {"length": 0, "text": ""}
        response = await client.post("/json", json={"a": [1, 2, {"b": None}]})
        assert response.json() == {"got": {"a": [1, 2, {"b": None}]}, "type": "dict"}
        response = await client.post("/json", json=[1, "x"])
        assert response.json() == {"got": [1, "x"], "type": "list"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            "{not json",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ('{"a": 1} trailing', "Extra data: line 1 column 10 (char 9)"),
    ],
)
async def test_request_json_of_an_invalid_body_is_a_400_saying_why(content, reason):
    app = App()

    @app.post("/json")
    async def as_json(request: Request):
        return await request.json()

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/json", content=content)
        assert response.status_code == 400
        assert response.json() == {"detail": f"request body is not valid JSON: {reason}"}
        # the server is still fine
        assert (await client.post("/json", json={"ok": True})).json() == {"ok": True}


# -- body parameters -----------------------------------------------------------


@dataclasses.dataclass
class Item:
    name: str
    price: float
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str | None = None


def body_app() -> App:
    app = App()

    @app.post("/dict")
    async def take_dict(payload: dict):
        return {"payload": payload, "type": type(payload).__name__}

    @app.post("/list")
    async def take_list(values: list[Any]):  # a bare list is uploaded files to FastAPI
        return {"values": values, "type": type(values).__name__}

    @app.post("/item")
    async def take_item(item: Item):
        assert isinstance(item, Item)
        return {"item": item, "price_type": type(item.price).__name__}

    @app.post("/maybe-item")
    def take_maybe_item(item: Item | None = None):
        return item

    return app


async def test_dict_and_list_body_parameters():
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post("/dict", json={"a": 1, "nested": {"b": [True]}})
        assert response.status_code == 200
        assert response.json() == {"payload": {"a": 1, "nested": {"b": [True]}}, "type": "dict"}
        response = await client.post("/list", json=[1, "two", None])
        assert response.json() == {"values": [1, "two", None], "type": "list"}


async def test_dataclass_body_parameter_is_built_from_the_json_body():
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post("/item", json={"name": "pen", "price": 2, "tags": ["x"]})
        assert response.status_code == 200
        assert response.json() == {
            "item": {"name": "pen", "price": 2.0, "tags": ["x"], "note": None},
            "price_type": "float",
        }
        response = await client.post("/maybe-item")
        assert (response.status_code, response.body) == (200, b"null")
        response = await client.post("/maybe-item", json={"name": "a", "price": 1.5})
        assert response.json() == {"name": "a", "price": 1.5, "tags": [], "note": None}


NUMBER_MSG = "Input should be a valid number, unable to parse string as a number"
NOT_AN_ITEM = "Input should be a dictionary or an instance of Item"


@pytest.mark.parametrize(
    ("document", "errors"),
    [
        (
            {"name": "pen"},
            [
                {
                    "type": "missing",
                    "loc": ["body", "price"],
                    "msg": "Field required",
                    "input": {"name": "pen"},
                }
            ],
        ),
        (
            {"name": 3, "price": "cheap"},
            [
                {
                    "type": "string_type",
                    "loc": ["body", "name"],
                    "msg": "Input should be a valid string",
                    "input": 3,
                },
                {
                    "type": "float_parsing",
                    "loc": ["body", "price"],
                    "msg": NUMBER_MSG,
                    "input": "cheap",
                },
            ],
        ),
        (
            {"name": "pen", "price": 1, "tags": ["ok", 5]},
            [
                {
                    "type": "string_type",
                    "loc": ["body", "tags", 1],
                    "msg": "Input should be a valid string",
                    "input": 5,
                }
            ],
        ),
        (
            {"name": "pen", "price": [1]},
            [
                {
                    "type": "float_type",
                    "loc": ["body", "price"],
                    "msg": "Input should be a valid number",
                    "input": [1],
                }
            ],
        ),
        (
            [{"name": "pen", "price": 1}],
            [
                {
                    "type": "dataclass_type",
                    "loc": ["body"],
                    "msg": NOT_AN_ITEM,
                    "input": [{"name": "pen", "price": 1}],
                    "ctx": {"class_name": "Item"},
                }
            ],
        ),
        (
            "pen",
            [
                {
                    "type": "dataclass_type",
                    "loc": ["body"],
                    "msg": NOT_AN_ITEM,
                    "input": "pen",
                    "ctx": {"class_name": "Item"},
                }
            ],
        ),
    ],
    ids=[
        "missing-field",
        "wrong-types",
        "wrong-item-type",
        "a-list-is-not-a-number",
        "a-list",
        "a-string",
    ],
)
async def test_a_body_of_the_wrong_shape_for_a_dataclass_is_a_422(document, errors):
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post("/item", json=document)
        assert response.status_code == 422
        assert response.json() == {"detail": errors}


async def test_wrong_json_types_for_dict_and_list_bodies_are_422():
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post("/dict", json=[1])
        assert response.status_code == 422
        assert response.json() == detail(
            {
                "type": "dict_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary",
                "input": [1],
            }
        )
        response = await client.post("/list", json={"a": 1})
        assert response.status_code == 422
        assert response.json() == detail(
            {
                "type": "list_type",
                "loc": ["body"],
                "msg": "Input should be a valid list",
                "input": {"a": 1},
            }
        )


async def test_a_missing_body_for_a_required_body_parameter_is_a_422():
    async with serve_app(body_app(), in_memory=True) as client:
        for path in ("/dict", "/item"):
            response = await client.post(path)
            assert response.status_code == 422, path
            assert response.json() == detail(
                {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
            )


JSON = {"content-type": "application/json"}

# Position and reason are json.loads's own, as in FastAPI; Python 3.13 names a
# trailing comma, at the comma, where earlier versions expect a name after it.
TRAILING_COMMA = (
    (14, "Illegal trailing comma before end of object")
    if sys.version_info >= (3, 13)
    else (15, "Expecting property name enclosed in double quotes")
)


@pytest.mark.parametrize(
    ("content", "position", "reason"),
    [
        ("{bad", 1, "Expecting property name enclosed in double quotes"),
        ('{"name": "pen",}', *TRAILING_COMMA),
    ],
    ids=["truncated", "trailing-comma"],
)
async def test_an_invalid_json_body_for_a_body_parameter_is_a_422_never_a_500(
    content, position, reason
):
    async with serve_app(body_app(), in_memory=True) as client:
        for path in ("/dict", "/item"):
            response = await client.post(path, content=content, headers=JSON)
            assert response.status_code == 422, path
            assert response.json() == detail(
                {
                    "type": "json_invalid",
                    "loc": ["body", position],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": reason},
                }
            )
        assert (await client.post("/dict", json={})).status_code == 200


async def test_a_json_body_that_is_not_text_is_a_400_as_in_fastapi():
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post("/dict", content=b'{"name": "\xc3\x28"}', headers=JSON)
        assert response.status_code == 400
        assert response.json() == {"detail": "There was an error parsing the body"}


async def test_several_body_parameters_are_each_read_from_their_own_key():
    app = App()

    @app.post("/pair")
    async def pair(item: Item, extra: dict):
        return {"name": item.name, "extra": extra}

    async with serve_app(app, in_memory=True) as client:
        response = await client.post(
            "/pair", json={"item": {"name": "pen", "price": 1}, "extra": {"k": "v"}}
        )
        assert response.json() == {"name": "pen", "extra": {"k": "v"}}
        response = await client.post("/pair", json={"item": {"name": "pen", "price": 1}})
        assert response.status_code == 422
        assert response.json() == detail(
            {"type": "missing", "loc": ["body", "extra"], "msg": "Field required", "input": None}
        )


async def test_an_invalid_json_body_is_reported_once_with_several_body_parameters():
    app = App()

    @app.post("/pair")
    async def pair(item: Item, extra: dict):
        return "unreachable"

    async with serve_app(app, in_memory=True) as client:
        response = await client.post("/pair", content="{bad", headers=JSON)
        assert response.status_code == 422
        assert len(response.json()["detail"]) == 1
