"""`Query`, `Path`, `Header`, `Cookie`, `Body`, `Form`, `File`: where a parameter's value
comes from, its checks.

Used as FastAPI uses them, in either spelling::

    q: Annotated[str | None, Query(min_length=3)] = None
    q: str | None = Query(default=None, min_length=3)

Each marker records where to read the value (its class), the name to read it
under (``alias``; a header's name is the parameter's with ``_`` turned into
``-`` unless ``convert_underscores=False``), the default, and the checks
(`Constraints`). The dependency planner (`rawbg.app.dependencies.plan_call`) reads
them once, at registration; nothing here runs per request.

``title``, ``description``, ``deprecated``, ``include_in_schema``,
``examples``, ``example``, ``openapi_examples`` and ``json_schema_extra``
describe a parameter in the OpenAPI document (`rawbg.app.openapi`), which reads
them from `Param.documentation`; nothing per request does. Options rawbg's own
validator cannot honour (``strict``, ``max_digits``, ...) are handed to pydantic
when it is installed, and are a registration error when it is not.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

#: the default of a marker made without one: required, unless ``= value`` gives it
Required: Any = ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraints:
    """The checks of a `Query(...)`-like marker, applied after the type's conversion."""

    gt: Any = None
    ge: Any = None
    lt: Any = None
    le: Any = None
    multiple_of: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None

    def given(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in self.__slots__ if getattr(self, name) is not None
        }

    def merged(self, other: Constraints) -> Constraints:
        return dataclasses.replace(self, **other.given())


NO_CONSTRAINTS = Constraints()


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()

#: options that only describe the parameter in the OpenAPI document
DOCUMENTATION_OPTIONS = (
    "title",
    "description",
    "deprecated",
    "include_in_schema",
    "examples",
    "example",
    "openapi_examples",
    "json_schema_extra",
    "alias_priority",
    "serialization_alias",
    "media_type",
)

#: options rawbg's own validator does not implement: pydantic's, when it is installed
PYDANTIC_ONLY_OPTIONS = ("strict", "allow_inf_nan", "max_digits", "decimal_places", "discriminator")


class Param:
    """A parameter's source, name and checks. Subclassed once per source."""

    #: where the value is read: "query", "path", "header", "cookie", "body" or "form"
    source: ClassVar[str] = ""

    def __init__(
        self,
        default: Any = UNSET,
        *,
        default_factory: Callable[[], Any] | None = None,
        alias: str | None = None,
        validation_alias: str | None = None,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
        multiple_of: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
        regex: str | None = None,
        strict: bool | None = None,
        allow_inf_nan: bool | None = None,
        max_digits: int | None = None,
        decimal_places: int | None = None,
        discriminator: str | None = None,
        title: str | None = None,
        description: str | None = None,
        deprecated: bool | str | None = None,
        include_in_schema: bool = True,
        examples: list[Any] | None = None,
        example: Any = UNSET,
        openapi_examples: dict[str, Any] | None = None,
        json_schema_extra: dict[str, Any] | None = None,
        alias_priority: int | None = None,
        serialization_alias: str | None = None,
    ) -> None:
        if default is not UNSET and default_factory is not None:
            raise TypeError("give a default or a default_factory, not both")
        if regex is not None:
            warnings.warn(
                "`regex` is deprecated, use `pattern` instead", DeprecationWarning, stacklevel=3
            )
            pattern = pattern or regex
        self.default = default
        self.default_factory = default_factory
        self.alias = alias or (validation_alias if isinstance(validation_alias, str) else None)
        self.constraints = Constraints(
            gt=gt,
            ge=ge,
            lt=lt,
            le=le,
            multiple_of=multiple_of,
            min_length=min_length,
            max_length=max_length,
            pattern=pattern,
        )
        given = {
            "strict": strict,
            "allow_inf_nan": allow_inf_nan,
            "max_digits": max_digits,
            "decimal_places": decimal_places,
            "discriminator": discriminator,
        }
        #: options only pydantic can honour (planned through pydantic, or refused)
        self.pydantic_options = {k: v for k, v in given.items() if v is not None}
        #: what the OpenAPI document says of the parameter (`rawbg.app.openapi`);
        #: ``example`` stays UNSET when not given (``None`` is an example)
        self.documentation: dict[str, Any] = {
            "title": title,
            "description": description,
            "deprecated": deprecated,
            "include_in_schema": include_in_schema,
            "examples": examples,
            "example": example,
            "openapi_examples": openapi_examples,
            "json_schema_extra": json_schema_extra,
        }

    @property
    def has_default(self) -> bool:
        return self.default is not UNSET and self.default is not Required

    def __repr__(self) -> str:
        default = "" if self.default is UNSET else repr(self.default)
        return f"{type(self).__name__}({default})"


class Query(Param):
    """Read from the query string (``?name=value``; ``list[...]``: every repeated key)."""

    source = "query"


class Path(Param):
    """Read from a ``{name}`` segment of the route's path; always required."""

    source = "path"


class Header(Param):
    """Read from a request header, case-insensitively.

    The header's name is the parameter's with ``_`` turned into ``-``
    (``user_agent`` reads ``User-Agent``) unless ``convert_underscores=False``
    or an ``alias`` is given.
    """

    source = "header"

    def __init__(self, default: Any = UNSET, *, convert_underscores: bool = True, **options: Any):
        super().__init__(default, **options)
        self.convert_underscores = convert_underscores


class Cookie(Param):
    """Read from the request's ``Cookie`` header, by cookie name."""

    source = "cookie"


class Body(Param):
    """Read from the JSON body.

    One body parameter is the whole body, unless ``embed=True``: then, as with
    several body parameters, each is read from the key of its name (or alias)
    of a JSON object.
    """

    source = "body"

    def __init__(
        self,
        default: Any = UNSET,
        *,
        embed: bool | None = None,
        media_type: str = "application/json",
        **options: Any,
    ):
        super().__init__(default, **options)
        self.embed = bool(embed)
        self.media_type = media_type


class Form(Body):
    """Read from a field of a form body (``application/x-www-form-urlencoded`` or
    ``multipart/form-data``), by the parameter's name or ``alias``.

    ``Annotated[Model, Form()]`` fills a pydantic model from the form's fields.
    Needs the ``forms`` extra (``pip install 'rawbg[forms]'``), as FastAPI
    needs python-multipart: without it, registering the route is an error.
    """

    source = "form"

    def __init__(
        self,
        default: Any = UNSET,
        *,
        media_type: str = "application/x-www-form-urlencoded",
        **options: Any,
    ):
        super().__init__(default, media_type=media_type, **options)


class File(Form):
    """Read from a file part of a ``multipart/form-data`` body: as ``bytes``, or as an
    `rawbg.uploads.UploadFile` (a parameter annotated ``UploadFile`` needs no marker)."""

    def __init__(
        self, default: Any = UNSET, *, media_type: str = "multipart/form-data", **options: Any
    ):
        super().__init__(default, media_type=media_type, **options)
