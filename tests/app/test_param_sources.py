"""Query, Path, Header, Cookie and Body as a client sends them: values, checks, FastAPI's 422s.

Through in-memory connections (`serve_app(..., in_memory=True)`), and over a
real socket where the raw bytes matter (a header sent twice).
"""

import datetime
import decimal
import enum
import json
import uuid
from typing import Annotated, Literal

import pytest

from rawbg import App, Body, Cookie, Header, Path, Query, Request
from rawbg.testing import serve_app
from tests.support.wire import RawClient

JSON = {"content-type": "application/json"}


def detail(*entries: dict) -> dict:
    return {"detail": list(entries)}


def missing(*loc) -> dict:
    return {"type": "missing", "loc": list(loc), "msg": "Field required", "input": None}


# -- Query: both spellings, checks, alias, lists ---------------------------------


def query_app() -> App:
    app = App()

    @app.get("/annotated")
    async def annotated(q: Annotated[str | None, Query(min_length=3, max_length=5)] = None):
        return {"q": q}

    @app.get("/default")
    async def default(q: str | None = Query(default=None, min_length=3, max_length=5)):
        return {"q": q}

    @app.get("/pattern")
    async def pattern(q: Annotated[str, Query(pattern="^fixed")] = "fixedquery"):
        return {"q": q}

    @app.get("/required")
    async def required(q: Annotated[str, Query(min_length=3)]):
        return {"q": q}

    @app.get("/ellipsis")
    async def ellipsis(q: str = Query(..., min_length=3)):
        return {"q": q}

    @app.get("/alias")
    async def alias(q: Annotated[str | None, Query(alias="item-query")] = None):
        return {"q": q}

    @app.get("/list")
    async def listed(q: Annotated[list[str] | None, Query()] = None):
        return {"q": q}

    @app.get("/list-default")
    async def list_default(q: list[str] = Query(default=["foo", "bar"])):
        return {"q": q}

    @app.get("/ints")
    async def ints(n: Annotated[list[int], Query(max_length=2)]):
        return {"n": n}

    @app.get("/numbers")
    async def numbers(
        size: Annotated[float, Query(gt=0, lt=10.5)],
        count: Annotated[int, Query(ge=1, le=3)] = 1,
        even: Annotated[int, Query(multiple_of=2)] = 0,
    ):
        return {"size": size, "count": count, "even": even}

    return app


@pytest.mark.parametrize("path", ["/annotated", "/default"])
async def test_query_checks_are_the_same_in_both_spellings(path):
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get(path)).json() == {"q": None}
        assert (await client.get(f"{path}?q=abcd")).json() == {"q": "abcd"}
        response = await client.get(f"{path}?q=ab")
        assert response.status_code == 422
        assert response.json() == detail(
            {
                "type": "string_too_short",
                "loc": ["query", "q"],
                "msg": "String should have at least 3 characters",
                "input": "ab",
                "ctx": {"min_length": 3},
            }
        )
        response = await client.get(f"{path}?q=abcdef")
        assert response.json() == detail(
            {
                "type": "string_too_long",
                "loc": ["query", "q"],
                "msg": "String should have at most 5 characters",
                "input": "abcdef",
                "ctx": {"max_length": 5},
            }
        )


async def test_a_pattern_is_searched_and_its_mismatch_quoted():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/pattern")).json() == {"q": "fixedquery"}
        assert (await client.get("/pattern?q=fixed-too")).json() == {"q": "fixed-too"}
        response = await client.get("/pattern?q=nonfixed")
        assert response.json() == detail(
            {
                "type": "string_pattern_mismatch",
                "loc": ["query", "q"],
                "msg": "String should match pattern '^fixed'",
                "input": "nonfixed",
                "ctx": {"pattern": "^fixed"},
            }
        )


@pytest.mark.parametrize("path", ["/required", "/ellipsis"])
async def test_a_query_without_default_is_required(path):
    async with serve_app(query_app(), in_memory=True) as client:
        response = await client.get(path)
        assert response.status_code == 422
        assert response.json() == detail(missing("query", "q"))
        assert (await client.get(f"{path}?q=abc")).json() == {"q": "abc"}


async def test_an_alias_is_the_key_read_and_the_key_reported():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/alias?item-query=x")).json() == {"q": "x"}
        assert (await client.get("/alias?q=x")).json() == {"q": None}


