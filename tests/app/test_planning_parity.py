"""The check for the whole class of issue 22's wrong answers: where a parameter is read.

Each wrong answer came from one decision made at registration: rawbg read a
parameter from another place than FastAPI does (an ``HttpUrl`` from the body,
a model with ``Query()`` as one query value). For a matrix of declarations
(types, with and without each marker, with and without a default), FastAPI's
own planner (``fastapi.dependencies.utils.get_dependant``) and rawbg's
(`plan_call`) must agree on the place, the key and whether it is required,
or rawbg must refuse the declaration at registration: never a different
reading in silence.
"""

import collections
import dataclasses
import datetime
import decimal
import enum
import importlib
import inspect
import itertools
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pytest

from rawbg import Body, Cookie, Header, Path, Query, RouteDefinitionError
from rawbg.app.dependencies import Source, ValueParam, plan_call

fastapi = importlib.import_module("fastapi")
pydantic = importlib.import_module("pydantic")
fastapi_utils = importlib.import_module("fastapi.dependencies.utils")


class Color(enum.Enum):
    red = "red"


class Model(pydantic.BaseModel):
    name: str = ""


@dataclasses.dataclass
class Point:
    x: int = 0


TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float | None": float | None,
    "bool": bool,
    "Decimal": decimal.Decimal,
    "UUID": uuid.UUID,
    "datetime": datetime.datetime,
    "Enum": Color,
    "Literal": Literal["a", "b"],
    "Any": Any,
    "HttpUrl": pydantic.HttpUrl,
    "HttpUrl | None": pydantic.HttpUrl | None,
    "list[str]": list[str],
    "list": list,
    "list[int] | None": list[int] | None,
    "set[str]": set[str],
    "tuple[int, ...]": tuple[int, ...],
    "frozenset[str]": frozenset[str],
    "Sequence[str]": Sequence[str],
    "deque[str]": collections.deque[str],
    "dict": dict,
    "dict[str, int]": dict[str, int],
    "Model": Model,
    "Model | None": Model | None,
    "list[Model]": list[Model],
    "dataclass": Point,
}

MARKERS: dict[str, tuple[Any, Any]] = {  # rawbg's, FastAPI's
    "none": (None, None),
    "Query": (Query, fastapi.Query),
    "Header": (Header, fastapi.Header),
    "Cookie": (Cookie, fastapi.Cookie),
    "Body": (Body, fastapi.Body),
}

DEFAULTS = {"required": inspect.Parameter.empty, "default None": None}


def handler(annotation: Any, default: Any, name: str = "p") -> Any:
    def endpoint(**kwargs: Any) -> None:
        return None

    parameter = inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )
    endpoint.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    return endpoint


def fastapi_reading(annotation: Any, default: Any, path: str) -> tuple[str, str, bool] | None:
    """(place, key, required) as FastAPI plans the parameter; None if it refuses it."""
    try:
        dependant = fastapi_utils.get_dependant(path=path, call=handler(annotation, default))
    except (AssertionError, Exception):
        return None
    for place in ("path", "query", "header", "cookie", "body"):
        for field in getattr(dependant, f"{place}_params"):
            return place, field.alias, field.field_info.is_required()
    return None


def rawbg_reading(annotation: Any, default: Any, path: str) -> tuple[str, str, bool] | None:
    """(place, key, required) as rawbg plans the parameter; None if it refuses it."""
    path_params = frozenset({"p"}) if "{p}" in path else frozenset()
    try:
        plan = plan_call(handler(annotation, default), path_params=path_params)
    except RouteDefinitionError:
        return None
    (param,) = plan.params
    assert isinstance(param, ValueParam)
    place = param.source.value
    key = param.value.key if getattr(param.value, "model", None) is None else "p"  # a model
    return place, key, param.required


CASES = [
    (type_name, marker_name, default_name)
    for type_name, marker_name, default_name in itertools.product(TYPES, MARKERS, DEFAULTS)
    if not (marker_name in ("Header", "Cookie") and type_name in ("dict", "dict[str, int]"))
]


@pytest.mark.parametrize(("type_name", "marker_name", "default_name"), CASES)
def test_rawbg_reads_a_parameter_where_fastapi_does_or_refuses_it(
    type_name: str, marker_name: str, default_name: str
) -> None:
    rawbg_marker, fastapi_marker = MARKERS[marker_name]
    base, default = TYPES[type_name], DEFAULTS[default_name]
    ours_annotation = base if rawbg_marker is None else Annotated[base, rawbg_marker()]
    theirs_annotation = base if fastapi_marker is None else Annotated[base, fastapi_marker()]
    ours = rawbg_reading(ours_annotation, default, "/items")
    theirs = fastapi_reading(theirs_annotation, default, "/items")
    if ours is None:
        return  # refused at registration: a clear error, never a different answer
    assert theirs is not None, f"FastAPI refuses this; rawbg reads it from {ours}"
    assert ours == theirs


@pytest.mark.parametrize("type_name", ["str", "int", "UUID", "Enum", "Model", "list[str]"])
def test_a_path_parameter_is_read_where_fastapi_reads_it_or_refused(type_name: str) -> None:
    base = TYPES[type_name]
    ours = rawbg_reading(Annotated[base, Path()], inspect.Parameter.empty, "/items/{p}")
    theirs = fastapi_reading(Annotated[base, fastapi.Path()], inspect.Parameter.empty, "/items/{p}")
    if ours is not None:
        assert ours == theirs
    assert (ours is None) == (theirs is None) or ours is None


def test_the_check_can_fail() -> None:
    # FastAPI's and rawbg's readings of a bare list differed before issue 22
    ours = rawbg_reading(list[str], inspect.Parameter.empty, "/items")
    assert ours == ("body", "p", True) != ("query", "p", True)
    assert Source.BODY.value == "body"
