"""Planning parameters at registration, without a socket: sources, keys, defaults, and refusals."""

import datetime
import decimal
import enum
import importlib
import re
import subprocess
import sys
import textwrap
import uuid
from typing import Annotated, Any, Literal

import pytest
from hypothesis import assume, given, settings, strategies as st

from rawbg import App, Body, Cookie, Depends, Header, Path, Query, RouteDefinitionError
from rawbg.app.converters import Invalid
from rawbg.app.dependencies import Source, plan_call, should_embed_body
from rawbg.app.route_listing import describe_routes
from rawbg.app.validation import build
from rawbg.params import Constraints

NO_PATH: frozenset[str] = frozenset()


def planned(handler, path_params=NO_PATH):
    return {p.name: p for p in plan_call(handler, path_params=frozenset(path_params)).params}


def test_each_marker_plans_its_source_and_key_in_both_spellings():
    def handler(
        item_id: Annotated[int, Path(ge=1)],
        q: Annotated[str | None, Query(alias="item-query")] = None,
        user_agent: str | None = Header(default=None),
        raw_name: Annotated[str, Header(convert_underscores=False)] = "",
        session: str | None = Cookie(default=None),
        importance: Annotated[int, Body()] = 1,
        plain: int = 0,
        listed: Annotated[list[int] | None, Query()] = None,
        bare_list: list[int] | None = None,  # FastAPI's rule: a sequence is the body
        doc: dict | None = None,
    ):
        return None

    params = planned(handler, {"item_id"})
    got = {name: (p.source, p.value.key) for name, p in params.items()}
    assert got == {
        "item_id": (Source.PATH, "item_id"),
        "q": (Source.QUERY, "item-query"),
        "user_agent": (Source.HEADER, "user-agent"),
        "raw_name": (Source.HEADER, "raw_name"),
        "session": (Source.COOKIE, "session"),
        "importance": (Source.BODY, "importance"),
        "plain": (Source.QUERY, "plain"),
        "listed": (Source.QUERY, "listed"),
        "bare_list": (Source.BODY, "bare_list"),
        "doc": (Source.BODY, "doc"),
    }
    assert params["listed"].value.many and not params["plain"].value.many
    assert params["item_id"].required and not params["q"].required
    assert params["user_agent"].default is None and params["importance"].default == 1


def test_required_spellings_and_default_factories():
    def handler(
        a: str = Query(...),
        b: Annotated[str, Query()] = ...,  # type: ignore[assignment]
        c: Annotated[str, Query()] = "c",
        d: list[str] = Query(default_factory=lambda: ["x"]),
    ):
        return None

    params = planned(handler)
    assert params["a"].required
    assert not params["c"].required and params["c"].default_value() == "c"
    assert not params["d"].required and params["d"].default_value() == ["x"]


def test_one_body_is_the_whole_body_unless_embedded_and_several_are_embedded():
    def whole(item: dict):
        return None

    def embedded(item: Annotated[dict, Body(embed=True)]):
        return None

    def body_dependency(extra: Annotated[int, Body()]):
        return extra

    def through_a_dependency(item: dict, extra: Annotated[int, Depends(body_dependency)]):
        return None

    assert not should_embed_body(plan_call(whole, path_params=NO_PATH))
    assert should_embed_body(plan_call(embedded, path_params=NO_PATH))
    assert should_embed_body(plan_call(through_a_dependency, path_params=NO_PATH))


class Meta:
    """Annotated metadata rawbg does not know."""


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (
            lambda app: app.get("/x")(lambda q: None),
            None,  # fine: untyped is a query string
        ),
        (
            lambda app: app.get("/x")(_with_unknown_metadata),
            "Annotated metadata <tests.app.test_param_planning.Meta",
        ),
        (
            lambda app: app.get("/x")(_path_marker_without_segment),
            "declared with Path() but the route's path has no {item_id}",
        ),
        (
            lambda app: app.get("/x")(_default_inside_annotated),
            "give the default with `= value`, not inside Query(...) in Annotated",
        ),
        (
            lambda app: app.get("/x")(_length_on_an_int),
            "min_length cannot apply to a value of type int",
        ),
        (
            lambda app: app.get("/x")(_bad_pattern),
            "is not a valid regular expression",
        ),
        (
            lambda app: app.get("/x")(_two_markers),
            "give one",
        ),
    ],
    ids=[
        "untyped",
        "unknown-metadata",
        "path-without-segment",
        "default-in-annotated",
        "length-on-int",
        "bad-pattern",
        "two-markers",
    ],
)
def test_what_rawbg_cannot_honour_is_refused_at_registration_naming_where(make, words):
    app = App()
    if words is None:
        make(app)
        return
    with pytest.raises(RouteDefinitionError) as raised:
        make(app)
    message = str(raised.value)
    assert words in message
    assert "tests.app.test_param_planning." in message and "test_param_planning.py:" in message
    assert message.endswith("[route GET /x]")


