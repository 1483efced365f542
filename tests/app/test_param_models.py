"""Issue 22: parameter models, and parameters put where FastAPI puts them.

Each wrong answer rawbg gave (a 200 with ``null`` where FastAPI fills a
``Model | None`` from the query, a 200 where it answers 422, a 422 ``missing``
for every request to ``Annotated[Model, Query()]``, a query ``HttpUrl`` taken
as a body field) is a request below, sent to the same app on FastAPI and on
rawbg: status and body must be equal. The registration errors at the end are
what rawbg refuses where FastAPI refuses too.
"""

import importlib
from typing import Annotated

import pytest

from rawbg import App, Cookie, Header, Query, RouteDefinitionError
from tests.support.parity import assert_same_answer, both_clients

pydantic = importlib.import_module("pydantic")

APP = """
import datetime
from typing import Annotated, Literal
from pydantic import BaseModel, Field, HttpUrl

{imports}

app = FastAPI()


class FilterParams(BaseModel):
    model_config = {{"extra": "forbid"}}
    limit: int = Field(100, gt=0, le=100)
    order_by: Literal["created_at", "updated_at"] = "created_at"
    tags: list[str] = []


class DateRange(BaseModel):
    start: datetime.date
    end: datetime.date


class CommonHeaders(BaseModel):
    host: str
    save_data: bool
    x_tag: list[str] = []


class StrictHeaders(BaseModel):
    model_config = {{"extra": "forbid"}}
    host: str
    x_token: str


class Cookies(BaseModel):
    session_id: str
    tracker: str | None = None


class Invoice(BaseModel):
    id: str
    total: float


@app.get("/filter")
async def filtered(filters: Annotated[FilterParams, Query()]):
    return filters


@app.get("/range")
async def date_range(limit: int = 10, dates: Annotated[DateRange | None, Query()] = None):
    return {{"limit": limit, "dates": dates}}


@app.get("/headers")
async def headers(common: Annotated[CommonHeaders, Header()]):
    return common


@app.get("/raw-headers")
async def raw_headers(common: Annotated[CommonHeaders, Header(convert_underscores=False)]):
    return common


@app.get("/strict-headers")
async def strict_headers(given: Annotated[StrictHeaders, Header()]):
    return given


@app.get("/cookies")
async def cookies(given: Annotated[Cookies, Cookie()]):
    return given


@app.get("/maybe-cookies")
async def maybe_cookies(given: Annotated[Cookies | None, Cookie()] = None):
    return given


@app.post("/invoices/")
def create_invoice(invoice: Invoice, callback_url: HttpUrl | None = None):
    return {{"invoice": invoice, "callback_url": callback_url}}


@app.post("/numbers")
async def numbers(numbers: list[int]):
    return sum(numbers)
"""

FASTAPI_IMPORTS = "from fastapi import Cookie, FastAPI, Header, Query"
RAWBG_IMPORTS = "from rawbg import App as FastAPI, Cookie, Header, Query"

REQUESTS = [
    ("GET", "/filter", {}),
    ("GET", "/filter?limit=5&order_by=updated_at&tags=a&tags=b", {}),
    ("GET", "/filter?limit=500&order_by=name", {}),
    ("GET", "/filter?limit=5&tool=plumbus&tool=x", {}),
    ("GET", "/range?limit=5", {}),
    ("GET", "/range?start=2026-01-01&end=2026-01-31", {}),
    ("GET", "/range?start=2026-01-01", {}),
    ("GET", "/range?start=soon&end=2026-13-01", {}),
    ("GET", "/headers", {"headers": {"save-data": "true", "x-tag": "one"}}),
    ("GET", "/headers", {"headers": [("save-data", "no"), ("x-tag", "1"), ("x-tag", "2")]}),
    ("GET", "/headers", {"headers": {"save_data": "true"}}),
    ("GET", "/headers", {}),
    ("GET", "/raw-headers", {"headers": {"save_data": "true"}}),
    ("GET", "/raw-headers", {"headers": {"save-data": "true"}}),
    ("GET", "/strict-headers", {"headers": {"x-token": "t"}}),
    ("GET", "/cookies", {"cookies": {"session_id": "1"}}),
    ("GET", "/cookies", {"cookies": {"tracker": "t"}}),
    ("GET", "/maybe-cookies", {}),
    ("GET", "/maybe-cookies", {"cookies": {"tracker": "t"}}),
    ("GET", "/maybe-cookies", {"cookies": {"session_id": "1", "tracker": "t"}}),
    ("POST", "/invoices/", {"json": {"id": "1", "total": 3}}),
    ("POST", "/invoices/?callback_url=https://example.com/x", {"json": {"id": "1", "total": 3}}),
    ("POST", "/invoices/?callback_url=not-a-url", {"json": {"id": "1", "total": 3}}),
    ("POST", "/numbers", {"json": [1, 2, 3]}),
    ("POST", "/numbers?numbers=1&numbers=2", {}),
]


