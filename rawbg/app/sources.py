"""Planning a parameter read from the request: where from, under which name, checked how.

The places are the path, the query, a header, a cookie and the JSON body.

`plan_value` runs once per parameter, at registration, for every parameter
that is not a dependency, the `Request` or `BackgroundTasks`. It decides,
as FastAPI does:

1. the location: the marker's (``Query()``, ``Header()``, ...); else the path
   if the route's template has ``{name}``; else, by FastAPI's own rule
   (`rawbg.app.validation.is_complex`), the JSON body for a model, a mapping,
   a sequence (a bare ``list[str]`` too) or a dataclass, and the query for
   anything else (a URL, an e-mail address...). A pydantic model with
   ``Query()``, ``Header()`` or ``Cookie()`` is a parameter model, its fields
   read one by one (`rawbg.app.param_models`);
2. the key: the ``alias``, else the name (a header's name with ``_`` as
   ``-``, unless ``convert_underscores=False``);
3. the validator: rawbg's own (`rawbg.app.validation.build`) when it knows the
   type and every check; pydantic's when it does not and pydantic is
   installed (`rawbg.app.pydantic_support`); otherwise `RouteDefinitionError`,
   naming the parameter and what to do. Nothing is ever silently dropped.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from rawbg.app.converters import to_str
from rawbg.app.param_models import ParamModel, model_of, plan_model
from rawbg.app.pydantic_support import load_pydantic, missing_pydantic, pydantic_validator
from rawbg.app.validation import (
    Refusal,
    Unsupported,
    Validator,
    build,
    is_complex,
    is_scalar,
    is_scalar_sequence,
    strip_optional,
)
from rawbg.errors import HTTPException, RequestValidationError, RouteDefinitionError
from rawbg.params import NO_CONSTRAINTS, UNSET, Body, Constraints, Header, Param, Required
from rawbg.requests import InvalidJSON, decode_json

SEQUENCES = (list, set, frozenset, tuple)

if TYPE_CHECKING:
    from rawbg.requests import Request

logger = logging.getLogger("rawbg.sources")

EMPTY: Any = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class ValuePlan:
    """How one parameter's value is read from the request."""

    location: str  # "path", "query", "header", "cookie" or "body": also the 422's loc[0]
    key: str  # the name it is read under
    validate: Validator
    #: the value is the string as it arrived (a plain ``str``, no checks): no call at all
    as_is: bool
    many: bool  # every repeated query key or header, as a list
    default_factory: Callable[[], Any] | None
    embed: bool  # Body(embed=True)
    constraints: Constraints
    via_pydantic: bool
    #: a parameter model (``Annotated[Model, Query()]``): its fields, read one by one
    model: ParamModel | None = None
    # What the OpenAPI document describes (`rawbg.app.openapi`); unused per request
    #: the parameter's type as declared (Any without an annotation)
    annotation: Any = Any
    #: the ``Query()``-like marker as written, or None
    marker: Param | None = None
    #: the other ``Annotated`` metadata (annotated_types' or pydantic's)
    metadata: tuple[Any, ...] = ()