def _with_unknown_metadata(q: Annotated[str, Meta()] = ""):
    return q


def _path_marker_without_segment(item_id: Annotated[int, Path()]):
    return item_id


def _default_inside_annotated(q: Annotated[str, Query("x")]):
    return q


def _length_on_an_int(n: Annotated[int, Query(min_length=2)] = 0):
    return n


def _bad_pattern(q: Annotated[str, Query(pattern="(")] = ""):
    return q


def _two_markers(q: Annotated[str, Query()] = Query("x")):
    return q


def test_routes_view_shows_the_new_sources_keys_and_checks():
    app = App()

    @app.put("/items/{item_id}")
    async def update(
        item_id: Annotated[int, Path(gt=0)],
        item: Annotated[dict, Body(embed=True)],
        q: Annotated[list[str] | None, Query(alias="item-query", max_length=3)] = None,
        x_token: Annotated[str | None, Header()] = None,
        session: Annotated[str | None, Cookie(min_length=8)] = None,
    ):
        return {}

    @app.get("/users", response_model=list[dict])
    async def users():
        return []

    text = describe_routes(app)
    assert "  response model: list[dict]\n" in text
    assert "item_id: int  <- path (gt=0)" in text
    assert "<- body (embedded as 'item')" in text
    assert "<- query 'item-query' (repeated key, max_length=3)" in text
    assert "<- header 'x-token'" in text
    assert "<- cookie (min_length=8)" in text


# -- rawbg's own validator against pydantic's -------------------------------------------

pydantic = importlib.import_module("pydantic")


class Color(enum.Enum):
    red = "red"
    green = "green"


class Level(enum.IntEnum):
    low = 1
    high = 2


SCALARS = [
    str,
    int,
    float,
    bool,
    decimal.Decimal,
    uuid.UUID,
    datetime.date,
    Color,
    Level,
    Literal["asc", "desc"],
    int | None,
    list[int],
]
CONSTRAINED = [
    (str, Constraints(min_length=2, max_length=4, pattern="^[a-z]")),
    (int, Constraints(gt=0, le=10, multiple_of=2)),
    (float, Constraints(ge=0.5, lt=2)),
    (list[int], Constraints(min_length=1, max_length=2)),
]
TEXT = st.one_of(
    st.sampled_from(
        [
            *("1", " 2 ", "3.0", "1.5", "1_000", "", "true", "off", "Y", "2", "-0", "1e3"),
            *("inf", "2024-02-29", "2024-13-01", "red", "blue", "asc", "1234567812345678" * 2),
        ]
    ),
    st.text(alphabet="0123456789.-_ aeftruTy:", max_size=12),
)
JSON_VALUES = st.one_of(
    TEXT,
    st.integers(-5, 20),
    st.floats(-5, 20),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(TEXT, st.integers(-3, 3)), max_size=3),
)


def outcome(validate, value):
    try:
        return ("ok", validate(value))
    except Invalid as exc:
        return ("error", [(e["type"], e["loc"], e["msg"], e.get("ctx")) for e in exc.errors])
    except pydantic.ValidationError as exc:
        return (
            "error",
            [(e["type"], list(e["loc"]), e["msg"], e.get("ctx")) for e in exc.errors()],
        )


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    case=st.one_of(
        st.sampled_from([(t, Constraints()) for t in SCALARS]), st.sampled_from(CONSTRAINED)
    ),
    value=JSON_VALUES,
)
def test_rawbgs_own_validator_answers_as_pydantic_does(case, value):
    annotation, constraints = case
    # a date from a number written with a fraction or an exponent ("1.5", "1e3"): pydantic's
    # rules there are its date parser's own; rawbg reads whole numbers and decimals only
    assume(
        not (
            annotation is datetime.date
            and isinstance(value, str)
            and re.fullmatch(r"[0-9.eE+-]+", value)
            and not value.isdigit()
        )
    )
    ours = build(annotation, constraints)
    target: Any = annotation
    if constraints.given():
        target = Annotated[annotation, pydantic.Field(**constraints.given())]
    theirs = pydantic.TypeAdapter(target).validate_python
    if isinstance(value, float) and annotation is int:
        value = round(value, 1)
    mine, reference = outcome(ours, value), outcome(theirs, value)
    if annotation is datetime.date and mine[0] == reference[0] == "error":
        # the reason after "a valid date or datetime, " is the speedate crate's: close, not equal
        mine, reference = [e[:2] for e in mine[1]], [e[:2] for e in reference[1]]
    if mine[0] == "ok" and reference[0] == "ok":
        assert mine[1] == reference[1] or (mine[1] != mine[1] and reference[1] != reference[1])
    else:
        assert mine == reference


