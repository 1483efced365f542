"""The same app on FastAPI and on rawbg, only the import line changed: the same answers.

FastAPI is the reference (the test extra installs it, with httpx2 for its
TestClient). Each request goes to FastAPI's own TestClient and to
rawbg's over a real socket; status and JSON body must be equal.
"""

import pytest

from tests.support.parity import assert_same_answer, both_clients

APP = """
import datetime, decimal, enum, uuid
from typing import Annotated, Literal
from pydantic import BaseModel, Field

{imports}

app = FastAPI()


class Color(str, enum.Enum):
    red = "red"
    green = "green"


class Image(BaseModel):
    url: str
    name: str = Field(min_length=2)


class Item(BaseModel):
    name: str
    price: float
    tax: float | None = None
    tags: set[str] = set()
    images: list[Image] | None = None


class User(BaseModel):
    username: str


@app.get("/query")
async def query(
    q: Annotated[str | None, Query(min_length=3, max_length=6, pattern="^a")] = None,
    n: Annotated[int, Query(ge=1, le=5)] = 1,
    f: float = 0.5,
    flag: bool = False,
    tags: Annotated[list[int] | None, Query(max_length=3)] = None,
    order: Literal["asc", "desc"] = "asc",
    color: Color = Color.red,
    when: datetime.date | None = None,
    price: decimal.Decimal | None = None,
    aliased: Annotated[str | None, Query(alias="item-query")] = None,
):
    return {{"q": q, "n": n, "f": f, "flag": flag, "tags": tags, "order": order,
             "color": color, "when": when, "price": price, "aliased": aliased}}


@app.get("/required")
async def required(a: int, b: Annotated[str, Query(min_length=2)], c: str = Query(...)):
    return [a, b, c]


@app.get("/path/{{item_id}}/{{kind}}")
async def path(item_id: Annotated[int, Path(gt=0, lt=100)], kind: Color, q: int | None = None):
    return {{"item_id": item_id, "kind": kind, "q": q}}


@app.get("/uuid/{{id}}")
async def by_uuid(id: uuid.UUID):
    return id


@app.get("/headers")
async def headers(
    x_token: Annotated[list[str] | None, Header()] = None,
    x_count: Annotated[int | None, Header()] = None,
    raw_name: Annotated[str | None, Header(convert_underscores=False)] = None,
    session: Annotated[str | None, Cookie()] = None,
    visits: Annotated[int | None, Cookie()] = None,
):
    return {{"x_token": x_token, "x_count": x_count, "raw_name": raw_name,
             "session": session, "visits": visits}}


@app.post("/item")
async def create(item: Item):
    return item


@app.put("/items/{{item_id}}")
async def update(
    item_id: int,
    item: Item,
    user: User,
    importance: Annotated[int, Body(gt=0)],
    q: str | None = None,
):
    return {{"item_id": item_id, "item": item, "user": user, "importance": importance, "q": q}}


@app.put("/embed")
async def embed(item: Annotated[Item, Body(embed=True)]):
    return item


@app.post("/dict")
async def as_dict(weights: dict[int, float]):
    return weights


@app.put("/times")
async def times(
    start: Annotated[datetime.datetime, Body()],
    after: Annotated[datetime.timedelta, Body()],
    at: Annotated[datetime.time | None, Body()] = None,
):
    return {{"end": start + after, "at": at, "after": after}}


import dataclasses


@dataclasses.dataclass
class Event:
    name: str
    at: datetime.datetime
    seats: list[int] = dataclasses.field(default_factory=list)


@app.post("/event")
async def event(event: Event):
    return {{"event": event, "weekday": event.at.strftime("%A")}}


@app.post("/maybe")
async def maybe(item: Item | None = None):
    return item


@app.post("/images")
async def images(images: list[Image], token: Annotated[str, Header()]):
    return images


@app.post("/aliased")
async def aliased(
    value: Annotated[int, Body(alias="the-value", ge=2)], other: Annotated[str, Body()]
):
    return {{"value": value, "other": other}}


class Out(BaseModel):
    name: str
    price: float
    tax: float = 10.5


@app.get("/out/{{key}}", response_model=Out, response_model_exclude_unset=True)
async def out(key: str):
    return {{"a": {{"name": "A", "price": 1}}, "b": {{"name": "B", "price": 2, "tax": 3}}}}[key]
"""