def plan_value(
    *,
    where: str,
    name: str,
    annotation: Any,
    default: Any,
    marker: Param | None,
    in_annotated: bool,
    metadata: list[Any],
    path_params: frozenset[str],
) -> tuple[ValuePlan, Any]:
    """The `ValuePlan` of one parameter, and its default (`inspect.Parameter.empty`: required)."""
    default_factory = None
    if marker is not None:
        if marker.default is not UNSET and marker.default is not Required:
            if in_annotated:  # `Annotated[str, Query("x")]`: FastAPI refuses it too
                raise RouteDefinitionError(
                    f"{where}: give the default with `= value`, not inside "
                    f"{type(marker).__name__}(...) in Annotated"
                )
            default = marker.default
        default_factory = marker.default_factory
    described = Any if annotation is EMPTY else annotation  # FastAPI describes no type as any
    if annotation is EMPTY:
        annotation = Any if isinstance(marker, Body) else str
    location = _location(name, annotation, marker, path_params)
    if marker is None and location == "body" and _bare_sequence(annotation):
        raise RouteDefinitionError(
            f"{where}: a bare {annotation!r} without a marker is, to FastAPI, a list of "
            "uploaded files; say what it holds (list[str] for a JSON body) or mark it: "
            "Body(), Query() or File()"
        )
    key = _key(name, marker)
    if location in ("query", "header", "cookie"):
        model = model_of(annotation)
        if model is not None:
            return _plan_param_model(where, model, annotation, marker, default, default_factory)
        sequence = is_scalar_sequence(annotation) or strip_optional(annotation)[0] in SEQUENCES
        if location == "query" and is_complex(annotation) and not sequence:
            raise RouteDefinitionError(
                f"{where}: a query parameter is one value or a list of values, not "
                f"{annotation!r}; a pydantic model of query parameters is "
                "Annotated[Model, Query()] (as in FastAPI, which refuses this too)"
            )
    if location == "path":
        if key not in path_params:
            raise RouteDefinitionError(
                f"{where} is declared with Path() but the route's path has no {{{key}}}"
            )
        default, default_factory = EMPTY, None  # a matched route always has its segments
    many = location in ("query", "header") and (
        is_scalar_sequence(annotation) or strip_optional(annotation)[0] in SEQUENCES
    )
    if location in ("path", "cookie") and not is_scalar(annotation):
        raise RouteDefinitionError(
            f"{where} is a {location} parameter, one string: annotate it as str, int, float, "
            f"bool, a date or time, UUID, Decimal, an Enum or a Literal, not {annotation!r}"
        )
    constraints = marker.constraints if marker is not None else NO_CONSTRAINTS
    options = marker.pydantic_options if marker is not None else {}
    validate, via_pydantic = value_validator(where, annotation, metadata, constraints, options)
    embed = isinstance(marker, Body) and marker.embed
    as_is = validate is to_str and location != "body"  # a path, query... value is a str
    plan = ValuePlan(
        location,
        key,
        validate,
        as_is,
        many,
        default_factory,
        embed,
        constraints,
        via_pydantic,
        annotation=described,
        marker=marker,
        metadata=tuple(metadata),
    )
    return plan, default


def _location(name: str, annotation: Any, marker: Param | None, path_params: frozenset[str]) -> str:
    """Where FastAPI reads the parameter: its marker's place; a ``{name}`` of the path;
    the body for a model, a mapping, a sequence or a dataclass; else the query."""
    if marker is not None:
        return marker.source
    if name in path_params:
        return "path"
    return "body" if is_complex(annotation) else "query"


def _bare_sequence(annotation: Any) -> bool:
    """``list``, ``set``, ``Sequence``... with no item type (or such ``| None``)."""
    inner, _ = strip_optional(annotation)
    return (
        isinstance(inner, type)
        and not typing.get_args(inner)
        and issubclass(inner, (list, set, frozenset, tuple, collections.abc.Sequence))
        and not issubclass(inner, (str, bytes))
    )


def _plan_param_model(
    where: str,
    model: type,
    annotation: Any,
    marker: Param | None,
    default: Any,
    default_factory: Callable[[], Any] | None,
) -> tuple[ValuePlan, Any]:
    """A query, header or cookie parameter model (`rawbg.app.param_models`)."""
    assert marker is not None  # a model without a marker is the body (`_location`)
    if marker.constraints.given() or marker.pydantic_options or marker.alias:
        raise RouteDefinitionError(
            f"{where}: {type(marker).__name__}() of a parameter model takes no checks and no "
            "alias: declare them on the model's fields"
        )
    pydantic = load_pydantic()
    if pydantic is None:  # a model class was made, so pydantic is there; kept for mypy
        raise RouteDefinitionError(f"{where}: {missing_pydantic('a parameter model')}")
    convert = marker.convert_underscores if isinstance(marker, Header) else True
    model_plan = plan_model(
        model, annotation=annotation, location=marker.source, convert_underscores=convert
    )
    validate = pydantic_validator(pydantic, annotation, NO_CONSTRAINTS, {})
    plan = ValuePlan(
        marker.source,
        marker.source,
        validate,
        False,
        False,
        default_factory,
        False,
        NO_CONSTRAINTS,
        True,
        model_plan,
        annotation=annotation,
        marker=marker,
    )
    return plan, default


def _key(name: str, marker: Param | None) -> str:
    if marker is not None and marker.alias:
        return marker.alias
    if isinstance(marker, Header) and marker.convert_underscores:
        return name.replace("_", "-")
    return name