@pytest.fixture(scope="module")
def clients():
    with both_clients(APP, fastapi=FASTAPI_IMPORTS, rawbg=RAWBG_IMPORTS) as pair:
        yield pair


@pytest.mark.parametrize(
    ("method", "target", "options"), REQUESTS, ids=[f"{m} {t}" for m, t, _ in REQUESTS]
)
def test_a_parameter_model_answers_what_fastapi_answers(clients, method, target, options):
    options = dict(options)
    cookies = options.pop("cookies", None)
    if cookies:  # per request, as a header: both clients' jars stay empty
        options["headers"] = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    assert_same_answer(clients, method, target, **options)


# The wrong answers of issue 22, each on an app of its own that today's rawbg
# also registers, so that each fails there with the wrong answer itself.

WRONG_ANSWERS = """
import datetime
from typing import Annotated
from pydantic import BaseModel, HttpUrl

{imports}

app = FastAPI()


class DateRange(BaseModel):
    start: datetime.date
    end: datetime.date


class ClientHeaders(BaseModel):
    x_client_name: str
    x_client_version: str


class Filters(BaseModel):
    limit: int = 10


class Invoice(BaseModel):
    id: str
    total: float


@app.get("/range")
async def date_range(limit: int = 10, dates: Annotated[DateRange | None, Query()] = None):
    return {{"limit": limit, "dates": dates}}


@app.get("/client")
async def client(given: Annotated[ClientHeaders | None, Header()] = None):
    return given


@app.get("/filters")
async def filters(given: Annotated[Filters, Query()]):
    return given


@app.post("/invoices/")
def create_invoice(invoice: Invoice, callback_url: HttpUrl | None = None):
    return {{"id": invoice.id, "callback": str(callback_url) if callback_url else None}}
"""


@pytest.fixture(scope="module")
def wrong_answer_clients():
    with both_clients(WRONG_ANSWERS, fastapi=FASTAPI_IMPORTS, rawbg=RAWBG_IMPORTS) as pair:
        yield pair


WRONG_ANSWER_REQUESTS = {
    # rawbg said 200 {"dates": null}; FastAPI fills the model
    "optional query model filled": ("GET", "/range?start=2026-01-01&end=2026-01-31", {}),
    # rawbg said 200 {"dates": null}; FastAPI: 422 ["query", "end"]
    "optional query model incomplete": ("GET", "/range?start=2026-01-01", {}),
    # rawbg said 200 null; FastAPI fills the model from the headers
    "optional header model filled": (
        "GET",
        "/client",
        {"headers": {"x-client-name": "n", "x-client-version": "1"}},
    ),
    # rawbg said 200 null; FastAPI: 422 ["header", "x-client-version"]
    "optional header model incomplete": ("GET", "/client", {"headers": {"x-client-name": "n"}}),
    # rawbg said 422 missing ["query", "given"] to every request
    "query model": ("GET", "/filters?limit=3", {}),
    "query model defaults": ("GET", "/filters", {}),
    # rawbg said 422 missing ["body", "invoice"]: callback_url was taken as a body field
    "query URL beside a body model": ("POST", "/invoices/", {"json": {"id": "1", "total": 3}}),
    "query URL given": (
        "POST",
        "/invoices/?callback_url=https://example.com/cb",
        {"json": {"id": "1", "total": 3}},
    ),
}


@pytest.mark.parametrize("request_", WRONG_ANSWER_REQUESTS.values(), ids=WRONG_ANSWER_REQUESTS)
def test_what_rawbg_answered_wrongly_it_now_answers_as_fastapi(wrong_answer_clients, request_):
    method, target, options = request_
    assert_same_answer(wrong_answer_clients, method, target, **options)


class Filters(pydantic.BaseModel):
    limit: int = 10


class Other(pydantic.BaseModel):
    name: str = ""


def test_a_query_parameter_that_holds_no_value_is_refused_at_registration():
    app = App()
    with pytest.raises(RouteDefinitionError, match=r"parameter 'q'.*a query parameter is one"):

        @app.get("/q")
        async def read(q: Annotated[dict, Query()]):
            return q


def test_a_union_of_models_in_the_query_is_refused_at_registration():
    app = App()
    with pytest.raises(RouteDefinitionError, match="parameter 'q'"):

        @app.get("/q")
        async def read(q: Annotated[Filters | Other, Query()]):
            return q


@pytest.mark.parametrize("marker", [Query(alias="f"), Header(gt=1), Cookie(min_length=2)])
def test_checks_or_an_alias_on_a_parameter_model_are_refused(marker):
    app = App()
    with pytest.raises(RouteDefinitionError, match="takes no checks and no alias"):

        @app.get("/q")
        async def read(f: Annotated[Filters, marker]):
            return f


@pytest.mark.parametrize("annotation", [list, set, list | None])
def test_a_bare_sequence_without_a_marker_is_refused_fastapi_reads_uploaded_files(annotation):
    app = App()
    with pytest.raises(RouteDefinitionError, match="list of uploaded files"):

        @app.post("/q")
        async def read(values: annotation):  # type: ignore[valid-type]
            return values
