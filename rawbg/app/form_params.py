"""Form and file parameters: planned at registration, read from the request's form.

A parameter is read from the form when its marker is ``Form()`` or ``File()``,
or when its annotation is ``UploadFile`` (or a list of them) with no marker,
as in FastAPI. `plan_form` decides, once, what kind of value it is
(`FormKind`), the key it is read under, and its validator; `read_form_value`
takes it out of the parsed form per request, with FastAPI's rules: an empty
string and a browser's empty file input count as "not sent".

A route with such a parameter needs the ``forms`` extra (defnull's
``multipart``): without it, registration fails naming the extra, as FastAPI
fails without python-multipart. The route's body is then a form; it is parsed
once per request, as it arrives, by `rawbg.forms`, within the route's
`FormLimits`.

What the OpenAPI document needs is on the `FormPlan`: the media type (the
marker's: urlencoded for ``Form``, multipart for ``File``), the key, and, for a
form model, the model (the parameter's annotation).
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from rawbg.app.converters import invalid
from rawbg.app.pydantic_support import is_model_class, load_pydantic, pydantic_validator
from rawbg.app.sources import value_validator
from rawbg.app.validation import (
    Validator,
    is_scalar,
    is_scalar_sequence,
    is_union,
    list_of,
    strip_optional,
)
from rawbg.errors import RouteDefinitionError
from rawbg.forms import load_multipart, why_no_multipart
from rawbg.params import UNSET, File, Form, Param, Required
from rawbg.uploads import FormData, UploadFile

SEQUENCES = (list, set, frozenset, tuple)


class FormKind(enum.Enum):
    """What a form parameter's value is."""

    VALUE = "a form field"
    VALUES = "every value of a repeated form field"
    FILE = "an uploaded file"
    FILES = "every file of a repeated form field"
    FILE_BYTES = "the bytes of an uploaded file"
    FILES_BYTES = "the bytes of every file of a repeated form field"
    MODEL = "a model filled from the form's fields"


@dataclass(frozen=True, slots=True)
class FormPlan:
    """How one parameter's value is read from the form."""

    key: str  # the field name (alias, or the parameter's name)
    kind: FormKind
    validate: Validator
    #: "application/x-www-form-urlencoded" (Form) or "multipart/form-data" (File, UploadFile)
    media_type: str
    default_factory: Callable[[], Any] | None
    #: MODEL: the model's own fields, (key, takes every value); () for a union of models,
    #: which is given every field of the form
    model_fields: tuple[tuple[str, bool], ...] = ()
    #: MODEL: an omitted model is its default (``Model | None = None``), not an error;
    #: it counts as sent if one of these keys is in the form (its models' fields), or,
    #: with `model_takes_extra` (a model that allows or forbids extra fields), any field
    model_optional: bool = False
    model_keys: frozenset[str] = frozenset()
    model_takes_extra: bool = False
    via_pydantic: bool = False
    # What the OpenAPI document describes (`rawbg.app.openapi`); unused per request
    #: the ``Form()``/``File()`` marker as written (a bare ``UploadFile``: a ``File()``)
    marker: Form | None = None
    #: the other ``Annotated`` metadata (annotated_types' or pydantic's)
    metadata: tuple[Any, ...] = ()


#: `read_form_value`'s answer for a value the form does not have
NOT_SENT: Any = object()

_EMPTY: Any = inspect.Parameter.empty


def is_form_param(marker: Param | None, annotation: Any) -> bool:
    """Read from the form: a Form()/File() marker, or an UploadFile annotation without one."""
    return isinstance(marker, Form) or (marker is None and _mentions_upload(annotation))


