"""pydantic, when installed (``rawbg[pydantic]``): models, and what rawbg cannot check.

Nothing here imports pydantic when rawbg is imported. The planner asks
`pydantic_validator` for a parameter rawbg's own validator refused (a
``BaseModel``, a dataclass, pydantic's ``AfterValidator``, ``strict=True``);
that imports pydantic then, at registration, and builds a ``TypeAdapter``
once. Its ``ValidationError`` becomes rawbg's `Invalid`, in FastAPI's shape
(``type``, ``loc``, ``msg``, ``input``, ``ctx``, with the ``ctx`` and ``input``
made JSON-safe as FastAPI does).

`response_serializer` does the same for ``response_model=`` (or a handler's
return annotation): validate what the handler returned, then dump it to JSON
types with ``include``/``exclude``/``exclude_unset``/``exclude_none``/``by_alias``.
Without pydantic, `missing_pydantic` is the message of the registration error.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any

from .params import Invalid
from .validation import Constraints, Validator

INSTALL_HINT = "install pydantic: pip install 'rawbg[pydantic]'"


def load_pydantic() -> ModuleType | None:
    """pydantic, imported now; None when it is not installed (or blocked)."""
    try:
        import pydantic
    except ImportError:
        return None
    return pydantic


def is_model_class(annotation: Any) -> bool:
    """A pydantic ``BaseModel`` subclass, without importing pydantic."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:
        return False
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def missing_pydantic(what: str) -> str:
    return f"{what} needs pydantic, which is not installed; {INSTALL_HINT}"


def json_safe(value: Any) -> Any:
    """What FastAPI's encoder would make of an error's ``input`` or ``ctx`` value."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, BaseException):
        return {}  # FastAPI encodes an exception's attributes: none
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    return str(value)


def pydantic_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """pydantic's error dicts as rawbg's 422 entries (``loc`` relative, JSON-safe)."""
    entries = []
    for error in errors:
        entry = {
            "type": error["type"],
            "loc": list(error["loc"]),
            "msg": error["msg"],
            "input": json_safe(error.get("input")),
        }
        if "ctx" in error:
            entry["ctx"] = json_safe(error["ctx"])
        entries.append(entry)
    return entries


def pydantic_validator(
    pydantic: ModuleType,
    annotation: Any,
    constraints: Constraints,
    options: dict[str, Any],
) -> Validator:
    """A validator that runs a ``TypeAdapter`` of `annotation`, built once, now.

    Raises pydantic's own errors (``PydanticSchemaGenerationError``,
    ``TypeError``) for what it cannot build; the planner reports them.
    """
    field_options = {**constraints.given(), **options}
    target = annotation
    if field_options:
        target = Annotated[annotation, pydantic.Field(**field_options)]
    adapter = pydantic.TypeAdapter(target)
    validate_python = adapter.validate_python
    validation_error = pydantic.ValidationError

    def validate(value: Any) -> Any:
        try:
            return validate_python(value, from_attributes=True)  # as FastAPI validates
        except validation_error as exc:
            raise Invalid(pydantic_errors(exc.errors(include_url=False))) from None

    return validate


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOptions:
    """The ``response_model_*`` options of a route, as FastAPI names them."""

    include: Any = None
    exclude: Any = None
    by_alias: bool = True
    exclude_unset: bool = False
    exclude_defaults: bool = False
    exclude_none: bool = False


class ResponseValidationError(ValueError):
    """Raised when what a handler returned does not fit its response model: a 500."""


def response_serializer(
    pydantic: ModuleType, response_model: Any, options: ResponseOptions
) -> Callable[[Any], Any]:
    """Validate a handler's return value against `response_model`, then dump it to JSON types."""
    adapter = pydantic.TypeAdapter(response_model)
    validation_error = pydantic.ValidationError
    base_model = pydantic.BaseModel

    def prepare(value: Any) -> Any:
        # as FastAPI: a model returned is dumped with the exclude_* options first, so
        # that "unset" survives the round trip through the response model
        if isinstance(value, base_model):
            return value.model_dump(
                by_alias=True,
                exclude_unset=options.exclude_unset,
                exclude_defaults=options.exclude_defaults,
                exclude_none=options.exclude_none,
            )
        if isinstance(value, list):
            return [prepare(v) for v in value]
        if isinstance(value, tuple):
            return tuple(prepare(v) for v in value)
        if isinstance(value, dict):
            return {k: prepare(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    def serialize(result: Any) -> Any:
        try:
            value = adapter.validate_python(prepare(result), from_attributes=True)
        except validation_error as exc:
            raise ResponseValidationError(
                f"the return value does not fit the response model {response_model!r}: "
                f"{pydantic_errors(exc.errors(include_url=False))}"
            ) from None
        return adapter.dump_python(
            value,
            mode="json",
            include=options.include,
            exclude=options.exclude,
            by_alias=options.by_alias,
            exclude_unset=options.exclude_unset,
            exclude_defaults=options.exclude_defaults,
            exclude_none=options.exclude_none,
        )

    return serialize
