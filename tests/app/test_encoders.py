"""jsonable_encoder: values to JSON-ready data, as FastAPI's does; no socket needed."""

import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import uuid
from collections import deque

import pydantic
import pytest

from rawbg.encoders import jsonable_encoder


class Color(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


@dataclasses.dataclass
class Point:
    x: int
    label: str | None = None
    when: datetime.date | None = None


class Item(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)

    title: str
    timestamp: datetime.datetime
    description: str | None = None
    internal_name: str = pydantic.Field(default="x", alias="internalName")


def test_leaf_types_become_strings_and_numbers():
    moment = datetime.datetime(2024, 5, 1, 12, 30, 5, tzinfo=datetime.UTC)
    value = {
        "datetime": moment,
        "date": datetime.date(2024, 5, 1),
        "time": datetime.time(12, 30),
        "timedelta": datetime.timedelta(minutes=1, seconds=30),
        "uuid": uuid.UUID(int=1),
        "whole decimal": decimal.Decimal("3"),
        "decimal": decimal.Decimal("3.25"),
        "enum": Color.RED,
        "int enum": Size.BIG,
        "path": pathlib.PurePosixPath("/a/b"),
        "bytes": b"abc",
    }
    assert jsonable_encoder(value) == {
        "datetime": "2024-05-01T12:30:05+00:00",
        "date": "2024-05-01",
        "time": "12:30:00",
        "timedelta": 90.0,
        "uuid": "00000000-0000-0000-0000-000000000001",
        "whole decimal": 3,
        "decimal": 3.25,
        "enum": "red",
        "int enum": 3,
        "path": "/a/b",
        "bytes": "abc",
    }


def test_containers_become_dicts_and_lists_recursively():
    value = {
        "set": {1},
        "frozenset": frozenset({2}),
        "tuple": (1, Color.RED),
        "deque": deque([uuid.UUID(int=2)]),
        "generator": (i * 2 for i in range(3)),
        "nested": [{"when": datetime.date(2020, 1, 2)}],
        Color.RED: "enum key",
    }
    encoded = jsonable_encoder(value)
    assert encoded == {
        "set": [1],
        "frozenset": [2],
        "tuple": [1, "red"],
        "deque": ["00000000-0000-0000-0000-000000000002"],
        "generator": [0, 2, 4],
        "nested": [{"when": "2020-01-02"}],
        "red": "enum key",
    }
    json.dumps(encoded)  # and json accepts it as it is


def test_dataclasses_are_dicts_of_their_fields_with_include_exclude_and_exclude_none():
    point = Point(1, None, datetime.date(2021, 2, 3))
    assert jsonable_encoder(point) == {"x": 1, "label": None, "when": "2021-02-03"}
    assert jsonable_encoder(point, exclude_none=True) == {"x": 1, "when": "2021-02-03"}
    assert jsonable_encoder(point, include={"x"}) == {"x": 1}
    assert jsonable_encoder(point, exclude={"when"}) == {"x": 1, "label": None}


def test_pydantic_models_are_dumped_in_json_mode_with_fastapis_options():
    item = Item(title="towel", timestamp=datetime.datetime(2024, 1, 1, 8, 0))
    assert jsonable_encoder(item) == {
        "title": "towel",
        "timestamp": "2024-01-01T08:00:00",
        "description": None,
        "internalName": "x",
    }
    assert jsonable_encoder(item, by_alias=False)["internal_name"] == "x"
    assert jsonable_encoder(item, exclude_unset=True) == {
        "title": "towel",
        "timestamp": "2024-01-01T08:00:00",
    }
    assert jsonable_encoder(item, exclude_none=True, include={"title", "description"}) == {
        "title": "towel"
    }
    # the flags reach nested values; include/exclude name top-level fields only
    assert jsonable_encoder([item], exclude_none=True)[0] == {
        "title": "towel",
        "timestamp": "2024-01-01T08:00:00",
        "internalName": "x",
    }
    assert jsonable_encoder({"a": {"b": 1, "c": None}}, include={"a"}, exclude_none=True) == {
        "a": {"b": 1}
    }


def test_custom_encoder_is_tried_first_and_follows_the_mro():
    class Special(int):
        pass

    assert jsonable_encoder({"a": Special(4)}, custom_encoder={int: lambda v: f"int {v}"}) == {
        "a": "int 4"
    }


def test_plain_objects_fall_back_to_their_attributes():
    class Plain:
        def __init__(self) -> None:
            self.a = datetime.date(2020, 1, 1)

    assert jsonable_encoder(Plain()) == {"a": "2020-01-01"}


def test_what_cannot_be_encoded_is_a_value_error_naming_the_type():
    with pytest.raises(ValueError, match="cannot encode a object"):
        jsonable_encoder(object())


def test_sqlalchemy_state_keys_are_skipped_unless_asked():
    assert jsonable_encoder({"_sa_instance_state": 1, "a": 2}) == {"a": 2}
    assert jsonable_encoder({"_sa_x": 1}, sqlalchemy_safe=False) == {"_sa_x": 1}
