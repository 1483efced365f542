"""The OpenAPI 3.1 document of an app, built from the routes' plans: FastAPI's ``get_openapi``.

Nothing here runs at registration or per request. ``app.openapi()`` calls
`get_openapi` once, on the first ``GET /openapi.json`` (or ``--openapi``), and
the app keeps the result. It reads what registration already planned
(`rawbg.app.routing.APIRoute`: the path, the methods, the handler's `CallPlan`
with its dependencies, the response class and model, the documentation options)
and writes it as FastAPI does, key for key:

1. For each route (and each of its callbacks, and each webhook), every value
   the request carries becomes a `SchemaField`: the parameters of the handler
   and of its whole dependency tree, each dependency once (path, then query,
   header, cookie), the body (one parameter, or an object ``Body_<operationId>``
   of several), the response model (``Response_<operationId>``) and the models
   of ``responses=``.
2. One `SchemaEngine` (`rawbg.app.openapi.fields`) describes them all at once:
   each field's schema and the shared ``components/schemas``.
3. Each operation is assembled: ``summary`` (or the handler's name, titled),
   ``description`` (or its docstring up to a form feed), ``operationId``,
   ``parameters``, ``requestBody``, ``responses`` (the route's status with its
   media type and model, the ``responses=`` merged in, and a 422 with
   ``HTTPValidationError`` when anything is validated), then ``openapi_extra``.

A type the engine cannot describe is an `OpenAPIError` naming the route, the
parameter and the function's file:line, raised to the caller of ``app.openapi()``.
"""

from __future__ import annotations

import copy
import http.client
import inspect
import typing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rawbg.app.dependencies import (
    CallPlan,
    DependencyParam,
    FormParam,
    SecurityRequirement,
    Source,
    ValueParam,
    security_requirements,
)
from rawbg.app.form_params import FormKind
from rawbg.app.openapi.fields import (
    REF_PREFIX,
    BodyModel,
    FieldOptions,
    Indescribable,
    JsonSchema,
    SchemaEngine,
    SchemaField,
)
from rawbg.app.param_models import model_of
from rawbg.app.pydantic_support import load_pydantic
from rawbg.app.routing import APIRoute
from rawbg.app.streaming import StreamKind, stream_item_type
from rawbg.app.validation import strip_optional
from rawbg.encoders import jsonable_encoder
from rawbg.errors import OpenAPIError
from rawbg.params import NO_CONSTRAINTS, UNSET, Body, Param
from rawbg.responses import JSONResponse
from rawbg.sse import ServerSentEvent

#: the methods FastAPI gives a ``requestBody``
METHODS_WITH_BODY = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
PARAMETER_ORDER = ("path", "query", "header", "cookie")

