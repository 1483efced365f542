"""``python -m rawbg MODULE:ATTR --routes``: every route and its dependency tree.

Drawn from the plans built at registration (`rawbg.app.dependencies.CallPlan`),
so what it prints is exactly what a request will walk: for each parameter its
type and where its value comes from, and for each dependency whether its value
is computed or shared through the per-request cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from rawbg.app.application import App, Endpoint
from rawbg.app.dependencies import (
    CallPlan,
    DependencyParam,
    FormParam,
    ParamPlan,
    Source,
    ValueParam,
)
from rawbg.responses import JSONResponse


def type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, type):
        return f": {annotation.__qualname__}"
    return ": " + repr(annotation).replace("typing.", "")


def _describe_param(param: ParamPlan, computed: set[Callable[..., Any]], embed: bool) -> str:
    head = f"{param.name}{type_name(param.annotation)}"
    if not param.required:
        head += f" = {param.default!r}"
    source = param.source
    if isinstance(param, DependencyParam):
        plan = param.call
        if not plan.use_cache:
            sharing = "called each time (use_cache=False)"
        elif plan.call in computed:
            sharing = "shared: value from the per-request cache"
        else:
            sharing = "computed, then cached for the request"
        scope = f", clean-up scope={plan.scope}" if "generator" in plan.kind.value else ""
        return f"{head}  <- Depends({plan.name}) [{plan.kind.value}{scope}; {sharing}]"
    if isinstance(param, FormParam):
        form = param.form
        return f"{head}  <- {form.kind.value} {form.key!r} ({form.media_type})"
    if source is Source.BACKGROUND:
        return f"{head}  <- background tasks (one instance per request, shared)"
    if not isinstance(param, ValueParam):
        return f"{head}  <- {source.value}"
    value = param.value
    where = source.value
    if value.key != param.name:
        where += f" {value.key!r}"
    notes = [f"{k}={v!r}" for k, v in value.constraints.given().items()]
    if value.many:
        notes.insert(0, "repeated key" if source is Source.QUERY else "every value")
    if source is Source.BODY and embed:
        notes.insert(0, f"embedded as {value.key!r}")
    if value.via_pydantic:
        notes.append("validated by pydantic")
    return f"{head}  <- {where}" + (f" ({', '.join(notes)})" if notes else "")


def _tree(
    plan: CallPlan, computed: set[Callable[..., Any]], indent: str, embed: bool
) -> Iterator[str]:
    for index, param in enumerate(plan.params):
        last = index == len(plan.params) - 1
        yield f"{indent}{'└─ ' if last else '├─ '}{_describe_param(param, computed, embed)}"
        if not isinstance(param, DependencyParam):
            continue
        sub = param.call
        if sub.use_cache and sub.call in computed:
            continue
        yield from _tree(sub, computed, indent + ("   " if last else "│  "), embed)
        if sub.use_cache:
            computed.add(sub.call)


def describe_routes(app: App) -> str:
    """The text ``--routes`` prints."""
    lines: list[str] = []
    for route in app.router:
        if route.template in app.docs_pages:
            continue
        methods_of: dict[int, list[str]] = {}
        endpoint_of: dict[int, Endpoint] = {}
        for method, endpoint in route.endpoints.items():
            methods_of.setdefault(id(endpoint), []).append(method)
            endpoint_of[id(endpoint)] = endpoint
        for key, methods in methods_of.items():
            endpoint = endpoint_of[key]
            plan = endpoint.plan
            lines.append(f"{', '.join(methods)} {route.template}")
            returns = ""
            if endpoint.response_class is not JSONResponse:
                returns = f"  -> {endpoint.response_class.__name__}"
            lines.append(f"  handler {plan.where}  [{plan.kind.value}]{returns}")
            if endpoint.serialize is not None:
                lines.append(f"  response model: {endpoint.serialize.model_name}")
            if endpoint.max_body_size is not None or endpoint.streams_body:
                limit = endpoint.max_body_size
                size = "the server's limit" if limit is None else f"at most {limit} bytes"
                how = "read as it arrives" if endpoint.streams_body else "read whole"
                lines.append(f"  body: {size}, {how}")
            lines.extend(_tree(plan, set(), "  ", endpoint.embed_body))
            lines.append("")
    if app.user_middleware:  # outermost first, the order a request meets them
        names = " -> ".join(layer.name for layer in app.user_middleware)
        lines[:0] = [f"middleware, outermost first: {names}", ""]
    if app.docs_pages:
        lines.append(f"docs pages: {', '.join(app.docs_pages)}")
        lines.append("")
    return "\n".join(lines) if lines else "no routes\n"
