"""The schemas of a document with pydantic installed: pydantic's own generator, as FastAPI's.

Each `SchemaField` becomes a ``TypeAdapter`` of ``Annotated[type, *metadata,
Field(...)]``, built now (never at registration, never per request), and all of
them go through one ``GenerateJsonSchema.generate_definitions``, with the
references under ``#/components/schemas/``. That is how FastAPI builds its
document, so the schemas and the component names (``Item``, ``Item-Input``
and ``Item-Output`` when they differ, a module-qualified name when two classes
share one) are FastAPI's. As in FastAPI, the models and enums reachable from
the fields are described too, and a definition's description stops at a form
feed.
"""

from __future__ import annotations

import enum
import typing
import warnings
from types import ModuleType
from typing import Annotated, Any

from rawbg.app.openapi.fields import (
    REF_PREFIX,
    BodyModel,
    FieldOptions,
    Indescribable,
    JsonSchema,
    Mode,
    SchemaField,
)
from rawbg.params import UNSET


def field_arguments(options: FieldOptions) -> dict[str, Any]:
    """`options` as pydantic's ``Field(...)`` keyword arguments."""
    arguments: dict[str, Any] = {}
    if not options.required:
        if options.default_factory is not None:
            arguments["default_factory"] = options.default_factory
        else:
            arguments["default"] = None if options.default is UNSET else options.default
    for name in ("alias", "title", "description", "examples", "deprecated", "json_schema_extra"):
        value = getattr(options, name)
        if value is not None:
            arguments[name] = value
    arguments.update(options.constraints.given())
    arguments.update(options.pydantic_options)
    return arguments


