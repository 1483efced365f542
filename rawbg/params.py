"""Turning strings from the path and the query, and JSON from the body, into typed values.

`classify_annotation` looks at a parameter's annotation once, when its route is
registered, and returns how to convert it; a request only calls the converter.
A converter raises `ConversionError`, which the resolver turns into one entry of
a 422's ``detail`` list, in the shape FastAPI (pydantic) uses.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Converter = Callable[[str], Any]


class ConversionError(ValueError):
    """Raised by a converter; `type` and `msg` become the 422 entry."""

    def __init__(self, type_: str, msg: str) -> None:
        super().__init__(msg)
        self.type = type_
        self.msg = msg


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def to_str(raw: str) -> str:
    return raw


def to_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConversionError(
            "int_parsing", "Input should be a valid integer, unable to parse string as an integer"
        ) from None


def to_float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConversionError(
            "float_parsing", "Input should be a valid number, unable to parse string as a number"
        ) from None


def to_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConversionError(
        "bool_parsing", "Input should be a valid boolean, unable to interpret input"
    )


def to_uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ConversionError("uuid_parsing", "Input should be a valid UUID") from None


_SCALARS: dict[Any, Converter] = {
    str: to_str,
    int: to_int,
    float: to_float,
    bool: to_bool,
    uuid.UUID: to_uuid,
    Any: to_str,
}


def _enum_converter(cls: type[enum.Enum]) -> Converter:
    allowed = ", ".join(repr(str(member.value)) for member in cls)

    def convert(raw: str) -> enum.Enum:
        for member in cls:
            if str(member.value) == raw:
                return member
        raise ConversionError("enum", f"Input should be {allowed}")

    return convert


@dataclass(frozen=True, slots=True)
class Scalar:
    """A value read from a string: a path segment or query values."""

    convert: Converter
    optional: bool  # None is an accepted value (``X | None``)
    many: bool  # ``list[X]``: every repeated query key


@dataclass(frozen=True, slots=True)
class Body:
    """A value read from the JSON body: a dict, a list or a dataclass."""

    annotation: Any
    optional: bool


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        if len(members) == 1:
            return members[0], optional
        return annotation, optional
    return annotation, False


def scalar_converter(annotation: Any) -> Converter | None:
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_converter(annotation)
    return None


def classify_annotation(annotation: Any) -> Scalar | Body | None:
    """How a value of this annotation is read, or None if it cannot be read at all."""
    if annotation is typing.Any or annotation is object:
        return Scalar(to_str, optional=False, many=False)
    inner, optional = _strip_optional(annotation)
    convert = scalar_converter(inner)
    if convert is not None:
        return Scalar(convert, optional=optional, many=False)
    origin = typing.get_origin(inner)
    if origin in (list, typing.List, set, tuple, frozenset):  # noqa: UP006
        args = typing.get_args(inner)
        item = scalar_converter(args[0]) if len(args) == 1 else None
        if item is not None and origin is list:
            return Scalar(item, optional=optional, many=True)
        return Body(inner, optional)
    if inner in (dict, list) or origin is dict:
        return Body(inner, optional)
    if dataclasses.is_dataclass(inner):
        return Body(inner, optional)
    return None


def load_body_value(annotation: Any, value: Any, loc: list[Any]) -> Any:
    """Check a JSON value against a body annotation, building dataclasses.

    Raises `BodyValueError` with a list of 422 entries.
    """
    errors: list[dict[str, Any]] = []
    result = _load(annotation, value, loc, errors)
    if errors:
        raise BodyValueError(errors)
    return result


class BodyValueError(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def error_entry(loc: list[Any], type_: str, msg: str, value: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": type_, "loc": loc, "msg": msg}
    if value is not None:
        entry["input"] = value
    return entry


def _load(annotation: Any, value: Any, loc: list[Any], errors: list[dict[str, Any]]) -> Any:
    inner, optional = _strip_optional(annotation)
    if value is None:
        if optional or inner is Any:
            return None
        errors.append(
            error_entry(
                loc,
                "missing" if not loc[1:] else "none_forbidden",
                "Field required" if not loc[1:] else "Input should not be None",
            )
        )
        return None
    origin = typing.get_origin(inner)
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        if not isinstance(value, dict):
            errors.append(error_entry(loc, "dict_type", "Input should be a valid dictionary"))
            return None
        hints = typing.get_type_hints(inner)
        kwargs = {}
        for field in dataclasses.fields(inner):
            if field.name in value:
                kwargs[field.name] = _load(
                    hints.get(field.name, Any), value[field.name], [*loc, field.name], errors
                )
            elif (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                errors.append(error_entry([*loc, field.name], "missing", "Field required"))
        if errors:
            return None
        return inner(**kwargs)
    if inner is dict or origin is dict:
        if not isinstance(value, dict):
            errors.append(error_entry(loc, "dict_type", "Input should be a valid dictionary"))
        return value
    if inner is list or origin is list:
        if not isinstance(value, list):
            errors.append(error_entry(loc, "list_type", "Input should be a valid list"))
            return value
        args = typing.get_args(inner)
        if args:
            return [_load(args[0], item, [*loc, i], errors) for i, item in enumerate(value)]
        return value
    if inner is bool:
        if not isinstance(value, bool):
            errors.append(error_entry(loc, "bool_type", "Input should be a valid boolean"))
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(error_entry(loc, "int_type", "Input should be a valid integer"))
        return value
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(error_entry(loc, "float_type", "Input should be a valid number"))
            return value
        return float(value)
    if inner is str:
        if not isinstance(value, str):
            errors.append(error_entry(loc, "string_type", "Input should be a valid string"))
        return value
    convert = scalar_converter(inner)
    if convert is not None and isinstance(value, str):
        try:
            return convert(value)
        except ConversionError as exc:
            errors.append(error_entry(loc, exc.type, exc.msg))
            return None
    return value
