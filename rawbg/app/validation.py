"""Validators for whole annotations, built once at registration: rawbg's own, without pydantic.

`build(annotation, constraints)` returns a `Validator`: a function from the
value as it arrived (a string, a list of strings, a JSON value) to the typed
value, which raises `Invalid` with every 422 entry (``loc`` relative to the
value: ``[0]`` for a list's first item, ``["price"]`` for a field). It knows
str, int, float, bool, Decimal, UUID, datetime, date, time, timedelta, Enum,
Literal, None, unions (``X | None``), list, set, frozenset, tuple, dict,
dataclasses (field by field), ``Annotated`` with annotated_types' constraints,
and `Constraints` (``min_length``, ``pattern``, ``gt``, ...), all worded as
pydantic v2 words its errors.

What it does not know (pydantic models, pydantic's own metadata, other
classes) raises `Unsupported` at registration: the planner then hands that
parameter to pydantic if it is installed (`rawbg.app.pydantic_support`), or
refuses the route.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import dataclasses
import datetime
import decimal
import enum
import inspect
import re
import types
import typing
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from rawbg.app.converters import (
    Invalid,
    invalid,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_float,
    to_int,
    to_str,
    to_time,
    to_timedelta,
    to_uuid,
)
from rawbg.params import NO_CONSTRAINTS, Constraints

Validator = Callable[[Any], Any]
#: a constraint's check, ``check(result, value)``: raises `Invalid` about `value` if
#: `result` (its conversion) breaks the constraint
Check = Callable[[Any, Any], None]

_INT_SIZE_MSG = "Unable to parse input string as an integer, exceeded maximum size"


class Refusal(enum.Enum):
    """Why `build` refused an annotation, which says what the planner does next."""

    #: pydantic's to check (a model, pydantic metadata, a pydantic-only option)
    NEEDS_PYDANTIC = "needs pydantic"
    #: a dataclass: pydantic's when installed (as FastAPI), else rawbg's own loader
    DATACLASS = "a dataclass"
    #: a type rawbg does not know: pydantic may
    UNKNOWN_TYPE = "unknown type"
    #: metadata nobody would honour: never handed on, never dropped
    UNKNOWN_METADATA = "unknown metadata"
    #: the declaration is wrong (a check that cannot apply, a bad pattern)
    MISTAKE = "mistake"


class Unsupported(Exception):
    """Raised by `build` for an annotation its own validator cannot check, with the `Refusal`."""

    def __init__(self, reason: str, refusal: Refusal) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


SCALARS: dict[Any, Validator] = {
    str: to_str,
    int: to_int,
    float: to_float,
    bool: to_bool,
    decimal.Decimal: to_decimal,
    uuid.UUID: to_uuid,
    datetime.datetime: to_datetime,
    datetime.date: to_date,
    datetime.time: to_time,
    datetime.timedelta: to_timedelta,
}


def _identity(value: Any) -> Any:
    return value


def is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is typing.Union or origin is types.UnionType


def strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (it, False)."""
    if is_union(annotation):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        if len(members) == 1:
            return members[0], optional
        return typing.Union[tuple(members)], optional  # noqa: UP007 - built from a tuple
    return annotation, False


def is_scalar(annotation: Any) -> bool:
    """A type read from one string: what a parameter without a marker reads from the query."""
    inner, _ = strip_optional(annotation)
    if typing.get_origin(inner) is Annotated:
        inner = typing.get_args(inner)[0]
    if inner in SCALARS or inner is Any or inner is object:
        return True
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return True
    if typing.get_origin(inner) is Literal:
        return True
    if is_union(inner):
        return all(is_scalar(member) for member in typing.get_args(inner))
    return False


#: what FastAPI takes for a sequence (fastapi._compat): read from the body without a marker
_FASTAPI_SEQUENCES = (list, tuple, set, frozenset, collections.deque, collections.abc.Sequence)