# -- without pydantic -------------------------------------------------------------------

BLOCK_PYDANTIC = "import sys; sys.modules['pydantic'] = None\n"


def run_without_pydantic(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PYDANTIC + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_pydantic_rawbg_imports_and_never_tries_to_import_it():
    done = run_without_pydantic(
        """
        import rawbg
        from rawbg import App, Query, Body
        app = App()

        @app.get("/items/{item_id}")
        async def read(item_id: int, q: str | None = Query(default=None, min_length=3)):
            return item_id

        print(sorted(m for m in sys.modules if m.startswith("pydantic")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['pydantic']"  # only the blocking entry


def test_without_pydantic_a_model_annotation_is_an_error_naming_the_extra():
    done = run_without_pydantic(
        """
        from rawbg import App, RouteDefinitionError

        class BaseModel:  # what a model looks like to rawbg: a class it does not know
            __pydantic_fields__ = {}

        class Item(BaseModel):
            name: str

        app = App()
        try:
            @app.post("/items")
            async def create(item: Item):
                return item
        except RouteDefinitionError as exc:
            print(exc)
        try:
            @app.get("/one", response_model=dict)
            async def one():
                return {}
        except RouteDefinitionError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert "parameter 'item' of" in first
    assert "Item is a pydantic model needs pydantic, which is not installed" in first
    assert "pip install 'rawbg[pydantic]'" in first and "[route POST /items]" in first
    assert "pip install 'rawbg[pydantic]'" in second and "[route GET /one]" in second


def test_without_pydantic_dataclasses_are_loaded_by_rawbg_with_their_types_converted():
    done = run_without_pydantic(
        """
        import asyncio, dataclasses, datetime, decimal, enum, uuid
        from rawbg import App
        from rawbg.testing import serve_app

        class Kind(enum.Enum):
            book = "book"

        @dataclasses.dataclass
        class Part:
            id: uuid.UUID

        @dataclasses.dataclass
        class Order:
            at: datetime.datetime
            day: datetime.date
            price: decimal.Decimal
            kind: Kind
            parts: list[Part] = dataclasses.field(default_factory=list)

        app = App()

        @app.post("/orders")
        async def create(order: Order):
            return [type(v).__name__ for v in (order.at, order.day, order.price, order.kind,
                    order.parts[0].id)]

        async def main():
            async with serve_app(app, in_memory=True) as client:
                ok = await client.post("/orders", json={
                    "at": "2024-01-01T10:00:00", "day": "2024-01-02", "price": "2.50",
                    "kind": "book", "parts": [{"id": "ff97dd87-a4a5-4a12-b412-cde99f33e00e"}]})
                print(ok.status_code, ok.json())
                bad = await client.post("/orders", json={"at": "x", "day": "2024-01-02",
                    "price": "cheap", "kind": "dvd", "parts": [{"id": 3}]})
                print(bad.status_code, [(e["loc"], e["type"]) for e in bad.json()["detail"]])

        asyncio.run(main())
        """
    )
    assert done.returncode == 0, done.stderr
    ok, bad = done.stdout.strip().splitlines()
    assert ok == "200 ['datetime', 'date', 'Decimal', 'Kind', 'UUID']"
    assert bad == (
        "422 [(['body', 'at'], 'datetime_from_date_parsing'), "
        "(['body', 'price'], 'decimal_parsing'), (['body', 'kind'], 'enum'), "
        "(['body', 'parts', 0, 'id'], 'uuid_type')]"
    )


def test_without_pydantic_the_dataclass_body_tests_pass_with_rawbgs_own_loader():
    """The same expectations (FastAPI's answers) hold when rawbg validates dataclasses itself."""
    done = run_without_pydantic(
        """
        import pytest
        sys.exit(pytest.main(["-p", "no:cacheprovider", "-p", "no:xdist",
                              "-p", "no:hypothesispytest", "tests/app/test_app_params.py",
                              "-k", "dataclass or body", "-rA"]))
        """
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("PASSED") >= 15, done.stdout