def plan_form(
    *,
    where: str,
    name: str,
    annotation: Any,
    default: Any,
    marker: Param | None,
    in_annotated: bool,
    metadata: list[Any],
) -> tuple[FormPlan, Any]:
    """The `FormPlan` of one form parameter, and its default (`inspect.Parameter.empty`)."""
    if load_multipart() is None:
        raise RouteDefinitionError(f"{where} is read from a form: {why_no_multipart()}")
    if marker is None:
        marker = File()
    assert isinstance(marker, Form)
    default_factory = marker.default_factory
    if marker.default is not UNSET and marker.default is not Required:
        if in_annotated:
            raise RouteDefinitionError(
                f"{where}: give the default with `= value`, not inside "
                f"{type(marker).__name__}(...) in Annotated"
            )
        default = marker.default
    if annotation is _EMPTY:
        annotation = str
    key = marker.alias or name
    inner, optional = strip_optional(annotation)
    is_file = isinstance(marker, File)
    models = _models(inner)
    if models:
        return _plan_model(where, key, annotation, marker, metadata, models, optional), default
    if _is_upload(inner) or _is_upload_sequence(inner):
        if marker.constraints.given() or metadata or marker.pydantic_options:
            raise RouteDefinitionError(f"{where}: an UploadFile takes no checks")
        many = _is_upload_sequence(inner)
        kind = FormKind.FILES if many else FormKind.FILE
        upload: Validator = list_of(_upload) if many else _upload
        plan = FormPlan(key, kind, upload, marker.media_type, default_factory, marker=marker)
        return plan, default
    many = _takes_many(inner)
    if is_file and _is_bytes(inner, many):
        kind = FormKind.FILES_BYTES if many else FormKind.FILE_BYTES
    elif is_scalar(annotation) or is_scalar_sequence(annotation) or _is_bytes(inner, many):
        kind = FormKind.VALUES if many else FormKind.VALUE
    else:
        raise RouteDefinitionError(
            f"{where}: a form field is a string: annotate it as str, int, float, bool, a date "
            f"or time, UUID, Decimal, an Enum, a Literal, bytes, UploadFile, a list of those, "
            f"or a pydantic model (a form model), not {annotation!r}"
        )
    validate: Validator
    if _is_bytes(inner, many):
        validate, via_pydantic = (list_of(_bytes) if many else _bytes), False
        if optional:
            validate = _or_none(validate)
    else:
        validate, via_pydantic = value_validator(
            where, annotation, metadata, marker.constraints, marker.pydantic_options
        )
    plan = FormPlan(
        key,
        kind,
        validate,
        marker.media_type,
        default_factory,
        via_pydantic=via_pydantic,
        marker=marker,
        metadata=tuple(metadata),
    )
    return plan, default


def _plan_model(
    where: str,
    key: str,
    annotation: Any,
    marker: Form,
    metadata: list[Any],
    models: list[type],
    optional: bool,
) -> FormPlan:
    """A form model: ``Annotated[Model, Form()]`` (or a union of models, with a discriminator)."""
    pydantic = load_pydantic()
    assert pydantic is not None  # `_models` found pydantic models
    target = Annotated[(annotation, *metadata)] if metadata else annotation
    try:
        validate = pydantic_validator(pydantic, target, marker.constraints, marker.pydantic_options)
    except Exception as exc:
        first_line = str(exc).partition("\n")[0]
        raise RouteDefinitionError(f"{where}: pydantic cannot validate it: {first_line}") from None
    each = [
        tuple(
            (info.alias or field_name, _takes_many(info.annotation))
            for field_name, info in model.model_fields.items()  # type: ignore[attr-defined]
        )
        for model in models
    ]
    return FormPlan(
        key,
        FormKind.MODEL,
        validate,
        marker.media_type,
        marker.default_factory,
        model_fields=each[0] if len(models) == 1 else (),
        model_optional=optional,
        model_keys=frozenset(key for fields in each for key, _ in fields),
        model_takes_extra=any(
            model.model_config.get("extra") in ("allow", "forbid")  # type: ignore[attr-defined]
            for model in models
        ),
        via_pydantic=True,
        marker=marker,
        metadata=tuple(metadata),
    )


# -- per request ------------------------------------------------------------------------


