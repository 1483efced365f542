"""With pydantic: model bodies, response_model, dataclasses, its errors in FastAPI's shape."""

import dataclasses
import datetime
import importlib
from typing import Annotated, Any

import pytest

pydantic = importlib.import_module("pydantic")

from pydantic import AfterValidator, BaseModel, Field, HttpUrl  # noqa: E402

from rawbg import App, Body, JSONResponse, Query  # noqa: E402
from rawbg.testing import serve_app  # noqa: E402


def missing(*loc, input=None) -> dict:
    return {"type": "missing", "loc": list(loc), "msg": "Field required", "input": input}


class Image(BaseModel):
    url: HttpUrl
    name: str


class Item(BaseModel):
    name: str
    description: str | None = None
    price: float
    tax: float | None = None
    tags: set[str] = set()
    images: list[Image] | None = None


class User(BaseModel):
    username: str
    full_name: str | None = None


def model_app() -> App:
    app = App()

    @app.post("/items")
    async def create(item: Item):
        assert isinstance(item, Item)
        return item

    @app.put("/items/{item_id}")
    async def update(item_id: int, item: Item, user: User, importance: Annotated[int, Body(gt=0)]):
        return {"item_id": item_id, "item": item, "user": user, "importance": importance}

    @app.put("/embedded/{item_id}")
    async def embedded(item_id: int, item: Annotated[Item, Body(embed=True)]):
        return {"item_id": item_id, "item": item}

    @app.post("/images")
    async def images(images: list[Image]):
        return images

    @app.post("/weights")
    async def weights(weights: dict[int, float]):
        return weights

    return app


async def test_a_model_body_is_validated_and_returned_as_json():
    async with serve_app(model_app()) as client:
        response = await client.post("/items", json={"name": "Foo", "price": "50.5"})
        assert response.status_code == 200
        assert response.json() == {
            "name": "Foo",
            "description": None,
            "price": 50.5,
            "tax": None,
            "tags": [],
            "images": None,
        }
        response = await client.post("/items", json={"name": "Foo"})
        assert response.json() == {"detail": [missing("body", "price", input={"name": "Foo"})]}
        response = await client.post("/items", json={"name": "Foo", "price": "twenty"})
        assert response.json() == {
            "detail": [
                {
                    "type": "float_parsing",
                    "loc": ["body", "price"],
                    "msg": "Input should be a valid number, unable to parse string as a number",
                    "input": "twenty",
                }
            ]
        }
        assert (await client.post("/items")).json() == {"detail": [missing("body")]}


async def test_nested_models_report_the_path_to_the_bad_value():
    async with serve_app(model_app()) as client:
        document = {
            "name": "Foo",
            "price": 1,
            "images": [{"url": "http://example.com/a.png", "name": "a"}, {"url": "nope"}],
        }
        response = await client.post("/items", json=document)
        assert response.status_code == 422
        entries = response.json()["detail"]
        assert [e["loc"] for e in entries] == [
            ["body", "images", 1, "url"],
            ["body", "images", 1, "name"],
        ]
        assert entries[0]["type"] == "url_parsing"
        assert entries[0]["ctx"] == {"error": "relative URL without a base"}
        response = await client.post("/images", json=[{"url": "http://x.org/", "name": "x"}])
        assert response.json() == [{"url": "http://x.org/", "name": "x"}]
        response = await client.post("/weights", json={"1": "0.5", "2": 3})
        assert response.json() == {"1": 0.5, "2": 3.0}


async def test_several_model_bodies_are_embedded_by_name():
    async with serve_app(model_app()) as client:
        document = {
            "item": {"name": "Foo", "price": 42.0},
            "user": {"username": "dave"},
            "importance": 5,
        }
        response = await client.put("/items/5", json=document)
        assert response.status_code == 200
        assert response.json()["user"] == {"username": "dave", "full_name": None}
        assert response.json()["importance"] == 5
        response = await client.put("/items/5", json={"importance": 0})
        assert response.json() == {
            "detail": [
                missing("body", "item"),
                missing("body", "user"),
                {
                    "type": "greater_than",
                    "loc": ["body", "importance"],
                    "msg": "Input should be greater than 0",
                    "input": 0,
                    "ctx": {"gt": 0},
                },
            ]
        }


