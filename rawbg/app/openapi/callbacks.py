"""Routes that are described but never served: callbacks and webhooks.

``callbacks=router.routes`` on a route gives `rawbg.app.routing.RouteSpec`
records: what an `APIRouter` keeps until it is included. The document plans them
here, when it is built, the way `App.add_route` plans a served route (the
handler's `CallPlan`, its route dependencies, its response model), into an
`APIRoute`. ``app.webhooks`` is a `WebhookRouter`, which plans each route as it
is declared, so that its ``routes`` are `APIRoute` objects, as in FastAPI. A
webhook's path is a name (``new-subscription``) and needs no leading slash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

from rawbg.app.dependencies import plan_call, should_embed_body
from rawbg.app.paths import parameter_names
from rawbg.app.response_models import DEFAULT, resolve_response_model
from rawbg.app.routing import (
    DOCUMENTATION_OPTIONS,
    APIRoute,
    APIRouter,
    RouteSpec,
    make_api_route,
    plan_route_dependencies,
)
from rawbg.errors import RouteDefinitionError
from rawbg.responses import JSONResponse
from rawbg.types import Handler


class WebhookRouter(APIRouter):
    """``app.webhooks``: each route is planned as it is declared, into an `APIRoute`, so
    that ``app.webhooks.routes`` lists `APIRoute` objects, as FastAPI's does (a webhook is
    described, never served nor included)."""

    def add_api_route(
        self, path: str, handler: Handler, *, methods: Sequence[str] | None = None, **options: Any
    ) -> None:
        super().add_api_route(path, handler, methods=methods, **options)
        spec = self.routes.pop()
        self.routes.append(cast(Any, _plan_spec(spec)))


def as_api_route(route: Any) -> APIRoute | None:
    """`route` as an `APIRoute`: itself, a `RouteSpec` planned, or None for anything else."""
    if isinstance(route, APIRoute):
        return route if hasattr(route, "plan") else None  # made, never registered: no plan
    if not isinstance(route, RouteSpec):
        return None
    return _plan_spec(route)


def _plan_spec(spec: RouteSpec) -> APIRoute:
    label = f"{'/'.join(spec.methods)} {spec.path}"
    path_params = frozenset(parameter_names(spec.path))
    options = dict(spec.options)
    try:
        plan = plan_call(spec.handler, path_params=path_params)
        if spec.dependencies:
            planned = plan_route_dependencies(spec.dependencies, path_params=path_params)
            plan = dataclasses.replace(plan, params=(*planned, *plan.params))
    except RouteDefinitionError as exc:
        raise RouteDefinitionError(f"{exc} [route {label}]") from None
    response_class = options.get("response_class") or JSONResponse
    route_class = options.get("route_class") or APIRoute
    return make_api_route(
        route_class,
        spec.path,
        spec.handler,
        methods=spec.methods,
        plan=plan,
        embed_body=should_embed_body(plan),
        status_code=options.get("status_code"),
        response_class=response_class,
        response_model=resolve_response_model(spec.handler, options.get("response_model", DEFAULT)),
        documentation={k: v for k, v in options.items() if k in DOCUMENTATION_OPTIONS},
    )