def value_validator(
    where: str,
    annotation: Any,
    metadata: list[Any],
    constraints: Constraints,
    options: dict[str, Any],
) -> tuple[Validator, bool]:
    """rawbg's own validator if it can; pydantic's if it cannot and pydantic is installed."""
    target = Annotated[(annotation, *metadata)] if metadata else annotation
    if options:
        reason = f"{', '.join(sorted(options))} need pydantic"
        refused = Unsupported(reason, Refusal.NEEDS_PYDANTIC)
    else:
        try:
            return build(target, constraints, own_dataclasses=False), False
        except Unsupported as exc:
            refused = exc
    if refused.refusal is Refusal.UNKNOWN_METADATA:
        raise RouteDefinitionError(
            f"{where}: {refused.reason}; rawbg honours Depends, Query, Path, Header, Cookie, "
            "Body, annotated_types' constraints and (with pydantic installed) pydantic's own"
        )
    if refused.refusal is Refusal.MISTAKE:
        raise RouteDefinitionError(f"{where}: {refused.reason}")
    pydantic = load_pydantic()
    if pydantic is None:
        if refused.refusal is Refusal.DATACLASS:  # rawbg's own loader, then
            try:
                return build(target, constraints, own_dataclasses=True), False
            except Unsupported as exc:
                refused = exc
        if refused.refusal is Refusal.NEEDS_PYDANTIC:
            raise RouteDefinitionError(f"{where}: {missing_pydantic(refused.reason)}")
        raise RouteDefinitionError(_nothing_can_supply(where, annotation, refused.reason))
    try:
        return pydantic_validator(pydantic, target, constraints, options), True
    except Exception as exc:  # pydantic's schema errors: the annotation is the user's mistake
        first_line = str(exc).partition("\n")[0]
        raise RouteDefinitionError(
            _nothing_can_supply(
                where, annotation, f"{refused.reason}, nor can pydantic: {first_line}"
            )
        ) from None


def _nothing_can_supply(where: str, annotation: Any, reason: str) -> str:
    return (
        f"{where}: nothing can supply a value of type {annotation!r} ({reason}). Path, query, "
        "header and cookie parameters may be str, int, float, bool, Decimal, UUID, a date or "
        "time, an Enum, a Literal or a list of those; a JSON body a dict, list or dataclass "
        "(or a pydantic model, with pip install 'rawbg[pydantic]'); anything else needs "
        "Depends(...)"
    )


# --- per request ------------------------------------------------------------------


def missing(loc: list[Any]) -> dict[str, Any]:
    """The 422 entry of a required value that is not there."""
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}


def located(prefix: list[Any], errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`errors` with their ``loc`` under `prefix` (``["query", "q"]``), inputs JSON-safe."""
    placed = []
    for error in errors:
        entry = {**error, "loc": [*prefix, *error["loc"]]}
        if isinstance(entry["input"], (bytes, bytearray)):
            entry["input"] = bytes(entry["input"]).decode("utf-8", "replace")
        placed.append(entry)
    return placed


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters ignored."""
    media_type = content_type.partition(";")[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def read_body(
    request: Request, *, strict_content_type: bool = True, raw: bytes | None = None
) -> Any:
    """The body for body parameters, read as FastAPI reads it.

    None when empty; the parsed JSON when the ``Content-Type`` says JSON
    (``application/json``, ``application/*+json``), or when there is no
    ``Content-Type`` at all and not `strict_content_type`; otherwise the raw
    bytes, which fail validation as "not a dictionary" (a form posted to a
    JSON endpoint, ``text/plain``, no ``Content-Type`` under FastAPI's default
    ``strict_content_type``). Invalid JSON is a 422 ``json_invalid``; bytes
    that are not text in any JSON encoding are a 400. `raw`: the body as a
    custom route's request read it, instead of as received.
    """
    if raw is None:
        raw = request.body_bytes
    if not raw:
        return None
    content_type = request.headers.get("content-type")
    if content_type is None:
        if strict_content_type:
            return raw
    elif not is_json_media_type(content_type):
        return raw
    try:
        return decode_json(raw)
    except InvalidJSON as exc:
        cause = exc.__cause__
        if isinstance(cause, json.JSONDecodeError):
            loc: list[Any] = ["body", cause.pos]
            error, received = cause.msg, cause.doc
        elif cause is None:  # valid JSON, nested deeper than the bound
            loc, error, received = ["body"], str(exc), None
        else:  # not text in any JSON encoding
            raise HTTPException(400, "There was an error parsing the body") from None
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": loc,
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error},
                }
            ],
            body=received,
        ) from None
    except Exception:  # a failing JSON library
        logger.info("a JSON body could not be parsed", exc_info=True)
        raise HTTPException(400, "There was an error parsing the body") from None