async def test_list_query_values_collect_every_key_and_check_each_item():
    async with serve_app(query_app(), in_memory=True) as client:
        assert (await client.get("/list")).json() == {"q": None}
        assert (await client.get("/list?q=a&q=b")).json() == {"q": ["a", "b"]}
        assert (await client.get("/list-default")).json() == {"q": ["foo", "bar"]}
        assert (await client.get("/list-default?q=x")).json() == {"q": ["x"]}
        assert (await client.get("/ints?n=1&n=2")).json() == {"n": [1, 2]}
        response = await client.get("/ints?n=1&n=x")
        assert response.json() == detail(
            {
                "type": "int_parsing",
                "loc": ["query", "n", 1],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "x",
            }
        )
        response = await client.get("/ints?n=1&n=2&n=3")
        assert response.json() == detail(
            {
                "type": "too_long",
                "loc": ["query", "n"],
                "msg": "List should have at most 2 items after validation, not 3",
                "input": ["1", "2", "3"],
                "ctx": {"field_type": "List", "max_length": 2, "actual_length": 3},
            }
        )
        response = await client.get("/ints")
        assert response.json() == detail(missing("query", "n"))


async def test_number_bounds_report_pydantics_words_and_ctx():
    async with serve_app(query_app(), in_memory=True) as client:
        response = await client.get("/numbers?size=2.5&count=3&even=4")
        assert response.json() == {"size": 2.5, "count": 3, "even": 4}
        response = await client.get("/numbers?size=0&count=4&even=3")
        assert response.status_code == 422
        assert response.json() == detail(
            {
                "type": "greater_than",
                "loc": ["query", "size"],
                "msg": "Input should be greater than 0",
                "input": "0",
                "ctx": {"gt": 0.0},
            },
            {
                "type": "less_than_equal",
                "loc": ["query", "count"],
                "msg": "Input should be less than or equal to 3",
                "input": "4",
                "ctx": {"le": 3},
            },
            {
                "type": "multiple_of",
                "loc": ["query", "even"],
                "msg": "Input should be a multiple of 2",
                "input": "3",
                "ctx": {"multiple_of": 2},
            },
        )
        response = await client.get("/numbers?size=10.5&count=0")
        assert [e["type"] for e in response.json()["detail"]] == [
            "less_than",
            "greater_than_equal",
        ]


# -- Path ------------------------------------------------------------------------


async def test_path_checks_in_both_spellings():
    app = App()

    @app.get("/a/{item_id}")
    async def annotated(item_id: Annotated[int, Path(title="The ID", ge=1, le=1000)]):
        return item_id

    @app.get("/b/{item_id}")
    async def default(item_id: int = Path(gt=0, lt=10)):
        return item_id

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/a/1000")).json() == 1000
        assert (await client.get("/b/9")).json() == 9
        response = await client.get("/a/0")
        assert response.json() == detail(
            {
                "type": "greater_than_equal",
                "loc": ["path", "item_id"],
                "msg": "Input should be greater than or equal to 1",
                "input": "0",
                "ctx": {"ge": 1},
            }
        )
        response = await client.get("/b/10")
        assert response.json()["detail"][0]["type"] == "less_than"


# -- Header and Cookie ----------------------------------------------------------------


def header_app() -> App:
    app = App()

    @app.get("/agent")
    async def agent(user_agent: Annotated[str | None, Header()] = None):
        return {"User-Agent": user_agent}

    @app.get("/strange")
    async def strange(
        strange_header: Annotated[str | None, Header(convert_underscores=False)] = None,
    ):
        return {"strange_header": strange_header}

    @app.get("/tokens")
    async def tokens(x_token: list[str] | None = Header(default=None)):
        return {"X-Token values": x_token}

    @app.get("/required")
    async def required(x_key: Annotated[int, Header()]):
        return {"x_key": x_key}

    @app.get("/cookies")
    async def cookies(
        ads_id: Annotated[str | None, Cookie()] = None,
        session: int | None = Cookie(default=None),
    ):
        return {"ads_id": ads_id, "session": session}

    @app.get("/cookie-required")
    async def cookie_required(token: Annotated[str, Cookie(min_length=2)]):
        return {"token": token}

    return app


async def test_a_header_parameter_reads_its_name_with_dashes_case_insensitively():
    async with serve_app(header_app(), in_memory=True) as client:
        response = await client.get("/agent", headers={"USER-AGENT": "curl/8"})
        assert response.json() == {"User-Agent": "curl/8"}
        response = await client.get("/agent", headers={"user_agent": "underscored"})
        assert response.json() == {"User-Agent": None}


