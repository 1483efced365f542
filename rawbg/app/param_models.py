"""Parameter models: a pydantic model whose fields are query parameters, headers or cookies.

``filters: Annotated[FilterParams, Query()]`` reads each field of the model
from the query string under its own name (its alias), and validates the whole
model at once, as FastAPI does: ``extra="forbid"`` refuses the keys the model
does not name, a 422 entry's ``loc`` is ``["query", field]``, and
``Annotated[Model | None, Query()] = None`` is None when the request names
none of the model's fields. ``Header()`` reads the fields from headers (``_``
as ``-`` unless ``convert_underscores=False``), ``Cookie()`` from cookies.

`plan_model` runs once, at registration (`rawbg.app.sources.plan_value`);
`gather` runs per request and makes the dict the model is validated from.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rawbg.app.pydantic_support import is_model_class
from rawbg.app.validation import is_union

if TYPE_CHECKING:
    from rawbg.requests import Request

#: `gather`'s answer when the request names nothing of a ``Model | None``: its default
ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class ModelField:
    """One field of a parameter model, and where the request carries it."""

    name: str
    #: (the model's name for it, the request's key), the preferred first
    keys: tuple[tuple[str, str], ...]
    many: bool  # a list: every repeated query key or header


@dataclass(frozen=True, slots=True)
class ParamModel:
    """How a parameter model is read from one place of the request."""

    location: str  # "query", "header" or "cookie"
    fields: tuple[ModelField, ...]
    #: the request keys that are the model's own (lower case for headers)
    own_names: frozenset[str]
    #: ``Model | None``: absent (its default) when the request names none of its fields
    nullable: bool
    #: ``extra="allow"`` or ``"forbid"``: a request with only other keys is not absent
    checks_extra: bool
    #: for a 422's ``loc``: a field's name -> the header it is read from, where they differ
    header_keys: dict[str, str]


def model_of(annotation: Any) -> type | None:
    """The pydantic model of ``Model`` or ``Model | None``; None for anything else."""
    inner = annotation
    if is_union(annotation):
        members = typing.get_args(annotation)
        if len(members) != 2 or type(None) not in members:
            return None
        inner = next(member for member in members if member is not type(None))
    return inner if isinstance(inner, type) and is_model_class(inner) else None


def plan_model(
    model: type, *, annotation: Any, location: str, convert_underscores: bool
) -> ParamModel:
    """How to read `model`'s fields from `location` (at registration)."""
    config: Any = getattr(model, "model_config", {})
    by_name = config.get("validate_by_name", config.get("populate_by_name", False))
    by_alias = config.get("validate_by_alias", True) is not False
    convert = location == "header" and convert_underscores
    fields = []
    header_keys: dict[str, str] = {}
    own: set[str] = set()
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        keys = _keys(name, info, convert=convert, by_name=by_name, by_alias=by_alias)
        many = location != "cookie" and _is_sequence(info.annotation)
        fields.append(ModelField(name, keys, many))
        own.update(key.lower() if location == "header" else key for _, key in keys)
        if location == "header" and keys[0][0] != keys[0][1]:
            header_keys[name] = keys[0][1]
    loc_by_alias = config.get("loc_by_alias", True)
    return ParamModel(
        location=location,
        fields=tuple(fields),
        own_names=frozenset(own),
        nullable=annotation is not model,
        checks_extra=config.get("extra") in ("allow", "forbid"),
        header_keys=header_keys if loc_by_alias else {},
    )


def _keys(
    name: str, info: Any, *, convert: bool, by_name: bool, by_alias: bool
) -> tuple[tuple[str, str], ...]:
    """A field's (name in the model, key in the request) pairs, as FastAPI lists them."""
    choice = info.validation_alias
    alias = choice if isinstance(choice, str) else (info.alias or name)
    key = alias.replace("_", "-") if convert and alias == name else alias
    pairs = [(alias, key)]
    choices = getattr(choice, "choices", None)
    if choices is not None and all(isinstance(c, str) for c in choices):
        pairs = [(c, c) for c in choices]  # literal names, underscores included
    if not by_alias:
        return ((name, name.replace("_", "-") if convert else name),)
    if by_name and name not in [a for a, _ in pairs]:
        pairs.append((name, name.replace("_", "-") if convert else name))
    return tuple(pairs)


def _is_sequence(annotation: Any) -> bool:
    if is_union(annotation):
        return any(_is_sequence(member) for member in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, (list, set, frozenset, tuple))


def gather(plan: ParamModel, request: Request) -> Any:
    """The dict the model is validated from, or `ABSENT`: FastAPI's reading, key by key.

    Each field is read under the first of its keys the request has; every
    other key of that place is passed too, so that the model's ``extra``
    policy decides about it (a repeated one as a list).
    """
    received: Any
    header = plan.location == "header"
    if plan.location == "query":
        received = request.query_params
        pairs = received.multi_items()
    elif header:
        received = request.headers
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in received.raw]
    else:
        received = request.cookies
        pairs = list(received.items())
    values: dict[str, Any] = {}
    processed: set[str] = set()
    for field in plan.fields:
        alias, key = next((pair for pair in field.keys if pair[1] in received), field.keys[0])
        value = (received.getlist(key) or None) if field.many else received.get(key)
        if value is not None:
            values[alias] = value
        processed.add(key.lower() if header else key)
        if header:  # a field's own name is not an extra header either
            processed.update(a.lower() for a, k in field.keys if a != k)
    extras: dict[str, list[str]] = {}
    for key, value in pairs:
        if key not in processed:
            extras.setdefault(key, []).append(value)
    values.update({key: found[0] if len(found) == 1 else found for key, found in extras.items()})
    if plan.nullable and not (
        plan.own_names.intersection(key for key, _ in pairs) or (plan.checks_extra and values)
    ):
        return ABSENT
    return values


def relocate(plan: ParamModel, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """422 entries with a header field's ``loc`` naming the header it is read from."""
    if not plan.header_keys:
        return errors
    for error in errors:
        loc = error["loc"]
        if loc and loc[0] in plan.header_keys:
            error["loc"] = [plan.header_keys[loc[0]], *loc[1:]]
    return errors
