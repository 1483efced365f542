"""The OpenAPI document: FastAPI's for the same app, valid OpenAPI 3.1, the same without pydantic.

FastAPI is the reference (the test extra installs it): one app's source is
built twice, once importing FastAPI and once rawbg, only the import line
differing, and ``app.openapi()`` must be equal, key for key. The document is
then checked against the OpenAPI 3.1 schema (openapi-spec-validator), and
rawbg's own JSON Schema generator (no pydantic) must write what pydantic's does.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import gc
import importlib
import json
import textwrap
import uuid
import warnings
from typing import Annotated, Any, Literal

import pytest

from rawbg import APIRoute, App, Body, Depends, File, Form, Query, UploadFile
from rawbg.app.openapi import document
from rawbg.app.openapi.fields import FieldOptions, SchemaField
from rawbg.app.openapi.own_schemas import OwnEngine
from rawbg.app.openapi.pydantic_schemas import PydanticEngine
from rawbg.errors import OpenAPIError
from rawbg.params import Constraints

fastapi = importlib.import_module("fastapi")
pydantic = importlib.import_module("pydantic")
annotated_types = importlib.import_module("annotated_types")
validate_spec = importlib.import_module("openapi_spec_validator").validate

RAWBG_IMPORTS = (
    "from rawbg import App as FastAPI, APIRouter, Body, Cookie, Depends, Header, "
    "HTTPException, Path, Query, Security, status\n"
    "from rawbg.responses import HTMLResponse, PlainTextResponse, RedirectResponse\n"
    "from rawbg.security import APIKeyHeader, HTTPBasic, OAuth2PasswordBearer, SecurityScopes\n"
    "from rawbg.sse import EventSourceResponse"
)
FASTAPI_IMPORTS = (
    "from fastapi import FastAPI, APIRouter, Body, Cookie, Depends, Header, "
    "HTTPException, Path, Query, Security, status\n"
    "from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse\n"
    "from fastapi.security import APIKeyHeader, HTTPBasic, OAuth2PasswordBearer, SecurityScopes\n"
    "from fastapi.sse import EventSourceResponse"
)

# A shop: every kind of parameter, bodies (one, embedded, several, a dataclass, a
# model), response models, routers with tags and responses, route dependencies,
# docstrings, status codes, other response classes, callbacks, a webhook, parameter
# models, security schemes with scopes, JSON Lines and server-sent events streams.
SHOP = '''
import dataclasses, datetime, decimal, enum, uuid
from collections.abc import AsyncIterable, Iterable
from typing import Annotated, Literal
from pydantic import BaseModel, Field

{imports}


class Kind(str, enum.Enum):
    book = "book"
    game = "game"


class Image(BaseModel):
    url: str
    name: str = Field(min_length=2, description="What the image shows")


class Item(BaseModel):
    """An item of the shop.\\fNot shown."""

    name: str
    price: decimal.Decimal = Field(gt=0)
    tags: set[str] = set()
    images: list[Image] | None = None
    kind: Kind = Kind.book


class ItemOut(BaseModel):
    id: uuid.UUID
    name: str
    price: decimal.Decimal


@dataclasses.dataclass
class Review:
    stars: int
    text: str = ""
    at: datetime.datetime | None = None


class Message(BaseModel):
    message: str


app = FastAPI(
    title="Shop",
    version="2.5.0",
    summary="A shop",
    description="Buy **things**.",
    terms_of_service="https://example.com/terms",
    contact={{"name": "Ada", "email": "ada@example.com"}},
    license_info={{"name": "MIT", "identifier": "MIT"}},
    openapi_tags=[{{"name": "items", "description": "The items"}}],
    servers=[{{"url": "https://shop.example.com"}}],
)


def pagination(skip: int = 0, limit: Annotated[int, Query(le=100)] = 10):
    return skip, limit


def token(x_token: Annotated[str, Header(description="The caller's token")]):
    return x_token


router = APIRouter(
    prefix="/items",
    tags=["items"],
    dependencies=[Depends(token)],
    responses={{404: {{"description": "Not found", "model": Message}}}},
)


@router.get("/", response_model=list[ItemOut])
async def list_items(
    page: Annotated[tuple, Depends(pagination)],
    q: Annotated[
        str | None,
        Query(alias="item-query", min_length=3, max_length=50, pattern="^[a-z]+$",
              title="Query", description="Search", deprecated=True, examples=["shoe"]),
    ] = None,
    kinds: Annotated[list[Kind] | None, Query()] = None,
):
    """List the items.

    With paging.
    """
    return []


@router.get("/{{item_id}}", response_model=ItemOut, responses={{
    200: {{"content": {{"image/png": {{}}}}, "description": "The item, or its picture"}},
    "4XX": {{"description": "Something is wrong"}},
}})
async def read_item(
    item_id: Annotated[uuid.UUID, Path(title="The item")],
    session: Annotated[str | None, Cookie()] = None,
    user_agent: Annotated[str | None, Header()] = None,
):
    return {{}}


@router.put("/{{item_id}}", status_code=status.HTTP_202_ACCEPTED, summary="Replace an item",
            description="Replace it whole.", response_description="Replaced",
            operation_id="replace_item")
async def replace_item(
    item_id: int,
    item: Item,
    importance: Annotated[int, Body(gt=0)],
    note: Annotated[str | None, Body(embed=True, examples=["fragile"])] = None,
):
    return {{}}


@router.post("/{{item_id}}/reviews", status_code=201, response_model=Review)
async def add_review(item_id: int, review: Review):
    return review


@router.delete("/{{item_id}}", status_code=204, deprecated=True)
async def delete_item(item_id: int):
    return None


app.include_router(router)


@app.post("/orders/", tags=["orders"], openapi_extra={{"x-internal": True}})
async def order(
    item: Annotated[Item, Body(embed=True, openapi_examples={{
        "plain": {{"summary": "A plain one", "value": {{"name": "Pen", "price": 1.5}}}},
    }})],
    mode: Literal["fast", "slow"] = "fast",
    when: datetime.date | None = None,
    total: Annotated[decimal.Decimal | None, Query(ge=1)] = None,
) -> Message:
    return Message(message="ok")


class Filters(BaseModel):
    model_config = {{"extra": "forbid"}}

    limit: int = Field(100, gt=0, le=100, description="How many")
    tags: list[str] = []
    order_by: Literal["created_at", "updated_at"] = Field("created_at", alias="orderBy")


class Tracing(BaseModel):
    traceparent: str | None = None
    x_request_id: str = Field(deprecated=True)


@app.get("/search/")
async def search(
    filters: Annotated[Filters, Query()],
    tracing: Annotated[Tracing | None, Header()] = None,
):
    return filters


oauth2 = OAuth2PasswordBearer(
    tokenUrl="token", scopes={{"items:read": "Read items", "me": "Read yourself"}}
)
api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A partner's key")
basic = HTTPBasic(scheme_name="partner")


def current_user(security_scopes: SecurityScopes, token: Annotated[str, Depends(oauth2)]):
    return token


@app.get("/me/items/", dependencies=[Depends(api_key)])
async def my_items(
    user: Annotated[str, Security(current_user, scopes=["items:read"])],
    me: Annotated[str, Security(current_user, scopes=["me"])],
):
    return []


@app.get("/partners/", dependencies=[Depends(basic)])
async def partners():
    return []


@app.get("/stream/items")
async def stream_items() -> AsyncIterable[Item]:
    yield Item(name="Pen", price=1.5)


@app.get("/stream/lines")
def stream_lines():
    yield "line"


@app.get("/events", response_class=EventSourceResponse)
def events() -> Iterable[Message]:
    yield Message(message="hello")


@app.get("/page", response_class=HTMLResponse, tags=["pages"])
async def page():
    return "<p>hello</p>"


@app.get("/text", response_class=PlainTextResponse, include_in_schema=True)
async def text():
    return "hello"


@app.get("/old", response_class=RedirectResponse)
async def old():
    return "/page"


@app.get("/hidden", include_in_schema=False)
async def hidden(q: str):
    return q


@app.get("/files/{{file_path:path}}")
async def read_file(file_path: str):
    return file_path


@app.webhooks.post("item-sold")
def item_sold(body: Item):
    """When an item is sold, the shop POSTs it to you."""
'''


def shop(imports: str) -> Any:
    namespace: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FastAPI's deprecation warnings
        source = textwrap.dedent(SHOP.format(imports=imports))
        exec(compile(source, "shop.py", "exec", dont_inherit=True), namespace)
    return namespace["app"]


def test_the_document_of_an_app_is_fastapis_for_the_same_app() -> None:
    ours = shop(RAWBG_IMPORTS).openapi()
    theirs = shop(FASTAPI_IMPORTS).openapi()
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


#: the streams' answers say ``itemSchema``, which is OpenAPI 3.2's: FastAPI writes it under
#: "3.1.0" too (the parity test holds that), and a 3.1 validator refuses it
STREAMS = ("/stream/items", "/stream/lines", "/events")


def test_the_document_is_valid_openapi_3_1() -> None:
    document = shop(RAWBG_IMPORTS).openapi()
    for path in STREAMS:
        assert "itemSchema" in json.dumps(document["paths"].pop(path))
    validate_spec(document)


def test_the_document_is_built_once_and_again_after_a_route_is_added() -> None:
    app = App()

    @app.get("/a")
    async def a() -> None:
        return None

    first = app.openapi()
    assert app.openapi() is first
    assert app.openapi_schema is first

    @app.get("/b")
    async def b() -> None:
        return None

    assert set(app.openapi()["paths"]) == {"/a", "/b"}


# -- rawbg's own generator, without pydantic -----------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Documented(enum.Enum):
    """A documented enum."""

    A = "a"


@dataclasses.dataclass
class Parcel:
    name: str
    weight: float = 1.5
    labels: list[str] = dataclasses.field(default_factory=list)
    sent: datetime.date | None = None
    color: Color = Color.RED
    value: decimal.Decimal = decimal.Decimal("1.5")
    delay: datetime.timedelta = datetime.timedelta(hours=1, seconds=2.5)


@dataclasses.dataclass
class Node:
    """A tree."""

    value: int
    child: Node | None = None


TYPES = [
    str, int, float, bool, decimal.Decimal, uuid.UUID, datetime.datetime, datetime.date,
    datetime.time, datetime.timedelta, None, Any, list, list[int], set[str], frozenset[int],
    tuple[int, ...], tuple[int, str], tuple, dict, dict[str, int], dict[int, str],
    dict[str, Any], Literal["a"], Literal["a", "b"], Literal[1, "a"], Literal[1, 2], Color,
    Level, Documented, Parcel, Node, int | None, int | str, int | str | None, list[Parcel],
    dict[str, Parcel], Annotated[int, annotated_types.Gt(1)],
    Annotated[str, annotated_types.MinLen(2)], Annotated[list[int], annotated_types.MaxLen(3)],
]  # fmt: skip
OPTIONS = [
    FieldOptions(),
    FieldOptions(required=False, default=3),
    FieldOptions(
        required=False,
        default=None,
        title="T",
        description="D",
        examples=[1],
        deprecated=True,
        json_schema_extra={"x-a": 1},
    ),
]
CONSTRAINED = [
    (str, Constraints(min_length=2, max_length=5, pattern="^a")),
    (int, Constraints(gt=1, le=10, multiple_of=2)),
    (float, Constraints(ge=0.5)),
    (decimal.Decimal, Constraints(gt=1)),
    (str | None, Constraints(min_length=3)),
    (list[int], Constraints(min_length=1)),
    (dict[str, int], Constraints(max_length=2)),
]
CASES = [
    pytest.param(mode, SchemaField("x", annotation, mode, (), options), id=f"{mode}-{i}-{j}")
    for mode in ("validation", "serialization")
    for i, annotation in enumerate(TYPES)
    for j, options in enumerate(OPTIONS)
] + [
    pytest.param(
        mode, SchemaField("x", annotation, mode, (), FieldOptions(constraints=c)), id=f"{mode}-c{i}"
    )
    for mode in ("validation", "serialization")
    for i, (annotation, c) in enumerate(CONSTRAINED)
]


def both(fields: list[SchemaField]) -> tuple[Any, Any]:
    own, theirs = OwnEngine(), PydanticEngine(pydantic)
    for schema_field in fields:
        own.add(schema_field)
        theirs.add(schema_field)
    return (
        own.generate(separate_input_output_schemas=True),
        theirs.generate(separate_input_output_schemas=True),
    )


@pytest.mark.parametrize(("mode", "schema_field"), CASES)
def test_rawbgs_own_schema_of_a_type_is_pydantics(mode: str, schema_field: SchemaField) -> None:
    (own_schemas, own_definitions), (schemas, definitions) = both([schema_field])
    assert own_schemas[schema_field] == schemas[schema_field]
    assert own_definitions == definitions


def test_a_class_that_differs_in_and_out_is_named_as_pydantic_names_it() -> None:
    sent = SchemaField("x", Parcel, "validation")
    returned = SchemaField("y", Parcel, "serialization")
    (own_schemas, own_definitions), (schemas, definitions) = both([sent, returned])
    assert own_definitions == definitions
    assert set(definitions) >= {"Parcel-Input", "Parcel-Output"}
    assert own_schemas == schemas


PLAIN_SHOP = """
import dataclasses, datetime, decimal, enum, uuid
from collections.abc import AsyncIterable, Iterable
from typing import Annotated, Literal
from rawbg import App, Body, Depends, Header, Path, Query