def is_complex(annotation: Any) -> bool:
    """Whether FastAPI reads a parameter of this type, declared without a marker, from the body.

    FastAPI's own rule, so that rawbg puts every parameter where FastAPI
    does: a pydantic model, a mapping, a sequence (not str or bytes), a
    dataclass, or a union with one of those is the body; anything else (a
    URL, an e-mail address, a scalar, a class pydantic validates from a
    string) is the query.
    """
    if is_union(annotation):
        return any(is_complex(member) for member in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return is_complex(typing.get_args(annotation)[0])
    return (
        _complex_kind(annotation)
        or _complex_kind(origin)
        or hasattr(origin, "__pydantic_core_schema__")
        or hasattr(origin, "__get_pydantic_core_schema__")
    )


def _complex_kind(kind: Any) -> bool:
    if dataclasses.is_dataclass(kind):
        return True
    if not isinstance(kind, type) or issubclass(kind, (str, bytes)):
        return False
    return issubclass(kind, (collections.abc.Mapping, *_FASTAPI_SEQUENCES)) or _is_pydantic_class(
        kind
    )


def is_scalar_sequence(annotation: Any) -> bool:
    """``list[X]`` (or set, tuple) of scalars: read from every repeated query key."""
    inner, _ = strip_optional(annotation)
    origin = typing.get_origin(inner)
    if origin not in (list, set, frozenset, tuple):
        return False
    args = [a for a in typing.get_args(inner) if a is not Ellipsis]
    return all(is_scalar(a) for a in args)


def expected_list(values: list[Any]) -> str:
    """pydantic's way of listing choices: ``'a', 'b' or 'c'``."""
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def build(
    annotation: Any,
    constraints: Constraints = NO_CONSTRAINTS,
    *,
    own_dataclasses: bool = True,
) -> Validator:
    """The validator of `annotation`, with `constraints` applied; `Unsupported` if unknown.

    ``own_dataclasses=False`` refuses dataclasses, so that the caller hands
    them to pydantic when it is installed.
    """
    return _Builder(own_dataclasses).build(annotation, constraints)


class _Builder:
    def __init__(self, own_dataclasses: bool) -> None:
        self.own_dataclasses = own_dataclasses
        self.dataclasses: dict[type, Validator] = {}

    def build(self, annotation: Any, constraints: Constraints) -> Validator:
        if typing.get_origin(annotation) is Annotated:
            inner, *metadata = typing.get_args(annotation)
            return self.build(inner, constraints.merged(metadata_constraints(metadata)))
        if is_union(annotation):
            inner, optional = strip_optional(annotation)
            validate = self.build(inner, constraints) if not is_union(inner) else None
            if validate is None:
                validate = self._union(typing.get_args(inner), constraints)
            return _or_none(validate) if optional else validate
        checked = self._type(annotation, constraints)
        return checked

    def _type(self, annotation: Any, constraints: Constraints) -> Validator:
        scalar = SCALARS.get(annotation)
        if scalar is not None:
            return _constrained(scalar, constraints, annotation)
        if annotation is Any or annotation is object or annotation is inspect.Parameter.empty:
            return _identity
        if annotation is None or annotation is type(None):
            return _none
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return _constrained(_enum(annotation), constraints, annotation)
        origin = typing.get_origin(annotation)
        if origin is Literal:
            return _literal(typing.get_args(annotation))
        if annotation in (list, set, frozenset, tuple, dict):
            origin, args = annotation, ()
        else:
            args = typing.get_args(annotation)
        if origin in (list, set, frozenset):
            item = self.build(args[0], NO_CONSTRAINTS) if args else _identity
            return _constrained(_sequence(origin, item), constraints, origin)
        if origin is tuple:
            return _constrained(self._tuple(args), constraints, tuple)
        if origin is dict:
            keys = self.build(args[0], NO_CONSTRAINTS) if args else _identity
            values = self.build(args[1], NO_CONSTRAINTS) if args else _identity
            return _constrained(_mapping(keys, values), constraints, dict)
        if isinstance(annotation, type) and _is_pydantic_class(annotation):
            raise Unsupported(
                f"{annotation.__qualname__} is a pydantic model", Refusal.NEEDS_PYDANTIC
            )
        if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
            if not self.own_dataclasses:
                raise Unsupported(f"{annotation.__qualname__} is a dataclass", Refusal.DATACLASS)
            if constraints.given():
                raise Unsupported(
                    f"{', '.join(sorted(constraints.given()))} cannot apply to a dataclass",
                    Refusal.MISTAKE,
                )
            return self._dataclass(annotation)
        raise Unsupported(
            f"rawbg cannot validate a value of type {annotation!r}", Refusal.UNKNOWN_TYPE
        )

    def _union(self, members: tuple[Any, ...], constraints: Constraints) -> Validator:
        tagged = [(_tag(m), self.build(m, constraints)) for m in members]
        exact = {m: v for m, (_, v) in zip(members, tagged, strict=True) if m in SCALARS}

        def validate(value: Any) -> Any:
            same_type = exact.get(type(value))
            if same_type is not None:
                return same_type(value)
            errors: list[dict[str, Any]] = []
            for tag, member in tagged:
                try:
                    return member(value)
                except Invalid as exc:
                    errors.extend(exc.under(tag))
            raise Invalid(errors)

        return validate

    def _tuple(self, args: tuple[Any, ...]) -> Validator:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = self.build(args[0], NO_CONSTRAINTS) if args else _identity
            return _sequence(tuple, item)
        items = [self.build(a, NO_CONSTRAINTS) for a in args]

        def validate(value: Any) -> tuple[Any, ...]:
            if not isinstance(value, (list, tuple)):
                raise invalid("tuple_type", "Input should be a valid tuple", value)
            errors: list[dict[str, Any]] = []
            result = []
            for index, item in enumerate(items):
                if index >= len(value):
                    errors.append(_missing([index], value))
                    continue
                try:
                    result.append(item(value[index]))
                except Invalid as exc:
                    errors.extend(exc.under(index))
            if len(value) > len(items):
                errors.extend(_too("long", "Tuple", len(items), len(value), value).errors)
            if errors:
                raise Invalid(errors)
            return tuple(result)

        return validate

    def _dataclass(self, cls: type) -> Validator:
        known = self.dataclasses.get(cls)
        if known is not None:
            return known
        fields: list[tuple[str, Validator | None, Any]] = []

        def validate(value: Any) -> Any:
            if isinstance(value, cls):
                return value
            if not isinstance(value, dict):
                raise invalid(
                    "dataclass_type",
                    f"Input should be a dictionary or an instance of {cls.__name__}",
                    value,
                    {"class_name": cls.__name__},
                )
            kwargs: dict[str, Any] = {}
            errors: list[dict[str, Any]] = []
            for name, field_validator, required in fields:
                if name not in value:
                    if required:
                        errors.append(_missing([name], value))
                    continue
                try:
                    kwargs[name] = field_validator(value[name]) if field_validator else value[name]
                except Invalid as exc:
                    errors.extend(exc.under(name))
            if errors:
                raise Invalid(errors)
            return cls(**kwargs)

        self.dataclasses[cls] = validate  # before the fields: a dataclass may contain itself
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError as exc:
            raise Unsupported(
                f"cannot resolve the fields of {cls.__qualname__}: {exc}", Refusal.MISTAKE
            ) from exc
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            required = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            fields.append(
                (field.name, self.build(hints.get(field.name, Any), NO_CONSTRAINTS), required)
            )
        return validate


def _is_pydantic_class(cls: type) -> bool:
    return hasattr(cls, "__pydantic_validator__") or hasattr(cls, "__pydantic_fields__")


def _tag(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _missing(loc: list[Any], value: Any) -> dict[str, Any]:
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": value}


def _none(value: Any) -> None:
    if value is not None:
        raise invalid("none_required", "Input should be None", value)


def _or_none(validate: Validator) -> Validator:
    def optional(value: Any) -> Any:
        return None if value is None else validate(value)

    return optional


def _enum(cls: type[enum.Enum]) -> Validator:
    members = list(cls)
    by_value = {m.value: m for m in members}
    by_number = {m.value: m for m in members if type(m.value) in (int, float)}
    by_float = any(type(m.value) is float for m in members)
    expected = expected_list([m.value for m in members])

    def validate(value: Any) -> enum.Enum:
        if isinstance(value, cls):
            return value
        with contextlib.suppress(KeyError, TypeError):  # TypeError: unhashable
            return by_value[value]
        found = None
        if by_number and isinstance(value, str):  # lax: "2" for an int-valued member
            try:
                number = to_float(value) if by_float else to_int(value)
            except Invalid:
                number = None  # not a number: the enum's own error below
            if number is not None and abs(number) >= 2**63 and not by_float:
                raise invalid("int_parsing_size", _INT_SIZE_MSG, value)
            found = by_number.get(number)
        if found is None:
            raise invalid("enum", f"Input should be {expected}", value, {"expected": expected})
        return found

    return validate


def _literal(choices: tuple[Any, ...]) -> Validator:
    allowed = {(type(c), c): c for c in choices}
    expected = expected_list(list(choices))

    def validate(value: Any) -> Any:
        try:
            found = allowed.get((type(value), value))
        except TypeError:  # unhashable: a list or an object
            found = None
        if found is None and not (isinstance(value, enum.Enum) and value in choices):
            raise invalid(
                "literal_error", f"Input should be {expected}", value, {"expected": expected}
            )
        return value if found is None else found

    return validate


_SEQUENCE_TYPES: dict[type, tuple[str, str]] = {
    list: ("list_type", "Input should be a valid list"),
    set: ("set_type", "Input should be a valid set"),
    frozenset: ("frozen_set_type", "Input should be a valid frozenset"),
    tuple: ("tuple_type", "Input should be a valid tuple"),
}


def _sequence(kind: type, item: Validator) -> Validator:
    error_type, message = _SEQUENCE_TYPES[kind]

    def validate(value: Any) -> Any:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise invalid(error_type, message, value)
        if item is _identity:
            return kind(value)
        result = []
        errors: list[dict[str, Any]] = []
        for index, element in enumerate(value):
            try:
                result.append(item(element))
            except Invalid as exc:
                errors.extend(exc.under(index))
        if errors:
            raise Invalid(errors)
        return result if kind is list else kind(result)

    return validate


def list_of(item: Validator) -> Validator:
    """A validator of a list, each element checked by `item` (its errors under its index)."""
    return _sequence(list, item)


def _mapping(keys: Validator, values: Validator) -> Validator:
    def validate(value: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise invalid("dict_type", "Input should be a valid dictionary", value)
        if keys is _identity and values is _identity:
            return value
        result = {}
        errors: list[dict[str, Any]] = []
        for key, element in value.items():
            new_key = key
            try:
                new_key = keys(key)
            except Invalid as exc:
                errors.extend(exc.under(key, "[key]"))
            try:
                result[new_key] = values(element)
            except Invalid as exc:
                errors.extend(exc.under(key))
        if errors:
            raise Invalid(errors)
        return result

    return validate


# --- constraints ----------------------------------------------------------------


class _Bound(typing.NamedTuple):
    """One of the ``le``/``lt``/``ge``/``gt`` constraints, as pydantic checks and words it."""

    name: str
    error_type: str
    words: str
    holds: Callable[[Any, Any], bool]


# in pydantic's order of checking: the first that fails is the one reported
_BOUNDS = (
    _Bound("le", "less_than_equal", "less than or equal to", lambda v, b: v <= b),
    _Bound("lt", "less_than", "less than", lambda v, b: v < b),
    _Bound("ge", "greater_than_equal", "greater than or equal to", lambda v, b: v >= b),
    _Bound("gt", "greater_than", "greater than", lambda v, b: v > b),
)
_SIZED_NAMES = {list: "List", set: "Set", frozenset: "Set", tuple: "Tuple", dict: "Dictionary"}
_NUMBERS = (int, float, decimal.Decimal, datetime.date, datetime.time, datetime.timedelta)


def _too(which: str, kind: str, limit: int, actual: int, value: Any) -> Invalid:
    word = "item" if limit == 1 else "items"
    relation = "at least" if which == "short" else "at most"
    return invalid(
        f"too_{which}",
        f"{kind} should have {relation} {limit} {word} after validation, not {actual}",
        value,
        {
            "field_type": kind,
            f"{'min' if which == 'short' else 'max'}_length": limit,
            "actual_length": actual,
        },
    )


def _constrained(validate: Validator, constraints: Constraints, kind: Any) -> Validator:
    """`validate`, then the checks of `constraints` that apply to `kind`; others are refused."""
    given = constraints.given()
    if not given:
        return validate
    checks: list[Check] = []
    if kind is str or (isinstance(kind, type) and issubclass(kind, str)):
        allowed = {"min_length", "max_length", "pattern"}
        checks.extend(_string_checks(constraints))
    elif kind in _SIZED_NAMES:
        allowed = {"min_length", "max_length"}
        checks.extend(_size_checks(constraints, _SIZED_NAMES[kind]))
    elif isinstance(kind, type) and issubclass(kind, _NUMBERS):
        allowed = {"gt", "ge", "lt", "le", "multiple_of"}
        checks.extend(_number_checks(constraints, float if kind is float else None))
    else:
        allowed = set()
    refused = set(given) - allowed
    if refused:
        name = getattr(kind, "__name__", repr(kind))
        raise Unsupported(
            f"{', '.join(sorted(refused))} cannot apply to a value of type {name}",
            Refusal.MISTAKE,
        )

    def checked(value: Any) -> Any:
        result = validate(value)
        for check in checks:
            check(result, value)
        return result

    if kind in _SIZED_NAMES and constraints.max_length is not None:
        # pydantic stops reading a sequence at its max_length, before its items' errors
        high, name = constraints.max_length, _SIZED_NAMES[kind]

        def bounded(value: Any) -> Any:
            if isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > high:
                raise _too("long", name, high, len(value), value)
            return checked(value)

        return bounded
    return checked


def _string_checks(constraints: Constraints) -> list[Check]:
    checks: list[Check] = []
    low, high, pattern = constraints.min_length, constraints.max_length, constraints.pattern
    if low is not None:
        word = "character" if low == 1 else "characters"

        def at_least(result: str, value: Any) -> None:
            if len(result) < low:
                raise invalid(
                    "string_too_short",
                    f"String should have at least {low} {word}",
                    value,
                    {"min_length": low},
                )

        checks.append(at_least)
    if high is not None:
        high_word = "character" if high == 1 else "characters"

        def at_most(result: str, value: Any) -> None:
            if len(result) > high:
                raise invalid(
                    "string_too_long",
                    f"String should have at most {high} {high_word}",
                    value,
                    {"max_length": high},
                )

        checks.append(at_most)
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise Unsupported(
                f"pattern {pattern!r} is not a valid regular expression: {exc}", Refusal.MISTAKE
            ) from exc

        def matches(result: str, value: Any) -> None:
            if compiled.search(result) is None:
                raise invalid(
                    "string_pattern_mismatch",
                    f"String should match pattern '{pattern}'",
                    value,
                    {"pattern": pattern},
                )

        checks.append(matches)
    return checks


def _size_checks(constraints: Constraints, kind: str) -> list[Check]:
    checks: list[Check] = []
    low, high = constraints.min_length, constraints.max_length
    if low is not None:

        def at_least(result: Any, value: Any) -> None:
            if len(result) < low:
                raise _too("short", kind, low, len(result), value)

        checks.append(at_least)
    if high is not None:

        def at_most(result: Any, value: Any) -> None:
            if len(result) > high:
                raise _too("long", kind, high, len(result), value)

        checks.append(at_most)
    return checks


def _number_checks(constraints: Constraints, as_type: type | None) -> list[Check]:
    checks: list[Check] = []
    step = constraints.multiple_of
    if step is not None:

        def multiple(result: Any, value: Any) -> None:
            remainder = result % step
            if remainder and abs(remainder - step) > 1e-9 * abs(step):
                raise invalid(
                    "multiple_of",
                    f"Input should be a multiple of {step}",
                    value,
                    {"multiple_of": step},
                )

        checks.append(multiple)
    for bound in _BOUNDS:
        limit = getattr(constraints, bound.name)
        if limit is not None:
            checks.append(_bound_check(bound, limit, as_type=as_type))
    return checks


def _bound_check(bound: _Bound, limit: Any, *, as_type: type | None) -> Check:
    """The check that a result is within `bound` of `limit` (`as_type`: how the result compares)."""
    shown = limit  # in the message as given; in ctx as a float for a float field
    if as_type is not None and isinstance(limit, int):
        limit = as_type(limit)

    holds = bound.holds  # looked up once, not per request

    def check(result: Any, value: Any) -> None:
        if not holds(result, limit):
            raise invalid(
                bound.error_type,
                f"Input should be {bound.words} {shown}",
                value,
                {bound.name: limit},
            )

    return check


_ANNOTATED_TYPES = {
    "Gt": ("gt",),
    "Ge": ("ge",),
    "Lt": ("lt",),
    "Le": ("le",),
    "MultipleOf": ("multiple_of",),
    "MinLen": ("min_length",),
    "MaxLen": ("max_length",),
    "Len": ("min_length", "max_length"),
    "Interval": ("gt", "ge", "lt", "le"),
}


def metadata_constraints(metadata: list[Any]) -> Constraints:
    """Constraints from ``Annotated`` metadata (annotated_types' objects); else `Unsupported`."""
    found: dict[str, Any] = {}
    for item in metadata:
        module = type(item).__module__
        names = _ANNOTATED_TYPES.get(type(item).__name__)
        if module.startswith("annotated_types") and names is not None:
            for name in names:
                value = getattr(item, name, None)
                if value is not None:
                    found[name] = value
            continue
        if isinstance(item, Constraints):
            found.update(item.given())
            continue
        pydantics = module.split(".")[0] in ("pydantic", "annotated_types", "pydantic_core")
        raise Unsupported(
            f"Annotated metadata {item!r} is not something rawbg checks",
            Refusal.NEEDS_PYDANTIC if pydantics else Refusal.UNKNOWN_METADATA,
        )
    return Constraints(**found)
