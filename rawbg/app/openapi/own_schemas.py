"""The schemas of a document without pydantic: rawbg's own JSON Schema of what it validates.

rawbg's validator (`rawbg.app.validation`) knows str, int, float, bool, Decimal,
UUID, the date and time types, Enum, Literal, None, unions, list, set,
frozenset, tuple, dict, dataclasses and annotated_types' constraints. This
module describes exactly those, writing what pydantic's generator writes for
them (tests/app/test_openapi_schemas.py compares the two, type by type), so a
document is the same with or without the pydantic extra:

* an Enum or a dataclass is a component (``{"$ref": "#/components/schemas/Item"}``),
  named by its class, with the module before it (dots as ``__``) when two
  classes share a name, and ``-Input``/``-Output`` when what the client sends
  and what it gets back differ (a Decimal is a number or a string in, a string out);
* a field's default is written as JSON, as pydantic writes it (an Enum by its
  value, a Decimal as a string, a timedelta in ISO 8601);
* a field's constraints (``Query(min_length=3)``) apply to the type inside an
  ``X | None``, as the validator applies them.

Anything else raises `Indescribable`: without pydantic, rawbg could not have
validated it either, unless it is a handler's return annotation, which is not
checked without pydantic.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import re
import typing
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from rawbg.app.openapi.fields import (
    REF_PREFIX,
    BodyModel,
    FieldOptions,
    Indescribable,
    JsonSchema,
    Mode,
    SchemaField,
)
from rawbg.app.validation import Unsupported, is_union, metadata_constraints
from rawbg.params import NO_CONSTRAINTS, UNSET, Constraints

SCALARS: dict[Any, JsonSchema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    datetime.timedelta: {"type": "string", "format": "duration"},
}
_NUMBER_KEYWORDS = {
    "gt": "exclusiveMinimum",
    "ge": "minimum",
    "lt": "exclusiveMaximum",
    "le": "maximum",
    "multiple_of": "multipleOf",
}
_STRING_KEYWORDS = {"min_length": "minLength", "max_length": "maxLength", "pattern": "pattern"}
_ARRAY_KEYWORDS = {"min_length": "minItems", "max_length": "maxItems"}
_OBJECT_KEYWORDS = {"min_length": "minProperties", "max_length": "maxProperties"}


@dataclass(frozen=True, slots=True)
class _Ref:
    """A reference to a component, named once every component is known."""

    target: Any  # a class, or the name of a body model
    mode: Mode


class OwnEngine:
    """A `rawbg.app.openapi.fields.SchemaEngine` of rawbg's own."""

    def __init__(self) -> None:
        self.fields: dict[SchemaField, tuple[Mode, JsonSchema]] = {}
        self.bodies: dict[str, list[SchemaField]] = {}
        self.definitions: dict[_Ref, JsonSchema] = {}
        self.mode: Mode = "validation"

    # -- the engine's three calls

    def add(self, schema_field: SchemaField) -> None:
        self.mode = schema_field.mode
        self.fields[schema_field] = (schema_field.mode, self._field(schema_field))

    def add_body_model(self, key: SchemaField, model: BodyModel) -> None:
        self.mode = key.mode
        ref = _Ref(model.name, key.mode)
        self.definitions[ref] = self._object(
            model.name, [(f.options.alias or f.name, f) for f in model.fields], None
        )
        self.fields[key] = (key.mode, _with_options({"$ref": ref}, key.options))

    def generate(
        self, *, separate_input_output_schemas: bool
    ) -> tuple[dict[SchemaField, JsonSchema], dict[str, JsonSchema]]:
        names = self._names(separate_input_output_schemas)
        schemas = {key: _resolve(schema, names) for key, (_, schema) in self.fields.items()}
        definitions = {
            names[ref]: _resolve(schema, names) for ref, schema in self.definitions.items()
        }
        return schemas, definitions

    # -- types

    def _field(self, schema_field: SchemaField) -> JsonSchema:
        schema = self.describe(
            schema_field.annotation, schema_field.options.constraints, schema_field.metadata
        )
        return _with_options(schema, schema_field.options)

    def describe(
        self,
        annotation: Any,
        constraints: Constraints = NO_CONSTRAINTS,
        metadata: tuple[Any, ...] = (),
    ) -> JsonSchema:
        """The schema of `annotation` with `constraints` (and ``Annotated`` `metadata`)."""
        if metadata:
            try:
                constraints = constraints.merged(metadata_constraints(list(metadata)))
            except Unsupported as exc:
                raise Indescribable(exc.reason) from None
        if typing.get_origin(annotation) is Annotated:
            inner, *more = typing.get_args(annotation)
            return self.describe(inner, constraints, tuple(more))
        if is_union(annotation):
            members = [self.describe(m, constraints) for m in typing.get_args(annotation)]
            return {"anyOf": members}
        return self._type(annotation, constraints)

    def _type(self, annotation: Any, constraints: Constraints) -> JsonSchema:
        given = constraints.given()
        if annotation in SCALARS:
            schema = dict(SCALARS[annotation])
            if annotation is str:
                schema.update(_keywords(given, _STRING_KEYWORDS))
            elif annotation in (int, float):
                schema.update(_keywords(given, _NUMBER_KEYWORDS))
            return schema
        if annotation is decimal.Decimal:
            if self.mode == "serialization":
                return {"type": "string"}
            number = {"type": "number", **_keywords(given, _NUMBER_KEYWORDS, as_float=True)}
            return {"anyOf": [number, {"type": "string"}]}
        if annotation in (Any, object):
            return {}
        if annotation is None or annotation is type(None):
            return {"type": "null"}
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self._component(annotation, self._enum)
        origin = typing.get_origin(annotation)
        if origin is Literal:
            return _literal(typing.get_args(annotation))
        args = typing.get_args(annotation)
        if annotation in (list, set, frozenset, tuple, dict):
            origin, args = annotation, ()
        if origin in (list, set, frozenset):
            schema = {"type": "array", "items": self.describe(args[0]) if args else {}}
            if origin is not list:
                schema["uniqueItems"] = True
            return {**schema, **_keywords(given, _ARRAY_KEYWORDS)}
        if origin is tuple:
            if not args or (len(args) == 2 and args[1] is Ellipsis):
                schema = {"type": "array", "items": self.describe(args[0]) if args else {}}
            else:
                items = [self.describe(a) for a in args]
                schema = {
                    "type": "array",
                    "prefixItems": items,
                    "minItems": len(items),
                    "maxItems": len(items),
                }
            return {**schema, **_keywords(given, _ARRAY_KEYWORDS)}
        if origin is dict:
            values: Any = self.describe(args[1]) if args else {}
            schema = {"type": "object", "additionalProperties": values or True}
            return {**schema, **_keywords(given, _OBJECT_KEYWORDS)}
        if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
            return self._component(annotation, self._dataclass)
        raise Indescribable(
            f"rawbg cannot describe a value of type {annotation!r} without pydantic "
            "(pip install 'rawbg[pydantic]')"
        )

    def _component(self, cls: type, make: typing.Callable[[type], JsonSchema]) -> JsonSchema:
        ref = _Ref(cls, self.mode)
        if ref not in self.definitions:
            self.definitions[ref] = {}  # before its fields: a dataclass may contain itself
            self.definitions[ref] = make(cls)
        return {"$ref": ref}

    def _enum(self, cls: type) -> JsonSchema:
        values = [member.value for member in cls]  # type: ignore[attr-defined]
        schema: JsonSchema = {"title": cls.__name__, "enum": values}
        kind = _json_type(values)
        if kind is not None:
            schema["type"] = kind
        if cls.__doc__ and "__doc__" in cls.__dict__:
            schema["description"] = _description(cls.__doc__)
        return schema

    def _dataclass(self, cls: type) -> JsonSchema:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError as exc:
            raise Indescribable(f"cannot resolve the fields of {cls.__qualname__}: {exc}") from None
        members = []
        for item in dataclasses.fields(cls):
            if not item.init:
                continue
            required = (
                item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
            )
            options = FieldOptions(
                required=required,
                default=UNSET if item.default is dataclasses.MISSING else item.default,
                default_factory=None
                if item.default_factory is dataclasses.MISSING
                else item.default_factory,
            )
            members.append(
                (
                    item.name,
                    SchemaField(item.name, hints.get(item.name, Any), self.mode, (), options),
                )
            )
        doc = cls.__doc__
        own_doc = doc if doc and not doc.startswith(f"{cls.__name__}(") else None
        return self._object(cls.__name__, members, own_doc)

    def _object(
        self, title: str, members: list[tuple[str, SchemaField]], doc: str | None
    ) -> JsonSchema:
        properties: dict[str, JsonSchema] = {}
        required = []
        for key, member in members:
            schema = self._field(member)
            if "title" not in schema and _titled(schema):
                schema["title"] = key.replace("_", " ").title()
            properties[key] = schema
            if member.options.required:
                required.append(key)
        schema = {"properties": properties, "title": title, "type": "object"}
        if required:
            schema["required"] = required
        if doc:
            schema["description"] = _description(doc)
        return schema

    # -- names

    def _differing(self) -> set[Any]:
        """The classes described both ways whose schemas differ, counting what they refer to."""
        both = [
            ref.target
            for ref in self.definitions
            if ref.mode == "validation" and _Ref(ref.target, "serialization") in self.definitions
        ]
        differ: set[Any] = set()
        changed = True
        while changed:  # a class differs if it refers to one that differs
            changed = False
            for target in both:
                if target in differ:
                    continue
                sent = _unmoded(self.definitions[_Ref(target, "validation")], differ)
                returned = _unmoded(self.definitions[_Ref(target, "serialization")], differ)
                if sent != returned:
                    differ.add(target)
                    changed = True
        return differ

    def _names(self, separate: bool) -> dict[_Ref, str]:
        by_name: dict[str, set[Any]] = {}
        for ref in self.definitions:
            name = ref.target if isinstance(ref.target, str) else ref.target.__name__
            by_name.setdefault(name, set()).add(ref.target)
        differ = self._differing()
        names: dict[_Ref, str] = {}
        for ref in self.definitions:
            target = ref.target
            if isinstance(target, str):
                name = target
            elif len(by_name[target.__name__]) > 1:
                name = f"{target.__module__}__{target.__qualname__}".replace(".", "__")
            else:
                name = target.__name__
            if target in differ:
                name += "-Input" if ref.mode == "validation" else "-Output"
            names[ref] = re.sub(r"[^a-zA-Z0-9.\-_]", "_", name)
        return names