async def test_convert_underscores_false_reads_the_name_as_written():
    async with serve_app(header_app(), in_memory=True) as client:
        response = await client.get("/strange", headers={"strange_header": "yes"})
        assert response.json() == {"strange_header": "yes"}
        response = await client.get("/strange", headers={"strange-header": "no"})
        assert response.json() == {"strange_header": None}


async def test_a_list_header_collects_every_repeated_field():
    async with serve_app(header_app()) as client:
        raw = await RawClient.connect(client.port)
        await raw.send(
            b"GET /tokens HTTP/1.1\r\nHost: x\r\nX-Token: foo\r\nx-token: bar\r\n"
            b"Connection: close\r\n\r\n"
        )
        response = await raw.read_response()
        await raw.close()
        assert json.loads(response.body) == {"X-Token values": ["foo", "bar"]}
        assert (await client.get("/tokens")).json() == {"X-Token values": None}


async def test_a_required_header_is_reported_by_its_header_name():
    async with serve_app(header_app(), in_memory=True) as client:
        response = await client.get("/required")
        assert response.json() == detail(missing("header", "x-key"))
        response = await client.get("/required", headers={"X-Key": "seven"})
        assert response.json()["detail"][0]["loc"] == ["header", "x-key"]
        assert (await client.get("/required", headers={"X-Key": "7"})).json() == {"x_key": 7}


async def test_cookies_are_read_by_name_and_converted():
    async with serve_app(header_app(), in_memory=True) as client:
        assert (await client.get("/cookies")).json() == {"ads_id": None, "session": None}
        response = await client.get("/cookies", headers={"Cookie": 'ads_id=abc; session="42"'})
        assert response.json() == {"ads_id": "abc", "session": 42}
        response = await client.get("/cookies", headers={"Cookie": "session=x"})
        assert response.json()["detail"][0]["loc"] == ["cookie", "session"]
        response = await client.get("/cookie-required")
        assert response.json() == detail(missing("cookie", "token"))
        response = await client.get("/cookie-required", headers={"Cookie": "token=a"})
        assert response.json()["detail"][0]["type"] == "string_too_short"


async def test_a_cookie_parameter_reads_a_repeated_name_as_request_cookies_does():
    """One rule for the request and its parameters: the last value, as Starlette's parser."""
    app = App()

    @app.get("/both")
    async def both(request: Request, ads_id: Annotated[str | None, Cookie()] = None):
        return {"parameter": ads_id, "request": request.cookies.get("ads_id")}

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/both", headers={"Cookie": "ads_id=first; ads_id=last"})
        assert response.json() == {"parameter": "last", "request": "last"}


# -- types -------------------------------------------------------------------------


class Model(enum.Enum):
    alexnet = "alexnet"
    resnet = "resnet"


async def test_dates_uuids_decimals_literals_and_enums_from_the_query():
    app = App()

    @app.get("/types")
    async def types(
        when: datetime.datetime,
        day: datetime.date,
        at: datetime.time,
        wait: datetime.timedelta,
        id: uuid.UUID,
        price: decimal.Decimal,
        order: Literal["asc", "desc"] = "asc",
        model: Model = Model.alexnet,
    ):
        return {
            "when": when,
            "day": day,
            "at": at,
            "wait": wait,
            "id": id,
            "price": price,
            "order": order,
            "model": model,
            "types": [type(v).__name__ for v in (when, day, at, wait, id, price, model)],
        }

    query = (
        "when=2018-12-22T14:00:00%2B00:00&day=2018-12-22&at=15:30&wait=PT5M"
        "&id=ff97dd87-a4a5-4a12-b412-cde99f33e00e&price=2.50&order=desc&model=resnet"
    )
    async with serve_app(app, in_memory=True) as client:
        response = await client.get(f"/types?{query}")
        assert response.status_code == 200, response.body
        assert response.json() == {
            "when": "2018-12-22T14:00:00+00:00",
            "day": "2018-12-22",
            "at": "15:30:00",
            "wait": 300.0,
            "id": "ff97dd87-a4a5-4a12-b412-cde99f33e00e",
            "price": 2.5,
            "order": "desc",
            "model": "resnet",
            "types": ["datetime", "date", "time", "timedelta", "UUID", "Decimal", "Model"],
        }
        bad = "when=soon&day=2018-13-01&at=x&wait=P&id=12&price=cheap&order=random&model=vgg"
        response = await client.get(f"/types?{bad}")
        assert response.status_code == 422
        entries = {e["loc"][1]: e for e in response.json()["detail"]}
        assert {k: e["type"] for k, e in entries.items()} == {
            "when": "datetime_from_date_parsing",
            "day": "date_from_datetime_parsing",
            "at": "time_parsing",
            "wait": "time_delta_parsing",
            "id": "uuid_parsing",
            "price": "decimal_parsing",
            "order": "literal_error",
            "model": "enum",
        }
        assert entries["order"]["msg"] == "Input should be 'asc' or 'desc'"
        assert entries["order"]["ctx"] == {"expected": "'asc' or 'desc'"}
        assert entries["model"]["msg"] == "Input should be 'alexnet' or 'resnet'"
        assert entries["day"]["msg"] == (
            "Input should be a valid date or datetime, "
            "month value is outside expected range of 1-12"
        )


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", 1), (" 2 ", 2), ("3.0", 3), ("1_000", 1000), ("-4", -4)],
)
async def test_int_coercion_is_as_lax_as_pydantic(raw, value):
    app = App()

    @app.get("/n")
    async def n(n: int):
        return n

    async with serve_app(app, in_memory=True) as client:
        response = await client.get(f"/n?n={raw.replace(' ', '%20')}")
        assert (response.status_code, response.json()) == (200, value)


