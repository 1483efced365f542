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
import typing
from types import ModuleType
from typing import Annotated, Any

from rawbg.app.converters import Invalid
from rawbg.app.validation import Validator
from rawbg.params import Constraints

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
    """A route's ``response_model_*`` options, named without the prefix (``exclude_none``)."""

    include: Any = None
    exclude: Any = None
    by_alias: bool = True
    exclude_unset: bool = False
    exclude_defaults: bool = False
    exclude_none: bool = False


class ResponseValidationError(ValueError):
    """Raised when what a handler returned does not fit its response model: a 500."""


class ResponseSerializer:
    """Validate a handler's return value against a response model, then dump it to JSON types."""

    __slots__ = ("_adapter", "_base_model", "_validation_error", "model_name", "options")

    def __init__(self, pydantic: ModuleType, response_model: Any, options: ResponseOptions) -> None:
        self._adapter = pydantic.TypeAdapter(response_model)
        self._validation_error: type[Exception] = pydantic.ValidationError
        self._base_model: type = pydantic.BaseModel
        self.options = options
        plain_class = isinstance(response_model, type) and not typing.get_args(response_model)
        name = response_model.__qualname__ if plain_class else repr(response_model)
        #: the model's name, for --routes and error messages
        self.model_name: str = name.replace("typing.", "")

    def _prepare(self, value: Any) -> Any:
        # as FastAPI: a model returned is dumped with the exclude_* options first, so
        # that "unset" survives the round trip through the response model
        options = self.options
        if isinstance(value, self._base_model):
            return value.model_dump(  # type: ignore[attr-defined]
                by_alias=True,
                exclude_unset=options.exclude_unset,
                exclude_defaults=options.exclude_defaults,
                exclude_none=options.exclude_none,
            )
        if isinstance(value, list):
            return [self._prepare(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._prepare(v) for v in value)
        if isinstance(value, dict):
            return {k: self._prepare(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    def __call__(self, result: Any) -> Any:
        options = self.options
        try:
            value = self._adapter.validate_python(self._prepare(result), from_attributes=True)
        except self._validation_error as exc:
            errors = pydantic_errors(exc.errors(include_url=False))  # type: ignore[attr-defined]
            raise ResponseValidationError(
                f"the return value does not fit the response model {self.model_name}: {errors}"
            ) from None
        return self._adapter.dump_python(
            value,
            mode="json",
            include=options.include,
            exclude=options.exclude,
            by_alias=options.by_alias,
            exclude_unset=options.exclude_unset,
            exclude_defaults=options.exclude_defaults,
            exclude_none=options.exclude_none,
        )