async def read_form_value(plan: FormPlan, form: FormData) -> Any:
    """The parameter's raw value in `form` (files read, for bytes), or `NOT_SENT`."""
    kind = plan.kind
    if kind is FormKind.MODEL:
        return _model_input(plan, form)
    if kind in (FormKind.VALUES, FormKind.FILES, FormKind.FILES_BYTES):
        values = [v for v in form.getlist(plan.key) if not _empty_file(v)]
        if not values:
            return NOT_SENT
        if kind is FormKind.FILES_BYTES:
            return [await _contents(v) for v in values]
        return values
    value = form.get(plan.key)
    if value is None or value == "" or _empty_file(value):
        return NOT_SENT
    if kind is FormKind.FILE_BYTES:
        return await _contents(value)
    return value


def _model_input(plan: FormPlan, form: FormData) -> Any:
    """The dict a form model is validated from: its fields' values, then the other fields."""
    fields = plan.model_fields
    if plan.model_optional and not _model_sent(plan, form):
        return NOT_SENT
    values: dict[str, Any] = {}
    own = set()
    for key, many in fields:
        own.add(key)
        if many:
            items = [v for v in form.getlist(key) if not _empty_file(v)]
            if items:
                values[key] = items
        else:
            value = form.get(key)
            if value is not None and value != "" and not _empty_file(value):
                values[key] = value
    grouped: dict[str, list[Any]] = {}
    for key, value in form.multi_items():
        if key not in own:
            grouped.setdefault(key, []).append(value)
    for key, items in grouped.items():
        values[key] = items[0] if len(items) == 1 else items
    return values


def _model_sent(plan: FormPlan, form: FormData) -> bool:
    """An optional model counts as sent if one of its fields is in the form (even empty),
    or, for a model that takes extra fields, if the form has any field (FastAPI's rule)."""
    if plan.model_takes_extra and len(form) > 0:
        return True
    return any(key in form for key in plan.model_keys)


async def _contents(value: Any) -> Any:
    """An upload's bytes, read without moving its position (another parameter may share it)."""
    if not isinstance(value, UploadFile):
        return value
    position = value.file.tell()
    try:
        return await value.read()
    finally:
        await value.seek(position)


def _empty_file(value: Any) -> bool:
    """What a browser sends for a file input left empty: no filename, no bytes."""
    return isinstance(value, UploadFile) and value.filename == "" and value.size == 0


# -- validators and annotation tests ----------------------------------------------------


def _upload(value: Any) -> UploadFile:
    if isinstance(value, UploadFile):
        return value
    raise invalid(
        "value_error",
        f"Value error, Expected UploadFile, received: {type(value)}",
        value,
        {"error": {}},
    )


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise invalid("bytes_type", "Input should be a valid bytes", value)


def _or_none(validate: Validator) -> Validator:
    def optional(value: Any) -> Any:
        return None if value is None else validate(value)

    return optional


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_upload(annotation: Any) -> bool:
    annotation = _strip_annotated(annotation)
    return isinstance(annotation, type) and issubclass(annotation, UploadFile)


def _is_upload_sequence(annotation: Any) -> bool:
    annotation = _strip_annotated(annotation)
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) in SEQUENCES and len(args) >= 1 and _is_upload(args[0])


def _mentions_upload(annotation: Any) -> bool:
    inner, _ = strip_optional(_strip_annotated(annotation))
    return _is_upload(inner) or _is_upload_sequence(inner)


def _is_bytes(annotation: Any, many: bool) -> bool:
    annotation = _strip_annotated(annotation)
    if many:
        args = typing.get_args(annotation)
        return len(args) >= 1 and _strip_annotated(args[0]) is bytes
    return annotation is bytes


def _models(annotation: Any) -> list[type]:
    """The pydantic models `annotation` is (one, or a union of them), else []."""
    annotation = _strip_annotated(annotation)
    members = typing.get_args(annotation) if is_union(annotation) else (annotation,)
    models = [m for m in members if m is not type(None)]
    if models and all(is_model_class(m) for m in models):
        return models
    return []


def _takes_many(annotation: Any) -> bool:
    inner, _ = strip_optional(_strip_annotated(annotation))
    return typing.get_origin(inner) in SEQUENCES or inner in SEQUENCES