# -- Body: embed, several bodies, scalars in the body, content types ----------------------


def body_app() -> App:
    app = App()

    @app.put("/embedded")
    async def embedded(item: Annotated[dict, Body(embed=True)]):
        return {"item": item}

    @app.put("/several/{item_id}")
    async def several(
        item_id: int,
        item: dict,
        importance: Annotated[int, Body(gt=0)],
        note: str | None = Body(default=None, max_length=5),
    ):
        return {"item_id": item_id, "item": item, "importance": importance, "note": note}

    @app.put("/times")
    async def times(
        start: Annotated[datetime.datetime, Body()],
        after: Annotated[datetime.timedelta, Body()],
        repeat_at: Annotated[datetime.time | None, Body()] = None,
    ):
        return {"start_process": start + after, "repeat_at": repeat_at}

    @app.post("/whole")
    async def whole(payload: dict):
        return payload

    return app


async def test_body_embed_reads_the_parameter_from_its_own_key():
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.put("/embedded", json={"item": {"a": 1}})
        assert response.json() == {"item": {"a": 1}}
        response = await client.put("/embedded", json={"a": 1})
        assert response.status_code == 422
        assert response.json() == detail(missing("body", "item"))


async def test_several_bodies_are_each_embedded_and_each_checked():
    async with serve_app(body_app(), in_memory=True) as client:
        document = {"item": {"name": "Foo"}, "importance": 5}
        response = await client.put("/several/3", json=document)
        assert response.json() == {
            "item_id": 3,
            "item": {"name": "Foo"},
            "importance": 5,
            "note": None,
        }
        response = await client.put("/several/3", json={"importance": 0, "note": "too long"})
        assert response.status_code == 422
        assert response.json() == detail(
            missing("body", "item"),
            {
                "type": "greater_than",
                "loc": ["body", "importance"],
                "msg": "Input should be greater than 0",
                "input": 0,
                "ctx": {"gt": 0},
            },
            {
                "type": "string_too_long",
                "loc": ["body", "note"],
                "msg": "String should have at most 5 characters",
                "input": "too long",
                "ctx": {"max_length": 5},
            },
        )
        response = await client.put("/several/3")
        assert response.json() == detail(missing("body", "item"), missing("body", "importance"))


async def test_dates_in_the_body_are_converted_and_encoded_back_as_fastapi_does():
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.put(
            "/times",
            json={"start": "2018-12-22T14:00:00+00:00", "after": 300, "repeat_at": "15:30:00"},
        )
        assert response.json() == {
            "start_process": "2018-12-22T14:05:00+00:00",
            "repeat_at": "15:30:00",
        }


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/geo+json"],
)
async def test_a_json_content_type_is_parsed(content_type):
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post(
            "/whole", content='{"a": 1}', headers={"content-type": content_type}
        )
        assert (response.status_code, response.json()) == (200, {"a": 1})


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "application/geo+json-seq"},
        {"content-type": "application/not-really-json"},
        {},
    ],
    ids=["text", "form", "json-seq", "not-really-json", "no-content-type"],
)
async def test_a_body_that_does_not_say_json_is_not_read_as_json(headers):
    async with serve_app(body_app(), in_memory=True) as client:
        response = await client.post("/whole", content='{"a": 1}', headers=headers)
        assert response.status_code == 422
        assert response.json() == detail(
            {
                "type": "dict_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary",
                "input": '{"a": 1}',
            }
        )
