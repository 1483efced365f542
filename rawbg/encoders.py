"""`jsonable_encoder`: turn a value into one that `json.dumps` accepts, as FastAPI does.

Containers become dicts and lists, recursively; everything else becomes a
string or a number by its type:

====================================  ==========================================
dataclass instance                    a dict of its fields
pydantic model (if pydantic is used)  ``model_dump(mode="json")``
`enum.Enum`                           its value
datetime, date, time                  ISO 8601 (``isoformat()``)
timedelta                             seconds, as a float (FastAPI's choice)
UUID, Path, IP addresses, str         str
Decimal                               int if it is whole, else float
bytes                                 decoded as UTF-8
set, frozenset, tuple, generator      list
anything else                         ``dict(obj)``, then ``vars(obj)``
====================================  ==========================================

`include`, `exclude` (field names) and `by_alias`, `exclude_unset`,
`exclude_defaults`, `exclude_none` apply to the top-level dict or model, the
way FastAPI applies them; `custom_encoder` maps types to functions tried first.
pydantic is never imported here: an object can only be a pydantic model if
something else has imported pydantic already.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import ipaddress
import pathlib
import re
import sys
import types
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any

IncEx = Collection[str] | Mapping[str, Any] | None
Encoder = Callable[[Any], Any]


def _decimal(value: decimal.Decimal) -> int | float:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(value)
    return float(value)


# Leaf types and how each becomes JSON; looked up along the value's MRO.
ENCODERS_BY_TYPE: dict[type[Any], Encoder] = {
    bytes: lambda value: value.decode(),
    datetime.datetime: lambda value: value.isoformat(),
    datetime.date: lambda value: value.isoformat(),
    datetime.time: lambda value: value.isoformat(),
    datetime.timedelta: lambda value: value.total_seconds(),
    decimal.Decimal: _decimal,
    enum.Enum: lambda value: value.value,
    frozenset: list,
    set: list,
    deque: list,
    types.GeneratorType: list,
    ipaddress.IPv4Address: str,
    ipaddress.IPv4Interface: str,
    ipaddress.IPv4Network: str,
    ipaddress.IPv6Address: str,
    ipaddress.IPv6Interface: str,
    ipaddress.IPv6Network: str,
    pathlib.PurePath: str,
    re.Pattern: lambda value: value.pattern,
    uuid.UUID: str,
}

_PLAIN = (str, int, float, type(None))


def jsonable_encoder(
    obj: Any,
    include: IncEx = None,
    exclude: IncEx = None,
    by_alias: bool = True,
    exclude_unset: bool = False,
    exclude_defaults: bool = False,
    exclude_none: bool = False,
    custom_encoder: Mapping[Any, Encoder] | None = None,
    sqlalchemy_safe: bool = True,
) -> Any:
    """`obj` made of dicts, lists, strings, numbers, booleans and None only.

    Raises `ValueError` for an object it cannot make sense of.
    """
    options = _Options(
        by_alias=by_alias,
        exclude_unset=exclude_unset,
        exclude_defaults=exclude_defaults,
        exclude_none=exclude_none,
        custom_encoder=dict(custom_encoder or {}),
        sqlalchemy_safe=sqlalchemy_safe,
    )
    return _encode(obj, _names(include), _names(exclude), options)


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    by_alias: bool
    exclude_unset: bool
    exclude_defaults: bool
    exclude_none: bool
    custom_encoder: dict[Any, Encoder]
    sqlalchemy_safe: bool


def _names(fields: IncEx) -> set[str] | None:
    if fields is None:
        return None
    return set(fields)


def _encode(obj: Any, include: set[str] | None, exclude: set[str] | None, opts: _Options) -> Any:
    if opts.custom_encoder:
        encoder = _lookup(type(obj), opts.custom_encoder)
        if encoder is not None:
            return encoder(obj)
    if isinstance(obj, enum.Enum):  # before str/int: a StrEnum is a str
        return _encode(obj.value, None, None, opts)
    if isinstance(obj, _PLAIN):
        return obj
    model_dump = _pydantic_dump(obj)
    if model_dump is not None:
        dumped = model_dump(
            mode="json",
            include=include,
            exclude=exclude,
            by_alias=opts.by_alias,
            exclude_unset=opts.exclude_unset,
            exclude_defaults=opts.exclude_defaults,
            exclude_none=opts.exclude_none,
        )
        return _encode(dumped, None, None, opts)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encode(dataclasses.asdict(obj), include, exclude, opts)
    if isinstance(obj, dict):
        return {
            _encode(key, None, None, opts): _encode(value, None, None, opts)
            for key, value in obj.items()
            if (include is None or key in include)
            and (exclude is None or key not in exclude)
            and not (opts.exclude_none and value is None)
            and not (opts.sqlalchemy_safe and isinstance(key, str) and key.startswith("_sa"))
        }
    if isinstance(obj, (list, tuple, set, frozenset, deque, types.GeneratorType)):
        return [_encode(item, None, None, opts) for item in obj]
    encoder = _lookup(type(obj), ENCODERS_BY_TYPE)
    if encoder is not None:
        return encoder(obj)
    if type(obj).__module__ in _PYDANTIC_STRINGS:  # HttpUrl, AnyUrl, NameEmail...: as text
        return str(obj)
    return _encode(_as_dict(obj), include, exclude, opts)


#: where pydantic's types that are written as their text live (its URLs and names),
#: found without importing pydantic, as FastAPI's encoder writes them
_PYDANTIC_STRINGS = frozenset({"pydantic.networks", "pydantic_core._pydantic_core"})


def _lookup(cls: type[Any], table: Mapping[Any, Encoder]) -> Encoder | None:
    for base in cls.__mro__:
        encoder = table.get(base)
        if encoder is not None:
            return encoder
    return None


def _pydantic_dump(obj: Any) -> Callable[..., Any] | None:
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(obj, pydantic.BaseModel):
        return None
    dump: Callable[..., Any] = obj.model_dump
    return dump


def _as_dict(obj: Any) -> dict[Any, Any]:
    try:
        return dict(obj)
    except Exception as as_mapping:
        try:
            return dict(vars(obj))
        except TypeError as as_object:
            raise ValueError(
                f"jsonable_encoder cannot encode a {type(obj).__qualname__}: "
                f"dict() says {as_mapping}; vars() says {as_object}"
            ) from as_object