def _unmoded(node: Any, differ: set[Any]) -> Any:
    """`node` with each reference to a class that is the same both ways made mode-less."""
    if isinstance(node, _Ref):
        return (node.target, node.mode if node.target in differ else None)
    if isinstance(node, dict):
        return {key: _unmoded(value, differ) for key, value in node.items()}
    if isinstance(node, list):
        return [_unmoded(item, differ) for item in node]
    return node


def _titled(schema: JsonSchema) -> bool:
    """Whether pydantic titles a field of this schema: not a reference, nor one that may be null."""
    if "$ref" in schema:
        return False
    members = schema.get("anyOf")
    return not (
        isinstance(members, list)
        and len(members) == 2
        and {"type": "null"} in members
        and any("$ref" in member for member in members)
    )


def _with_options(schema: JsonSchema, options: FieldOptions) -> JsonSchema:
    """A field's schema: its type's, with its title, description, default and extras."""
    schema = dict(schema)
    for name in ("title", "description"):
        value = getattr(options, name)
        if value is not None:
            schema[name] = value
    if not options.required and options.default_factory is None:
        schema["default"] = json_value(None if options.default is UNSET else options.default)
    if options.examples is not None:
        schema["examples"] = [json_value(example) for example in options.examples]
    if options.deprecated:
        schema["deprecated"] = True
    if options.json_schema_extra:
        schema.update(options.json_schema_extra)
    return schema


