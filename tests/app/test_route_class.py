"""Custom `APIRoute` classes (``route_class``, ``get_route_handler``), as far as they go."""

import gzip
import json
from typing import Annotated

import pytest

from rawbg import (
    APIRoute,
    APIRouter,
    App,
    BackgroundTasks,
    Body,
    HTTPException,
    Request,
    RequestValidationError,
    RouteDefinitionError,
)
from rawbg.testing import serve_app


class GzipRequest(Request):
    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            body = await super().body()
            if "gzip" in self.headers.getlist("content-encoding"):
                body = gzip.decompress(body)
            self._body = body
        return self._body


class GzipRoute(APIRoute):
    def get_route_handler(self):
        original = super().get_route_handler()

        async def handler(request: Request):
            return await original(GzipRequest(request.scope, request.receive))

        return handler


class TimedRoute(APIRoute):
    def get_route_handler(self):
        original = super().get_route_handler()

        async def handler(request: Request):
            response = await original(request)
            response.headers["x-route"] = type(self).__name__
            return response

        return handler


class ErrorBodyRoute(APIRoute):
    def get_route_handler(self):
        original = super().get_route_handler()

        async def handler(request: Request):
            try:
                return await original(request)
            except RequestValidationError as exc:
                body = (await request.body()).decode()
                raise HTTPException(422, {"errors": exc.errors(), "body": body}) from None

        return handler


async def test_a_route_class_set_on_the_app_router_wraps_each_request_in_its_own_request():
    app = App()
    app.router.route_class = GzipRoute

    @app.post("/sum")
    async def total(numbers: Annotated[list[int], Body()]):
        return {"sum": sum(numbers)}

    @app.get("/class")
    async def request_class(request: Request):
        return {"class": type(request).__name__, "route": type(request.scope["route"]).__name__}

    data = json.dumps([1] * 100).encode()
    async with serve_app(app) as client:
        zipped = await client.post(
            "/sum",
            content=gzip.compress(data),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
        plain = await client.post(
            "/sum", content=data, headers={"content-type": "application/json"}
        )
        seen = await client.get("/class")
    assert zipped.json() == plain.json() == {"sum": 100}
    assert seen.json() == {"class": "GzipRequest", "route": "GzipRoute"}


async def test_a_router_route_class_applies_to_its_routes_only():
    app = App()
    router = APIRouter(route_class=TimedRoute)

    @app.get("/")
    async def plain():
        return {"timed": False}

    @router.get("/timed")
    async def timed():
        return {"timed": True}

    app.include_router(router)
    async with serve_app(app) as client:
        assert "x-route" not in (await client.get("/")).headers
        assert (await client.get("/timed")).headers["x-route"] == "TimedRoute"


async def test_a_route_handler_may_catch_the_validation_error_and_read_the_body():
    app = App()
    app.router.route_class = ErrorBodyRoute

    @app.post("/")
    async def total(numbers: Annotated[list[int], Body()]):
        return sum(numbers)

    async with serve_app(app) as client:
        assert (await client.post("/", json=[1, 2, 3])).json() == 6
        response = await client.post("/", json={"numbers": [1]})
    assert response.status_code == 422
    assert response.json()["detail"]["body"] == '{"numbers": [1]}'
    assert response.json()["detail"]["errors"][0]["type"] == "list_type"


async def test_background_tasks_still_run_after_a_custom_routes_response_is_sent():
    app = App()
    app.router.route_class = TimedRoute
    ran: list[str] = []

    @app.post("/work")
    async def work(tasks: BackgroundTasks):
        tasks.add_task(ran.append, "task")
        return {"ok": True}

    async with serve_app(app) as client:
        response = await client.post("/work")
        await client.wait_for_background()
    assert response.headers["x-route"] == "TimedRoute"
    assert ran == ["task"]


async def test_a_route_class_that_does_not_override_the_handler_changes_nothing():
    class Named(APIRoute):
        pass

    app = App()
    app.router.route_class = Named

    @app.get("/")
    async def root(request: Request):
        return {"route": type(request.scope["route"]).__name__}

    async with serve_app(app) as client:
        assert (await client.get("/")).json() == {"route": "Endpoint"}


def test_a_route_class_that_is_not_an_apiroute_is_refused():
    with pytest.raises(RouteDefinitionError, match="route_class must be an APIRoute subclass"):
        APIRouter(route_class=dict)  # type: ignore[arg-type]