FASTAPI_IMPORTS = "from fastapi import Body, Cookie, FastAPI, Header, Path, Query"
RAWBG_IMPORTS = "from rawbg import App as FastAPI, Body, Cookie, Header, Path, Query"

JSON = {"content-type": "application/json"}

REQUESTS = [
    ("GET", "/query", {}),
    ("GET", "/query?q=abc&n=5&f=2&flag=yes&tags=1&tags=2&order=desc&color=green", {}),
    ("GET", "/query?q=ab&n=0&f=x&flag=maybe&tags=1&tags=x&order=up&color=blue", {}),
    ("GET", "/query?q=bcdef&n=6&tags=1&tags=2&tags=3&tags=4", {}),
    ("GET", "/query?q=abcdefg&when=2024-02-30&price=cheap&item-query=x", {}),
    ("GET", "/query?when=2024-02-03&price=2.50&n=%202%20&f=1_0", {}),
    ("GET", "/required", {}),
    ("GET", "/required?a=1.0&b=x&c=", {}),
    ("GET", "/path/5/red", {}),
    ("GET", "/path/0/blue?q=x", {}),
    ("GET", "/path/abc/red", {}),
    ("GET", "/uuid/not-a-uuid", {}),
    ("GET", "/uuid/12345678-1234-5678-1234-56781234567", {}),
    ("GET", "/headers", {"headers": {"X-Count": "x", "raw_name": "r", "Cookie": "visits=v"}}),
    ("GET", "/headers", {"headers": {"X-Token": "t", "Cookie": "session=s; visits=3"}}),
    ("POST", "/item", {"json": {"name": "Foo", "price": "50.5", "tags": ["a", "a"]}}),
    ("POST", "/item", {"json": {"name": "Foo"}}),
    ("POST", "/item", {"json": {"price": "twenty", "images": [{"url": "u", "name": "x"}]}}),
    ("POST", "/item", {"json": None}),
    ("POST", "/item", {}),
    ("POST", "/item", {"json": [1, 2]}),
    ("POST", "/item", {"content": "{broken", "headers": JSON}),
    (
        "POST",
        "/item",
        {"content": '{"name": "a", "price": 1}', "headers": {"content-type": "text/plain"}},
    ),
    (
        "PUT",
        "/items/3?q=x",
        {"json": {"item": {"name": "F", "price": 1}, "user": {"username": "u"}, "importance": 2}},
    ),
    ("PUT", "/items/x", {"json": {"item": {"name": "F"}, "importance": 0}}),
    ("PUT", "/items/3", {"json": [1]}),
    ("PUT", "/embed", {"json": {"item": {"name": "F", "price": 1}}}),
    ("PUT", "/embed", {"json": {"name": "F", "price": 1}}),
    ("POST", "/dict", {"json": {"1": 0.5, "2": "3"}}),
    ("POST", "/dict", {"json": {"x": "y"}}),
    (
        "PUT",
        "/times",
        {"json": {"start": "2018-12-22T14:00:00+00:00", "after": 300, "at": "15:30"}},
    ),
    ("PUT", "/times", {"json": {"start": "soon", "after": "P1D", "at": "25:00"}}),
    ("POST", "/event", {"json": {"name": "x", "at": "2024-01-01T10:00:00", "seats": ["1"]}}),
    ("POST", "/event", {"json": {"name": 1, "at": "x", "seats": ["a"]}}),
    ("POST", "/event", {"json": "x"}),
    ("POST", "/maybe", {}),
    ("POST", "/maybe", {"json": {"name": "F", "price": 1}}),
    ("POST", "/images", {"json": [{"url": "u", "name": "n"}, {"url": 1}]}),
    ("POST", "/images", {"json": [], "headers": {"token": "t"}}),
    ("POST", "/aliased", {"json": {"the-value": 1, "other": 2}}),
    ("POST", "/aliased", {"json": {"value": 3, "other": "o"}}),
    ("POST", "/aliased", {"json": {"the-value": "3", "other": "o"}}),
    ("GET", "/out/a", {}),
    ("GET", "/out/b", {}),
]


@pytest.fixture(scope="module")
def clients():
    with both_clients(APP, fastapi=FASTAPI_IMPORTS, rawbg=RAWBG_IMPORTS) as pair:
        yield pair


@pytest.mark.parametrize(
    ("method", "target", "options"), REQUESTS, ids=[f"{m} {t}" for m, t, _ in REQUESTS]
)
def test_rawbg_answers_what_fastapi_answers(clients, method, target, options):
    assert_same_answer(clients, method, target, **options)
