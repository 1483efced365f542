"""``python -m rawbg MODULE:ATTR --routes``: every route and its dependency tree.

Drawn from the plans built at registration (`rawbg.dependencies.CallPlan`),
so what it prints is exactly what a request will walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .app import App, Endpoint
from .dependencies import CallPlan, ParamPlan, Source


def _describe_param(param: ParamPlan, shared: set[Any]) -> str:
    default = "" if param.required else f" = {param.default!r}"
    source = param.source
    if source is Source.DEPENDENCY:
        plan = param.call
        assert plan is not None
        if not plan.use_cache:
            sharing = "called again each time (use_cache=False)"
        elif plan.call in shared:
            sharing = "shared: the value cached earlier in this request"
        else:
            sharing = "cached for the rest of the request"
        scope = f", clean-up scope={plan.scope}" if "generator" in plan.kind.value else ""
        return (
            f"{param.name}{default}  <- Depends({plan.name.split(' (')[0]}) "
            f"[{plan.kind.value}{scope}; {sharing}]"
        )
    if source is Source.BACKGROUND:
        return f"{param.name}  <- background tasks (one instance per request, shared)"
    if source is Source.REQUEST:
        return f"{param.name}  <- the request"
    if source is Source.QUERY and param.scalar is not None and param.scalar.many:
        return f"{param.name}{default}  <- query (repeated key)"
    return f"{param.name}{default}  <- {source.value}"


def _tree(plan: CallPlan, shared: set[Any], indent: str) -> Iterator[str]:
    params = plan.params
    for index, param in enumerate(params):
        last = index == len(params) - 1
        yield f"{indent}{'└─ ' if last else '├─ '}{_describe_param(param, shared)}"
        if param.call is not None:
            if param.call.use_cache and param.call.call in shared:
                continue
            yield from _tree(param.call, shared, indent + ("   " if last else "│  "))
            if param.call.use_cache:
                shared.add(param.call.call)


def describe_routes(app: App) -> str:
    """The text ``--routes`` prints."""
    lines: list[str] = []
    for route in app.router:
        seen: dict[int, list[str]] = {}
        endpoints: dict[int, Endpoint] = {}
        for method, endpoint in route.endpoints.items():
            seen.setdefault(id(endpoint), []).append(method)
            endpoints[id(endpoint)] = endpoint
        for key, methods in seen.items():
            endpoint = endpoints[key]
            plan = endpoint.plan
            lines.append(f"{', '.join(methods)} {route.template}")
            lines.append(f"  handler {plan.name}  [{plan.kind.value}]")
            lines.extend(_tree(plan, set(), "  "))
            lines.append("")
    if not lines:
        return "no routes\n"
    return "\n".join(lines)
