"""What the OpenAPI document asks a JSON Schema generator for: `SchemaField`s, and the engines.

The document (`rawbg.app.openapi.document`) turns each parameter, request body,
response model and additional response model of a route into a `SchemaField`:
a type with its ``Annotated`` metadata, the field's options (default, alias,
title, checks, ...) and the mode (``"validation"`` for what the client sends,
``"serialization"`` for what it gets back). It hands them all at once to one
`SchemaEngine`, which returns each field's schema and the shared definitions
(``components/schemas``), as pydantic's ``GenerateJsonSchema.generate_definitions``
does for FastAPI:

`rawbg.app.openapi.document.make_engine` picks the engine:

* with pydantic installed, `rawbg.app.openapi.pydantic_schemas`: pydantic's own
  generator, so every schema and component name is FastAPI's;
* without it, `rawbg.app.openapi.own_schemas`: rawbg's generator for the types its
  validator knows, which emits what pydantic emits for them.

A type neither can describe raises `Indescribable`, which the document turns
into an `OpenAPIError` naming the route and the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rawbg.params import UNSET, Constraints

Mode = Literal["validation", "serialization"]
#: a schema as JSON: ``{"type": "string"}``, ``{"$ref": "#/components/schemas/Item"}``
JsonSchema = dict[str, Any]

REF_PREFIX = "#/components/schemas/"


class Indescribable(Exception):
    """Raised by a `SchemaEngine` for a type it cannot write a JSON Schema of."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldOptions:
    """A field's options, as pydantic's ``Field(...)`` takes them."""

    required: bool = True
    default: Any = UNSET
    default_factory: Callable[[], Any] | None = None
    alias: str | None = None
    title: str | None = None
    description: str | None = None
    examples: list[Any] | None = None
    deprecated: bool | str | None = None
    json_schema_extra: dict[str, Any] | None = None
    constraints: Constraints = field(default_factory=Constraints)
    #: options only pydantic honours (``strict``, ``max_digits``, ...)
    pydantic_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class SchemaField:
    """One thing to describe; hashed by identity, as a key of the engine's answer."""

    name: str
    annotation: Any
    mode: Mode = "validation"
    metadata: tuple[Any, ...] = ()
    options: FieldOptions = field(default_factory=FieldOptions)


@dataclass(frozen=True, slots=True)
class BodyModel:
    """The body of a route with several body parameters: an object named ``Body_<id>``."""

    name: str
    fields: Sequence[SchemaField]


class SchemaEngine(Protocol):
    """Describes `SchemaField`s: first every field is added, then `generate` answers once."""

    def add(self, schema_field: SchemaField) -> None: ...

    def add_body_model(self, key: SchemaField, model: BodyModel) -> None:
        """`key` is described as a reference to a component made of `model`'s fields."""

    def generate(
        self, *, separate_input_output_schemas: bool
    ) -> tuple[dict[SchemaField, JsonSchema], dict[str, JsonSchema]]:
        """Each field's schema, and the definitions they refer to, by component name."""
        ...