class Size(str, enum.Enum):
    small = "small"
    large = "large"


@dataclasses.dataclass
class Box:
    label: str
    size: Size = Size.small
    weight: float | None = None
    opened: datetime.datetime | None = None


app = App()


def paging(skip: int = 0, limit: Annotated[int, Query(ge=1, le=50)] = 10):
    return skip, limit


@app.get("/boxes/{box_id}")
async def read_box(
    box_id: Annotated[uuid.UUID, Path(title="The box")],
    page: Annotated[tuple, Depends(paging)],
    tags: Annotated[list[str] | None, Query()] = None,
    mode: Literal["a", "b"] = "a",
    x_trace: Annotated[str | None, Header()] = None,
) -> Box:
    return Box(label="x")


@app.post("/boxes/", status_code=201)
async def add_box(box: Box, count: Annotated[int, Body(gt=0)], note: str | None = Body(None)):
    return box
"""


def test_the_document_without_pydantic_is_the_one_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(PLAIN_SHOP, "plain_shop.py", "exec", dont_inherit=True), namespace)
    app = namespace["app"]
    with_pydantic = app.openapi()
    monkeypatch.setattr(document, "load_pydantic", lambda: None)
    app.openapi_schema = None
    without = app.openapi()
    assert without == with_pydantic
    validate_spec(without)


# -- what cannot be described -----------------------------------------------------------


class Opaque:
    pass


def make_opaque(thing: pydantic.InstanceOf[Opaque] = Body()) -> Opaque:
    return thing


def test_a_type_that_cannot_be_described_names_the_route_parameter_and_file_line() -> None:
    app = App()

    @app.post("/things")
    async def add(thing: Annotated[Opaque, Depends(make_opaque)]) -> None:
        return None

    with pytest.raises(OpenAPIError) as raised:
        app.openapi()
    message = str(raised.value)
    code = make_opaque.__code__
    assert message.startswith("route POST /things: the body parameter 'thing' of ")
    assert f"({code.co_filename}:{code.co_firstlineno})" in message
    assert "IsInstanceSchema" in message


def test_without_pydantic_a_return_type_rawbg_cannot_describe_is_an_error_naming_the_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(document, "load_pydantic", lambda: None)
    app = App()

    @app.get("/q", response_model=None)
    async def q(limit: Annotated[int, Query(gt=0)] = 1) -> dict[str, int]:
        return {}

    app.openapi()  # rawbg describes a dict of ints
    app.routes[-1].response_model = Opaque  # what an unchecked return annotation gives
    app.openapi_schema = None
    with pytest.raises(OpenAPIError, match=r"route GET /q: the response model of .*\.q \("):
        app.openapi()


def test_a_form_fields_marker_is_in_its_schema_and_an_optional_upload_may_be_null() -> None:
    app = App()

    @app.post("/uploads/")
    async def upload(
        report: Annotated[bytes, File(description="The report, as bytes")],
        photo: Annotated[UploadFile | None, File(description="A photo, if any")] = None,
        note: Annotated[str, Form(max_length=20, title="Short note")] = "",
    ) -> None:
        return None

    body = app.openapi()["components"]["schemas"]["Body_upload_uploads__post"]
    assert body["properties"] == {
        "report": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "title": "Report",
            "description": "The report, as bytes",
        },
        "photo": {
            "anyOf": [
                {"type": "string", "contentMediaType": "application/octet-stream"},
                {"type": "null"},
            ],
            "title": "Photo",
            "description": "A photo, if any",
        },
        "note": {"type": "string", "maxLength": 20, "title": "Short note", "default": ""},
    }
    assert body["required"] == ["report"]


class FormProfile(pydantic.BaseModel):
    name: str


class FormPreferences(pydantic.BaseModel):
    tags: list[str] = pydantic.Field(default_factory=list)


def test_form_models_beside_other_form_fields_are_the_bodys_allof_as_in_fastapi() -> None:
    # FastAPI's request_form_models tutorial003 (two models and a field) and 004 (a model
    # and a file): the models' references go into Body_<id>'s allOf, not its properties
    app = App()

    @app.post("/profiles/")
    async def create_profile(
        profile: Annotated[FormProfile, Form()],
        preferences: Annotated[FormPreferences, Form()],
        token: Annotated[str, Form()],
    ) -> None:
        return None

    @app.post("/avatars/")
    async def create_avatar(profile: Annotated[FormProfile, Form()], avatar: UploadFile) -> None:
        return None

    schemas = app.openapi()["components"]["schemas"]
    profiles = schemas["Body_create_profile_profiles__post"]
    assert profiles["properties"] == {"token": {"type": "string", "title": "Token"}}
    assert profiles["required"] == ["token"]
    assert profiles["allOf"] == [
        {"$ref": "#/components/schemas/FormProfile"},
        {"$ref": "#/components/schemas/FormPreferences"},
    ]
    avatars = schemas["Body_create_avatar_avatars__post"]
    assert set(avatars["properties"]) == {"avatar"}
    assert avatars["required"] == ["avatar"]
    assert avatars["allOf"] == [{"$ref": "#/components/schemas/FormProfile"}]
    assert schemas["FormProfile"]["required"] == ["name"]


def test_app_webhooks_lists_planned_routes_whose_endpoint_is_the_handler() -> None:
    app = App()

    @app.webhooks.post("new-subscription")
    def new_subscription(body: dict[str, Any]) -> None:
        """A subscription was made."""

    (route,) = app.webhooks.routes
    assert isinstance(route, APIRoute)
    assert route.endpoint is new_subscription
    assert route.name == "new_subscription"
    operation = app.openapi()["webhooks"]["new-subscription"]["post"]
    assert operation["description"] == "A subscription was made."
    assert operation["requestBody"]["required"] is True


def test_the_cyclic_gc_is_as_it_was_after_the_document_is_built_or_fails() -> None:
    built = App()
    built.add_route("/items/{item_id}", lambda item_id: None, methods=["GET"])
    broken = App()

    async def add(thing: pydantic.InstanceOf[Opaque] = Body()) -> None:
        return None

    broken.add_route("/things", add, methods=["POST"])
    assert gc.isenabled()
    built.openapi()
    assert gc.isenabled()
    with pytest.raises(OpenAPIError):
        broken.openapi()
    assert gc.isenabled()
    gc.disable()
    try:
        built.openapi_schema = None
        built.openapi()
        assert not gc.isenabled()  # the server's own GC clock keeps it off: left off
    finally:
        gc.enable()