class PydanticEngine:
    """A `rawbg.app.openapi.fields.SchemaEngine` that asks pydantic."""

    def __init__(self, pydantic: ModuleType) -> None:
        self.pydantic = pydantic
        self.adapters: dict[SchemaField, Any] = {}
        #: fields described alike (a dependency's parameter on every route) share one
        #: adapter and one input of the generator: the first such field stands for the rest
        self.same_as: dict[SchemaField, SchemaField] = {}
        self._firsts: dict[Any, SchemaField] = {}
        #: every field's annotation, to find the models and enums under them
        self.annotations: list[tuple[Mode, Any]] = []
        #: the fields' own types: not added again as models found under them
        self.direct: set[Any] = set()

    def _adapter(self, annotation: Any) -> Any:
        pydantic = self.pydantic
        with warnings.catch_warnings():
            # pydantic warns that alias, deprecated... mean nothing outside a model
            warnings.simplefilter("ignore")
            try:
                return pydantic.TypeAdapter(annotation)
            except (pydantic.PydanticSchemaGenerationError, TypeError, NameError) as exc:
                raise Indescribable(str(exc).partition("\n")[0]) from None

    def _field_type(self, schema_field: SchemaField) -> Any:
        field_info = self.pydantic.Field(**field_arguments(schema_field.options))
        return Annotated[(schema_field.annotation, *schema_field.metadata, field_info)]

    def add(self, schema_field: SchemaField) -> None:
        arguments = field_arguments(schema_field.options)
        try:
            key: Any = (
                schema_field.annotation,
                schema_field.metadata,
                schema_field.mode,
                tuple(sorted(arguments.items())),
            )
            first = self._firsts.setdefault(key, schema_field)
        except TypeError:  # an unhashable default or example: described on its own
            first = schema_field
        if first is not schema_field:
            self.same_as[schema_field] = first
            return
        self.adapters[schema_field] = self._adapter(self._field_type(schema_field))
        self.annotations.append((schema_field.mode, schema_field.annotation))
        if isinstance(schema_field.annotation, type):
            self.direct.add(schema_field.annotation)

    def add_body_model(self, key: SchemaField, model: BodyModel) -> None:
        pydantic = self.pydantic
        definitions: dict[str, Any] = {}
        for member in model.fields:
            annotation = (
                Annotated[(member.annotation, *member.metadata)]
                if member.metadata
                else (member.annotation)
            )
            definitions[member.name] = (
                annotation,
                pydantic.Field(**field_arguments(member.options)),
            )
            self.annotations.append(("validation", member.annotation))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                body = pydantic.create_model(model.name, **definitions)
            except (pydantic.PydanticSchemaGenerationError, TypeError, NameError) as exc:
                raise Indescribable(str(exc).partition("\n")[0]) from None
        field_info = pydantic.Field(**field_arguments(key.options))
        self.adapters[key] = self._adapter(Annotated[body, field_info])
        self.annotations.append((key.mode, body))
        self.direct.add(body)

    def generate(
        self, *, separate_input_output_schemas: bool
    ) -> tuple[dict[SchemaField, JsonSchema], dict[str, JsonSchema]]:
        from pydantic.json_schema import GenerateJsonSchema

        class Generator(GenerateJsonSchema):
            # bytes as FastAPI describes them (pydantic says "format": "binary")
            def bytes_schema(self, schema: Any) -> JsonSchema:
                described: JsonSchema = {
                    "type": "string",
                    "contentMediaType": "application/octet-stream",
                }
                config = self._config
                mode = (
                    config.ser_json_bytes
                    if self.mode == "serialization"
                    else (config.val_json_bytes)
                )
                if mode == "base64":
                    described["contentEncoding"] = "base64"
                self.update_with_validations(described, schema, self.ValidationsMapping.bytes)
                return described

        inputs: list[tuple[Any, Mode, Any]] = []
        for schema_field, adapter in self.adapters.items():
            mode: Mode = schema_field.mode
            if not separate_input_output_schemas and not _has_computed_fields(
                schema_field.annotation
            ):
                mode = "validation"
            inputs.append((schema_field, mode, adapter.core_schema))
        for mode, model in self._flat_models():
            if model not in self.direct:
                if not separate_input_output_schemas and not _has_computed_fields(model):
                    mode = "validation"
                inputs.append(((mode, model), mode, self._adapter(model).core_schema))
        generator = Generator(ref_template=REF_PREFIX + "{model}")
        try:
            mapping, definitions = generator.generate_definitions(inputs=inputs)
        except self.pydantic.errors.PydanticInvalidForJsonSchema as exc:
            raise Indescribable(str(exc).partition("\n")[0]) from None
        schemas = {
            key: dict(schema)
            for (key, _), schema in mapping.items()
            if isinstance(key, SchemaField)
        }
        for alike, first in self.same_as.items():
            schemas[alike] = schemas[first]
        result: dict[str, JsonSchema] = {}
        for name, definition in definitions.items():
            definition = dict(definition)
            description = definition.get("description")
            if isinstance(description, str):
                definition["description"] = description.split("\f")[0]
            result[name] = definition
        return schemas, result

    def _flat_models(self) -> list[tuple[Mode, type]]:
        """The models and enums under the fields, by mode, as FastAPI lists them."""
        found: dict[tuple[Mode, type], None] = {}
        for mode, annotation in self.annotations:
            _collect_models(annotation, mode, found, self.pydantic.BaseModel)
        return list(found)


def _collect_models(
    annotation: Any, mode: Mode, found: dict[tuple[Mode, type], None], base_model: type
) -> None:
    if isinstance(annotation, type) and issubclass(annotation, (base_model, enum.Enum)):
        if (mode, annotation) in found:
            return
        found[(mode, annotation)] = None
        if issubclass(annotation, base_model):
            for field_info in annotation.model_fields.values():  # type: ignore[attr-defined]
                _collect_models(field_info.annotation, mode, found, base_model)
        return
    for argument in typing.get_args(annotation):
        _collect_models(argument, mode, found, base_model)


def _has_computed_fields(annotation: Any, seen: set[type] | None = None) -> bool:
    seen = set() if seen is None else seen
    computed = getattr(annotation, "model_computed_fields", None)
    if isinstance(annotation, type) and computed is not None:
        if annotation in seen:
            return False
        seen.add(annotation)
        if computed:
            return True
        fields = getattr(annotation, "model_fields", {})
        return any(_has_computed_fields(f.annotation, seen) for f in fields.values())
    return any(_has_computed_fields(a, seen) for a in typing.get_args(annotation))