async def test_body_embed_wraps_one_model_in_its_key():
    async with serve_app(model_app()) as client:
        response = await client.put("/embedded/1", json={"item": {"name": "Foo", "price": 1}})
        assert response.json()["item"]["name"] == "Foo"
        response = await client.put("/embedded/1", json={"name": "Foo", "price": 1})
        assert response.json() == {"detail": [missing("body", "item")]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_model_body_sent_as_something_else_is_fastapis_422(content_type):
    async with serve_app(model_app()) as client:
        response = await client.post(
            "/items", content="name=Foo&price=50.5", headers={"content-type": content_type}
        )
        assert response.json() == {
            "detail": [
                {
                    "type": "model_attributes_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": "name=Foo&price=50.5",
                }
            ]
        }


def check_valid_id(id: str) -> str:
    if not id.startswith(("isbn-", "imdb-")):
        raise ValueError('Invalid ID format, it must start with "isbn-" or "imdb-"')
    return id


async def test_pydantic_metadata_on_a_query_parameter_is_honoured():
    app = App()

    @app.get("/items")
    async def items(
        id: Annotated[str | None, AfterValidator(check_valid_id)] = None,
        code: Annotated[str, Query(strict=True), Field(min_length=2)] = "ok",
    ):
        return {"id": id, "code": code}

    async with serve_app(app) as client:
        assert (await client.get("/items?id=isbn-1")).json() == {"id": "isbn-1", "code": "ok"}
        response = await client.get("/items?id=wtf-yes")
        assert response.json() == {
            "detail": [
                {
                    "type": "value_error",
                    "loc": ["query", "id"],
                    "msg": 'Value error, Invalid ID format, it must start with "isbn-" or "imdb-"',
                    "input": "wtf-yes",
                    "ctx": {"error": {}},
                }
            ]
        }
        response = await client.get("/items?code=x")
        assert response.json()["detail"][0]["type"] == "string_too_short"


# -- dataclasses through pydantic --------------------------------------------------


@dataclasses.dataclass
class Event:
    name: str
    at: datetime.datetime
    tags: list[str] = dataclasses.field(default_factory=list)


async def test_a_dataclass_body_is_validated_by_pydantic_with_its_dates_converted():
    app = App()

    @app.post("/events")
    async def create(event: Event):
        assert isinstance(event.at, datetime.datetime)
        return {"event": event, "weekday": event.at.strftime("%A")}

    async with serve_app(app) as client:
        response = await client.post("/events", json={"name": "x", "at": "2024-01-01T10:00:00"})
        assert response.json() == {
            "event": {"name": "x", "at": "2024-01-01T10:00:00", "tags": []},
            "weekday": "Monday",
        }
        response = await client.post("/events", json={"name": "x", "at": "soon"})
        assert response.json()["detail"][0]["loc"] == ["body", "at"]
        assert response.json()["detail"][0]["type"] == "datetime_from_date_parsing"


# -- response_model ----------------------------------------------------------------


class UserIn(BaseModel):
    username: str
    password: str
    email: str
    full_name: str | None = None


class UserOut(BaseModel):
    username: str
    email: str
    full_name: str | None = None


class Stored(BaseModel):
    name: str
    description: str | None = None
    price: float
    tax: float = 10.5
    tags: list[str] = []


STORED = {
    "foo": {"name": "Foo", "price": 50.2},
    "bar": {"name": "Bar", "description": "The bartenders", "price": 62, "tax": 20.2},
    "baz": {"name": "Baz", "description": None, "price": 50.2, "tax": 10.5, "tags": []},
}


def response_app() -> App:
    app = App()

    @app.post("/user", response_model=UserOut)
    async def create_user(user: UserIn) -> Any:
        return user

    @app.post("/user-annotated")
    async def create_user_annotated(user: UserIn) -> UserOut:
        return UserOut(**user.model_dump())

    @app.get("/stored/{key}", response_model=Stored, response_model_exclude_unset=True)
    async def stored(key: str):
        return STORED[key]

    @app.get(
        "/stored/{key}/name",
        response_model=Stored,
        response_model_include={"name", "description"},
    )
    async def stored_name(key: str):
        return STORED[key]

    @app.get("/stored/{key}/public", response_model=Stored, response_model_exclude={"tax"})
    async def stored_public(key: str):
        return STORED[key]

    @app.get("/stored/{key}/no-none", response_model=Stored, response_model_exclude_none=True)
    async def stored_no_none(key: str):
        return STORED[key]

    @app.get("/wrong", response_model=Stored)
    async def wrong():
        return {"name": "no price"}

    @app.get("/off", response_model=None)
    async def off() -> UserOut:
        return {"anything": "goes"}  # type: ignore[return-value]

    @app.get("/response")
    async def response() -> JSONResponse:
        return JSONResponse({"raw": True})

    @app.get("/list", response_model=list[UserOut])
    async def listed():
        return [{"username": "a", "email": "a@x", "password": "secret"}]

    return app


async def test_response_model_filters_out_what_it_does_not_declare():
    async with serve_app(response_app()) as client:
        user = {"username": "ada", "password": "secret", "email": "ada@example.com"}
        for path in ("/user", "/user-annotated"):
            response = await client.post(path, json=user)
            assert response.json() == {
                "username": "ada",
                "email": "ada@example.com",
                "full_name": None,
            }
        response = await client.get("/list")
        assert response.json() == [{"username": "a", "email": "a@x", "full_name": None}]


async def test_response_model_options_as_fastapi_names_them():
    async with serve_app(response_app()) as client:
        assert (await client.get("/stored/foo")).json() == {"name": "Foo", "price": 50.2}
        assert (await client.get("/stored/baz")).json() == STORED["baz"]
        assert (await client.get("/stored/bar/name")).json() == {
            "name": "Bar",
            "description": "The bartenders",
        }
        assert "tax" not in (await client.get("/stored/bar/public")).json()
        no_none = (await client.get("/stored/foo/no-none")).json()
        assert "description" not in no_none and no_none["tax"] == 10.5


async def test_a_return_value_that_does_not_fit_its_model_is_a_500_and_logged(caplog):
    async with serve_app(response_app()) as client:
        response = await client.get("/wrong")
        assert response.status_code == 500
    assert "does not fit the response model" in caplog.text


async def test_response_model_none_and_response_annotations_turn_validation_off():
    async with serve_app(response_app()) as client:
        assert (await client.get("/off")).json() == {"anything": "goes"}
        assert (await client.get("/response")).json() == {"raw": True}


async def test_a_model_returned_without_a_response_model_is_dumped_by_alias():
    class Aliased(BaseModel):
        item_name: str = Field(alias="itemName")

    app = App()

    @app.get("/aliased")
    async def aliased():
        return Aliased(itemName="x")

    async with serve_app(app) as client:
        assert (await client.get("/aliased")).json() == {"itemName": "x"}