def _keywords(
    given: dict[str, Any], names: dict[str, str], *, as_float: bool = False
) -> JsonSchema:
    return {
        names[name]: (float(value) if as_float else value)
        for name, value in given.items()
        if name in names
    }


def _json_type(values: list[Any]) -> str | None:
    """The JSON type every value has, as pydantic names it, or None if they differ."""
    kinds = set()
    for value in values:
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, int):
            kinds.add("integer")
        elif isinstance(value, float):
            kinds.add("number")
        elif isinstance(value, str):
            kinds.add("string")
        elif value is None:
            kinds.add("null")
        else:
            return None
    if kinds == {"integer", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 else None


def _literal(choices: tuple[Any, ...]) -> JsonSchema:
    values = [json_value(choice) for choice in choices]
    schema: JsonSchema = {"const": values[0]} if len(values) == 1 else {"enum": values}
    kind = _json_type(values)
    if kind is not None:
        schema["type"] = kind
    return schema


def _description(doc: str) -> str:
    import inspect

    return inspect.cleandoc(doc).split("\f")[0]


def json_value(value: Any) -> Any:
    """`value` as pydantic writes a default in JSON mode."""
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return _duration(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dict):
        return {str(json_value(k)): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def _duration(value: datetime.timedelta) -> str:
    """ISO 8601, as pydantic writes a timedelta: ``P1DT2H3M4.5S``, ``PT0S``."""
    sign = "-" if value < datetime.timedelta(0) else ""
    value = abs(value)
    days, seconds, micros = value.days, value.seconds, value.microseconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}P"
    if days:
        text += f"{days}D"
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if secs or micros or not (days or hours or minutes):
        time += f"{secs}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    return text + ("T" + time if time else "")


def _resolve(node: Any, names: dict[_Ref, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (REF_PREFIX + names[value] if isinstance(value, _Ref) else _resolve(value, names))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_resolve(item, names) for item in node]
    return node