VALIDATION_ERROR: JsonSchema = {
    "title": "ValidationError",
    "type": "object",
    "properties": {
        "loc": {
            "title": "Location",
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "msg": {"title": "Message", "type": "string"},
        "type": {"title": "Error Type", "type": "string"},
        "input": {"title": "Input"},
        "ctx": {"title": "Context", "type": "object"},
    },
    "required": ["loc", "msg", "type"],
}
HTTP_VALIDATION_ERROR: JsonSchema = {
    "title": "HTTPValidationError",
    "type": "object",
    "properties": {
        "detail": {
            "title": "Detail",
            "type": "array",
            "items": {"$ref": REF_PREFIX + "ValidationError"},
        }
    },
}
STATUS_RANGES = {
    "1XX": "Information",
    "2XX": "Success",
    "3XX": "Redirection",
    "4XX": "Client Error",
    "5XX": "Server Error",
    "DEFAULT": "Default Response",
}


@dataclass(slots=True)
class Parameter:
    """A path, query, header or cookie parameter, with its field."""

    location: str
    key: str
    required: bool
    schema_field: SchemaField
    documentation: Mapping[str, Any]
    #: the name its schema's title is made of, when not `key` (a parameter model's field)
    title_from: str | None = None


@dataclass(slots=True)
class Draft:
    """One route's fields, registered with the engine before any schema exists."""

    route: APIRoute
    label: str
    parameters: list[Parameter] = field(default_factory=list)
    #: every parameter the request is validated for, shown or not (it decides the 422)
    validated: int = 0
    body: SchemaField | None = None
    body_media_type: str = "application/json"
    body_documentation: Mapping[str, Any] = field(default_factory=dict)
    response: SchemaField | None = None
    #: a streamed response's item (``-> AsyncIterable[Item]``)
    stream_item: SchemaField | None = None
    extra_responses: dict[Any, SchemaField] = field(default_factory=dict)
    callbacks: list[Draft] = field(default_factory=list)
    #: the schemes the route depends on, with their scopes (``security``)
    security: list[SecurityRequirement] = field(default_factory=list)
    #: every field given to the engine, with what it is ("parameter 'q' of f (file:line)")
    described: list[tuple[SchemaField, str]] = field(default_factory=list)
    #: a ``Body_<id>`` component whose form models are listed in its ``allOf``
    #: (their property names), not as properties: FastAPI's form of it
    merged_models: tuple[str, tuple[str, ...]] | None = None


def get_openapi(
    *,
    title: str,
    version: str,
    openapi_version: str = "3.1.0",
    summary: str | None = None,
    description: str | None = None,
    routes: Sequence[Any],
    webhooks: Sequence[Any] | None = None,
    tags: list[dict[str, Any]] | None = None,
    servers: list[dict[str, Any]] | None = None,
    terms_of_service: str | None = None,
    contact: dict[str, Any] | None = None,
    license_info: dict[str, Any] | None = None,
    separate_input_output_schemas: bool = True,
    external_docs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document of `routes` (``app.routes``; what is not an `APIRoute` is skipped)."""
    info: dict[str, Any] = {"title": title, "version": version}
    for key, value in (
        ("summary", summary),
        ("description", description),
        ("termsOfService", terms_of_service),
        ("contact", contact),
        ("license", license_info),
    ):
        if value:
            info[key] = value
    output: dict[str, Any] = {"openapi": openapi_version, "info": info}
    if servers:
        output["servers"] = servers
    engine = make_engine()
    drafts = [_draft(r, engine) for r in _routes(routes) if r.include_in_schema]
    hooks = [_draft(r, engine) for r in _routes(webhooks or ()) if r.include_in_schema]
    try:
        schemas, definitions = engine.generate(
            separate_input_output_schemas=separate_input_output_schemas
        )
    except Indescribable as exc:
        raise _culprit([*drafts, *hooks], exc) from None
    for draft in (*drafts, *hooks):
        if draft.merged_models is not None:
            _merge_form_models(definitions, *draft.merged_models)
    operation_ids: set[str] = set()
    paths: dict[str, dict[str, Any]] = {}
    for draft in drafts:
        paths.setdefault(draft.route.path_format, {}).update(
            _operations(draft, schemas, definitions, operation_ids)
        )
    webhook_paths: dict[str, dict[str, Any]] = {}
    for draft in hooks:
        webhook_paths.setdefault(draft.route.path_format, {}).update(
            _operations(draft, schemas, definitions, operation_ids)
        )
    components: dict[str, Any] = {}
    schemes = {
        requirement.scheme.scheme_name: requirement.scheme.model
        for draft in [*drafts, *hooks]  # a callback's are left out, as FastAPI leaves them
        for requirement in draft.security
    }
    if schemes:
        components["securitySchemes"] = schemes
    if definitions:
        components["schemas"] = {k: float_bounds(definitions[k]) for k in sorted(definitions)}
    if components:
        output["components"] = components
    output["paths"] = paths
    if webhook_paths:
        output["webhooks"] = webhook_paths
    if tags:
        output["tags"] = tags
    if external_docs:
        output["externalDocs"] = external_docs
    return jsonable_encoder(without_none(output))  # type: ignore[no-any-return]


def make_engine() -> SchemaEngine:
    """pydantic's generator when pydantic is installed, else rawbg's own."""
    pydantic = load_pydantic()
    if pydantic is not None:
        from rawbg.app.openapi.pydantic_schemas import PydanticEngine

        return PydanticEngine(pydantic)
    from rawbg.app.openapi.own_schemas import OwnEngine

    return OwnEngine()


def _routes(routes: Sequence[Any]) -> Iterator[APIRoute]:
    from rawbg.app.openapi.callbacks import as_api_route

    for route in routes:
        described = as_api_route(route)
        if described is not None:
            yield described


# -- 1. the fields of a route -------------------------------------------------------


def _draft(route: APIRoute, engine: SchemaEngine) -> Draft:
    label = f"{'/'.join(sorted(route.methods))} {route.path}"
    draft = Draft(route, label, security=security_requirements(route.plan))
    values, bodies = flatten(route.plan)
    for param, owner in values:
        plan = param.value
        draft.validated += 1
        documentation = plan.marker.documentation if plan.marker is not None else {}
        if plan.model is not None:  # a parameter model: each field is a parameter
            _model_parameters(engine, draft, param, owner, documentation)
            continue
        schema_field = _value_field(param, mode="validation")
        _add(engine, draft, schema_field, f"parameter {param.name!r} of {owner.where}")
        if documentation.get("include_in_schema", True) is False:
            continue
        draft.parameters.append(
            Parameter(plan.location, plan.key, param.required, schema_field, documentation)
        )
    if bodies:
        _draft_body(draft, bodies, engine)
    if route.response_model is not None:
        response = SchemaField(
            f"Response_{route.unique_id}", route.response_model, mode="serialization"
        )
        _add(engine, draft, response, f"the response model of {route.plan.where}")
        draft.response = response
    item = _stream_item(route)
    if item is not None:
        draft.stream_item = SchemaField(f"StreamItem_{route.unique_id}", item, "serialization")
        _add(engine, draft, draft.stream_item, f"the stream's item type of {route.plan.where}")
    for status, answer in route.responses.items():
        model = answer.get("model") if isinstance(answer, dict) else None
        if model:
            extra = SchemaField(f"Response_{status}_{route.unique_id}", model, "serialization")
            _add(engine, draft, extra, f"the model of the {status} response of {route.plan.where}")
            draft.extra_responses[status] = extra
    from rawbg.app.openapi.callbacks import as_api_route

    for callback in route.callbacks:
        described = as_api_route(callback)
        if described is not None:
            draft.callbacks.append(_draft(described, engine))
    return draft


def _stream_item(route: APIRoute) -> Any:
    """The item type of a JSON Lines or events stream, as FastAPI describes it, or None."""
    if route.stream_kind not in (StreamKind.JSON_LINES, StreamKind.EVENTS):
        return None
    try:
        annotation = typing.get_type_hints(route.endpoint).get("return")
    except (NameError, TypeError):
        return None
    item = stream_item_type(annotation)
    if isinstance(item, type) and issubclass(item, ServerSentEvent):
        return None  # the events' envelope, not their data
    return item


def _model_parameters(
    engine: SchemaEngine,
    draft: Draft,
    param: ValueParam,
    owner: CallPlan,
    documentation: Mapping[str, Any],
) -> None:
    """A parameter model's fields, each a parameter of the model's place, as FastAPI lists
    them: under the key the request carries it by, required unless the model is optional."""
    plan = param.value
    assert plan.model is not None
    model: Any = model_of(plan.annotation)
    optional = plan.annotation is not model and not param.required
    for model_field in plan.model.fields:
        info = model.model_fields[model_field.name]
        alias, key = model_field.keys[0]
        schema_field = SchemaField(
            model_field.name, info.annotation, "validation", (info,), FieldOptions(title=info.title)
        )
        what = (
            f"the field {model_field.name!r} of the parameter model {param.name!r} of {owner.where}"
        )
        _add(engine, draft, schema_field, what)
        if documentation.get("include_in_schema", True) is False:
            continue
        field_documentation = {"description": info.description, "deprecated": info.deprecated}
        required = info.is_required() and not optional
        draft.parameters.append(
            Parameter(plan.location, key, required, schema_field, field_documentation, alias)
        )


def _add(engine: SchemaEngine, draft: Draft, schema_field: SchemaField, what: str) -> None:
    draft.described.append((schema_field, what))
    try:
        engine.add(schema_field)
    except Indescribable as exc:
        raise _cannot(draft, what, exc) from None


def _cannot(draft: Draft, what: str, exc: Exception) -> OpenAPIError:
    return OpenAPIError(f"route {draft.label}: {what} cannot be described in OpenAPI: {exc}")


def flatten(
    plan: CallPlan,
) -> tuple[list[tuple[ValueParam, CallPlan]], list[ValueParam | FormParam]]:
    """The plan's request values, as FastAPI lists them: (parameter, its function), and bodies.

    Parameters: each function once, depth first, the function's own before its
    dependencies'; bodies: the same, each name once.
    """
    values: list[tuple[ValueParam, CallPlan]] = []
    visited: set[Any] = set()
    stack = [plan]
    while stack:
        current = stack.pop()
        if current.call in visited:
            continue
        visited.add(current.call)
        for param in current.params:
            if isinstance(param, ValueParam) and param.source is not Source.BODY:
                values.append((param, current))
        stack.extend(reversed([p.call for p in current.params if isinstance(p, DependencyParam)]))
    values.sort(key=lambda pair: PARAMETER_ORDER.index(pair[0].value.location))
    bodies: dict[str, ValueParam | FormParam] = {}
    _bodies(plan, bodies, set())
    return values, list(bodies.values())


def _bodies(plan: CallPlan, found: dict[str, ValueParam | FormParam], visited: set[Any]) -> None:
    if plan.call in visited:
        return
    visited.add(plan.call)
    for param in plan.params:
        if isinstance(param, FormParam) or (
            isinstance(param, ValueParam) and param.source is Source.BODY
        ):
            found.setdefault(param.name, param)
    for param in plan.params:
        if isinstance(param, DependencyParam):
            _bodies(param.call, found, visited)


def field_options(param: ValueParam) -> FieldOptions:
    """What pydantic's ``Field(...)`` would be given for `param`."""
    plan = param.value
    return _options(param.required, param.default, plan.default_factory, plan.key, plan.marker)


def _options(
    required: bool,
    default: Any,
    default_factory: Any,
    key: str,
    marker: Param | None,
    *,
    checks: bool = True,
) -> FieldOptions:
    documentation = marker.documentation if marker is not None else {}
    return FieldOptions(
        required=required,
        default=default,
        default_factory=default_factory,
        alias=key,
        title=documentation.get("title"),
        description=documentation.get("description"),
        examples=documentation.get("examples"),
        deprecated=documentation.get("deprecated"),
        json_schema_extra=documentation.get("json_schema_extra"),
        constraints=marker.constraints if marker is not None and checks else NO_CONSTRAINTS,
        pydantic_options=dict(marker.pydantic_options) if marker is not None and checks else {},
    )


def _value_field(param: ValueParam | FormParam, *, mode: Any) -> SchemaField:
    if isinstance(param, FormParam):
        return _form_field(param)
    plan = param.value
    return SchemaField(param.name, plan.annotation, mode, plan.metadata, field_options(param))


#: what an uploaded file is described as: bytes (FastAPI's UploadFile schema is bytes')
_FILE_TYPES: dict[FormKind, Any] = {FormKind.FILE: bytes, FormKind.FILES: list[bytes]}


def _form_field(param: FormParam) -> SchemaField:
    """A form field: its type (an upload described as bytes, as FastAPI does), with what
    its ``Form()``/``File()`` says (``description``, ``title``, checks, ...)."""
    form = param.form
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        annotation = str
    upload = _FILE_TYPES.get(form.kind)
    if upload is not None:
        optional = strip_optional(annotation)[1]
        annotation = upload | None if optional else upload
    options = _options(
        param.required,
        param.default,
        form.default_factory,
        form.key,
        form.marker,
        checks=upload is None,
    )
    metadata = form.metadata if upload is None else ()
    return SchemaField(param.name, annotation, "validation", metadata, options)


def _is_form_body(bodies: list[ValueParam | FormParam]) -> bool:
    return any(isinstance(param, FormParam) for param in bodies)


def _draft_body(draft: Draft, bodies: list[ValueParam | FormParam], engine: SchemaEngine) -> None:
    route = draft.route
    forms = [param for param in bodies if isinstance(param, FormParam)]
    if forms:  # as FastAPI: multipart if any part is, a form model is the body itself
        media_types = {param.form.media_type for param in forms}
        multipart = "multipart/form-data"
        draft.body_media_type = multipart if multipart in media_types else media_types.pop()
        if len(forms) == 1 and forms[0].form.kind is FormKind.MODEL:
            draft.body = _form_field(forms[0])
            where = _owner(route.plan, forms[0]).where
            _add(engine, draft, draft.body, f"the form parameter {forms[0].name!r} of {where}")
            return
    elif not route.embed_body:
        (param,) = bodies
        assert isinstance(param, ValueParam)
        draft.body = _value_field(param, mode="validation")
        marker = param.value.marker
        if isinstance(marker, Body):
            draft.body_media_type = marker.media_type
            draft.body_documentation = marker.documentation
        where = _owner(route.plan, param).where
        _add(engine, draft, draft.body, f"the body parameter {param.name!r} of {where}")
        return
    members = [_value_field(param, mode="validation") for param in bodies]
    required = any(param.required for param in bodies)
    draft.body = SchemaField(
        "body", None, "validation", options=FieldOptions(required=required, alias="body")
    )
    if not forms:
        media_types = {
            p.value.marker.media_type
            for p in bodies
            if isinstance(p, ValueParam) and isinstance(p.value.marker, Body)
        }
        if len(media_types) == 1:
            draft.body_media_type = media_types.pop()
    for param, member in zip(bodies, members, strict=True):
        where = _owner(route.plan, param).where
        draft.described.append((member, f"the body parameter {param.name!r} of {where}"))
    models = tuple(
        member.options.alias or member.name
        for param, member in zip(bodies, members, strict=True)
        if isinstance(param, FormParam) and param.form.kind is FormKind.MODEL
    )
    if models:
        draft.merged_models = (f"Body_{route.unique_id}", models)
    try:
        engine.add_body_model(draft.body, BodyModel(f"Body_{route.unique_id}", members))
    except Indescribable as exc:
        raise _culprit([draft], exc) from None


def _merge_form_models(definitions: dict[str, Any], name: str, models: tuple[str, ...]) -> None:
    """A form model beside other form fields: its reference goes into the body's ``allOf``.

    FastAPI 0.165 describes ``profile: Annotated[Profile, Form()], token:
    Annotated[str, Form()]`` as ``Body_<id>`` with ``token`` in its properties
    and ``allOf: [{"$ref": ".../Profile"}]``, the model's fields being fields
    of the form itself (tutorial request_form_models 003 and 004).
    """
    body = definitions.get(name)
    if body is None:
        return
    properties = body.get("properties", {})
    merged = [properties.pop(key) for key in models if key in properties]
    if not merged:
        return
    body["allOf"] = merged
    required = [key for key in body.get("required", ()) if key not in models]
    if required:
        body["required"] = required
    else:
        body.pop("required", None)


def _owner(plan: CallPlan, param: ValueParam | FormParam) -> CallPlan:
    """The function in `plan`'s tree that declares `param`."""
    if any(p is param for p in plan.params):
        return plan
    for sub in plan.params:
        if isinstance(sub, DependencyParam):
            found = _owner(sub.call, param)
            if any(p is param for p in found.params):
                return found
    return plan


def _culprit(drafts: list[Draft], exc: Indescribable) -> OpenAPIError:
    """The route and field that pydantic could not describe, found by describing each alone."""
    for draft in _with_callbacks(drafts):
        for schema_field, what in draft.described:
            engine = make_engine()
            try:
                engine.add(schema_field)
                engine.generate(separate_input_output_schemas=True)
            except Indescribable as alone:
                return _cannot(draft, what, alone)
    return OpenAPIError(f"the OpenAPI document cannot be built: {exc}")


def _with_callbacks(drafts: list[Draft]) -> Iterator[Draft]:
    for draft in drafts:
        yield draft
        yield from _with_callbacks(draft.callbacks)


# -- 3. the operations --------------------------------------------------------------


def _schema_of(
    schema_field: SchemaField, schemas: Mapping[SchemaField, JsonSchema], alias: str
) -> JsonSchema:
    schema = dict(schemas[schema_field])
    if "$ref" not in schema:
        schema["title"] = schema_field.options.title or alias.title().replace("_", " ")
    return schema


def _operations(
    draft: Draft,
    schemas: Mapping[SchemaField, JsonSchema],
    definitions: dict[str, JsonSchema],
    operation_ids: set[str],
) -> dict[str, Any]:
    route = draft.route
    operations: dict[str, Any] = {}
    for method in sorted(route.methods):
        operation = _metadata(route, operation_ids)
        if draft.security:
            operation["security"] = [
                {requirement.scheme.scheme_name: list(requirement.scopes)}
                for requirement in draft.security
            ]
        parameters = _parameters(draft, schemas)
        if parameters:
            operation["parameters"] = parameters
        if method in METHODS_WITH_BODY and draft.body is not None:
            operation["requestBody"] = _request_body(draft, schemas)
        if draft.callbacks:
            operation["callbacks"] = {
                callback.route.name: {
                    callback.route.path_format: _operations(
                        callback, schemas, definitions, operation_ids
                    )
                }
                for callback in draft.callbacks
            }
        operation["responses"] = _responses(draft, schemas)
        if (draft.validated or draft.body is not None) and not any(
            status in operation["responses"] for status in ("422", "4XX", "default")
        ):
            operation["responses"]["422"] = {
                "description": "Validation Error",
                "content": {
                    "application/json": {"schema": {"$ref": REF_PREFIX + "HTTPValidationError"}}
                },
            }
            definitions.setdefault("ValidationError", VALIDATION_ERROR)
            definitions.setdefault("HTTPValidationError", HTTP_VALIDATION_ERROR)
        if route.openapi_extra:
            deep_update(operation, route.openapi_extra)
        operations[method.lower()] = operation
    return operations


def _metadata(route: APIRoute, operation_ids: set[str]) -> dict[str, Any]:
    operation: dict[str, Any] = {}
    if route.tags:
        operation["tags"] = list(route.tags)
    operation["summary"] = route.summary or route.name.replace("_", " ").title()
    if route.description:
        operation["description"] = route.description
    operation_id = route.operation_id or route.unique_id
    if operation_id in operation_ids:
        message = f"Duplicate Operation ID {operation_id} for function {route.name}"
        if inspect.isfunction(route.endpoint):
            message += f" at {route.endpoint.__code__.co_filename}"
        warnings.warn(message, stacklevel=1)
    operation_ids.add(operation_id)
    operation["operationId"] = operation_id
    if route.deprecated:
        operation["deprecated"] = route.deprecated
    return operation


def _parameters(draft: Draft, schemas: Mapping[SchemaField, JsonSchema]) -> list[dict[str, Any]]:
    described: dict[tuple[str, str], dict[str, Any]] = {}
    required: dict[tuple[str, str], dict[str, Any]] = {}
    for parameter in draft.parameters:
        documentation = parameter.documentation
        entry: dict[str, Any] = {
            "name": parameter.key,
            "in": parameter.location,
            "required": parameter.required,
            "schema": _schema_of(
                parameter.schema_field, schemas, parameter.title_from or parameter.key
            ),
        }
        if documentation.get("description"):
            entry["description"] = documentation["description"]
        if documentation.get("openapi_examples"):
            entry["examples"] = jsonable_encoder(documentation["openapi_examples"])
        elif documentation.get("example", UNSET) is not UNSET:
            entry["example"] = jsonable_encoder(documentation["example"])
        if documentation.get("deprecated"):
            entry["deprecated"] = True
        key = (parameter.location, parameter.key)
        described[key] = entry
        if parameter.required:
            required[key] = entry
    described.update(required)  # a required declaration wins over an optional one
    return list(described.values())


def _request_body(draft: Draft, schemas: Mapping[SchemaField, JsonSchema]) -> dict[str, Any]:
    assert draft.body is not None
    body = draft.body
    content: dict[str, Any] = {"schema": _schema_of(body, schemas, body.options.alias or body.name)}
    documentation = draft.body_documentation
    if documentation.get("openapi_examples"):
        content["examples"] = jsonable_encoder(documentation["openapi_examples"])
    elif documentation.get("example", UNSET) is not UNSET:
        content["example"] = jsonable_encoder(documentation["example"])
    request_body: dict[str, Any] = {}
    if body.options.required:
        request_body["required"] = True
    request_body["content"] = {draft.body_media_type: content}
    return request_body


def body_allowed(status: Any) -> bool:
    """Whether a response with `status` may have a body (not 1xx, 204, 304)."""
    if status is None:
        return True
    if str(status).upper() in STATUS_RANGES or str(status) == "default":
        return True
    code = int(status)
    return not (code < 200 or code in (204, 304))


#: an event of a server-sent events stream, as FastAPI describes it
SSE_EVENT_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def _responses(draft: Draft, schemas: Mapping[SchemaField, JsonSchema]) -> dict[str, Any]:
    route = draft.route
    response_class = route.response_class
    if route.status_code is not None:
        status = str(route.status_code)
    else:
        default = inspect.signature(response_class.__init__).parameters.get("status_code")
        status = "200"
        if default is not None and isinstance(default.default, int):
            status = str(default.default)
    responses: dict[str, Any] = {status: {"description": route.response_description}}
    media_type = response_class.media_type
    stream = route.stream_kind
    item = (
        _schema_of(draft.stream_item, schemas, draft.stream_item.name)
        if draft.stream_item
        else None
    )
    if not body_allowed(route.status_code):
        pass
    elif stream is StreamKind.JSON_LINES:
        responses[status]["content"] = {"application/jsonl": {"itemSchema": item or {}}}
    elif stream is StreamKind.EVENTS:
        event = copy.deepcopy(SSE_EVENT_SCHEMA)
        if item is not None:
            event["required"] = ["data"]
            event["properties"]["data"] = {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": item,
            }
        responses[status]["content"] = {"text/event-stream": {"itemSchema": event}}
    elif media_type:
        schema: JsonSchema = {"type": "string"}
        if issubclass(response_class, JSONResponse):
            schema = {}
            if draft.response is not None:
                schema = _schema_of(draft.response, schemas, draft.response.name)
        responses[status]["content"] = {media_type: {"schema": schema}}
    for code, answer in route.responses.items():
        extra = copy.deepcopy(answer)
        extra.pop("model", None)
        key = str(code).upper()
        if key == "DEFAULT":
            key = "default"
        existing = responses.setdefault(key, {})
        model = draft.extra_responses.get(code)
        if model is not None:
            model_schema = _schema_of(model, schemas, model.name)
            target = (
                extra.setdefault("content", {})
                .setdefault(media_type or "application/json", {})
                .setdefault("schema", {})
            )
            deep_update(target, model_schema)
        status_text = STATUS_RANGES.get(str(code).upper()) or (
            http.client.responses.get(int(code)) if str(code).isdigit() else None
        )
        description = (
            extra.get("description")
            or existing.get("description")
            or status_text
            or "Additional Response"
        )
        deep_update(existing, extra)
        existing["description"] = description
    return responses


def deep_update(target: dict[Any, Any], update: Mapping[Any, Any]) -> None:
    """Merge `update` into `target`: dicts key by key, lists joined, the rest replaced."""
    for key, value in update.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            deep_update(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            target[key] = current + value
        else:
            target[key] = value


def without_none(node: Any) -> Any:
    """`node` with every ``None``-valued key dropped, at any depth, as FastAPI's encoder
    (``exclude_none``) drops them, in defaults and examples too; list items stay."""
    if isinstance(node, dict):
        return {key: without_none(value) for key, value in node.items() if value is not None}
    if isinstance(node, list):
        return [without_none(item) for item in node]
    return node


#: keys whose value is data (a default, an example), not a schema
_VALUE_KEYS = frozenset({"default", "const", "enum", "examples", "example"})
#: the bounds FastAPI's ``Schema`` model holds as floats: in components, ``0`` is ``0.0``
_FLOAT_KEYWORDS = frozenset(
    {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
)


def float_bounds(schema: Any) -> Any:
    """`schema` (a component) with its numeric bounds as floats, as FastAPI writes them."""
    if isinstance(schema, dict):
        return {
            key: value
            if key in _VALUE_KEYS
            else float(value)
            if key in _FLOAT_KEYWORDS and type(value) is int
            else float_bounds(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [float_bounds(item) for item in schema]
    return schema
