"""Exception handlers: by class (along the MRO) or status code, the defaults, and failures."""

import dataclasses
import logging
import threading
from typing import Annotated

import pytest

from rawbg import (
    App,
    Depends,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    Request,
    RequestValidationError,
    Response,
)
from rawbg.encoders import jsonable_encoder
from rawbg.errors import DependencySwallowedError
from rawbg.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from rawbg.testing import serve_app


class UnicornException(Exception):
    def __init__(self, name: str):
        self.name = name


class ShinyUnicornException(UnicornException):
    pass


async def test_a_handler_for_an_exception_class_answers_it():
    app = App()

    @app.exception_handler(UnicornException)
    async def unicorn_exception_handler(request: Request, exc: UnicornException):
        return JSONResponse(
            status_code=418,
            content={"message": f"Oops! {exc.name} did something. There goes a rainbow..."},
        )

    @app.get("/unicorns/{name}")
    async def read_unicorn(name: str):
        if name == "yolo":
            raise UnicornException(name=name)
        return {"unicorn_name": name}

    async with serve_app(app) as client:
        response = await client.get("/unicorns/shinny")
        assert (response.status_code, response.json()) == (200, {"unicorn_name": "shinny"})
        response = await client.get("/unicorns/yolo")
        assert response.status_code == 418
        assert response.json() == {"message": "Oops! yolo did something. There goes a rainbow..."}


async def test_the_closest_class_along_the_mro_wins():
    app = App()

    async def general(request, exc):
        return PlainTextResponse("general", status_code=400)

    async def shiny(request, exc):
        return PlainTextResponse("shiny", status_code=401)

    app.add_exception_handler(UnicornException, general)

    @app.get("/{kind}")
    async def raiser(kind: str):
        raise (ShinyUnicornException if kind == "shiny" else UnicornException)(kind)

    async with serve_app(app) as client:
        assert (await client.get("/shiny")).text == "general"  # a subclass finds its base's
        app.add_exception_handler(ShinyUnicornException, shiny)
        assert (await client.get("/shiny")).text == "shiny"
        assert (await client.get("/plain")).text == "general"


async def test_a_status_code_handler_answers_http_exceptions_and_the_routers_404():
    app = App()

    @app.exception_handler(404)
    async def not_found(request: Request, exc: HTTPException):
        return PlainTextResponse(f"no {request.url.path} here ({exc.detail})", status_code=404)

    @app.get("/items/{item_id}")
    async def read_item(item_id: str):
        if item_id == "gone":
            raise HTTPException(404, "Item not found")
        raise HTTPException(403, "Forbidden item")

    async with serve_app(app) as client:
        response = await client.get("/nowhere")
        assert (response.status_code, response.text) == (404, "no /nowhere here (Not Found)")
        response = await client.get("/items/gone")
        assert response.text == "no /items/gone here (Item not found)"
        response = await client.get("/items/x")  # other statuses keep the default
        assert (response.status_code, response.json()) == (403, {"detail": "Forbidden item"})


def override_app() -> App:
    app = App()

    @app.exception_handler(HTTPException)
    async def custom_http_exception_handler(request, exc):
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_exception_handler(request, exc: RequestValidationError):
        message = "Validation errors:"
        for error in exc.errors():
            message += f"\nField: {error['loc']}, Error: {error['msg']}"
        return PlainTextResponse(message, status_code=400)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        if item_id == 3:
            raise HTTPException(status_code=418, detail="Nope! I don't like 3.")
        return {"item_id": item_id}

    return app


async def test_the_default_handlers_can_be_replaced():
    async with serve_app(override_app()) as client:
        response = await client.get("/items/foo")
        assert response.status_code == 400
        assert response.text.startswith("Validation errors:\nField: ('path', 'item_id'), Error: ")
        response = await client.get("/items/3")
        assert (response.status_code, response.body) == (418, b"Nope! I don't like 3.")
        response = await client.get("/nowhere")  # the router's 404 is an HTTPException too
        assert (response.status_code, response.body) == (404, b"Not Found")
        assert (await client.get("/items/2")).json() == {"item_id": 2}


async def test_a_handler_can_hand_over_to_the_reusable_defaults():
    app = App()
    seen: list[str] = []

    @app.exception_handler(HTTPException)
    async def custom_http_exception_handler(request, exc):
        seen.append(f"OMG! An HTTP error!: {exc!r}")
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_exception_handler(request, exc):
        seen.append(f"OMG! The client sent invalid data!: {exc}")
        return await request_validation_exception_handler(request, exc)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        if item_id == 3:
            raise HTTPException(status_code=418, detail="Nope! I don't like 3.", headers={"x": "1"})
        return {"item_id": item_id}

    async with serve_app(app) as client:
        response = await client.get("/items/foo")
        assert response.status_code == 422
        [entry] = response.json()["detail"]
        assert (entry["loc"], entry["input"]) == (["path", "item_id"], "foo")
        response = await client.get("/items/3")
        assert (response.status_code, response.json()) == (418, {"detail": "Nope! I don't like 3."})
        assert response.headers["x"] == "1"
    assert seen[0].startswith("OMG! The client sent invalid data!: 1 validation error(s):")
    assert (
        seen[1]
        == 'OMG! An HTTP error!: HTTPException(status_code=418, detail="Nope! I don\'t like 3.")'
    )


@dataclasses.dataclass
class Item:
    title: str
    size: int


async def test_a_validation_error_carries_its_errors_and_the_body_as_received():
    app = App()

    @app.exception_handler(RequestValidationError)
    async def validation_exception_handler(request: Request, exc: RequestValidationError):
        return JSONResponse(
            status_code=422,
            content=jsonable_encoder({"detail": exc.errors(), "body": exc.body}),
        )

    @app.post("/items/")
    async def create_item(item: Item):
        return item

    async with serve_app(app) as client:
        response = await client.post("/items/", json={"title": "towel", "size": "XL"})
        assert response.status_code == 422
        document = response.json()
        assert document["body"] == {"title": "towel", "size": "XL"}
        assert [e["loc"] for e in document["detail"]] == [["body", "size"]]
        response = await client.post(
            "/items/", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.json()["body"] == "{not json"
        response = await client.post("/items/", json={"title": "towel", "size": 5})
        assert response.json() == {"title": "towel", "size": 5}


def test_request_validation_error_has_fastapis_interface():
    exc = RequestValidationError(
        [{"type": "missing", "loc": ["query", "q"], "msg": "Field required"}], body={"a": 1}
    )
    assert exc.errors() == [{"type": "missing", "loc": ("query", "q"), "msg": "Field required"}]
    assert exc.body == {"a": 1}
    assert not isinstance(exc, HTTPException)  # as in FastAPI: HTTPException handlers skip it
    assert str(HTTPException(404, "gone")) == "404: gone"


async def test_http_exception_headers_are_sent_and_a_bodiless_status_has_no_body():
    app = App()

    @app.get("/items-header/{item_id}")
    async def read_item_header(item_id: str):
        if item_id == "cached":
            raise HTTPException(304, headers={"etag": '"v1"'})
        raise HTTPException(404, "Item not found", headers={"X-Error": "There goes my error"})

    async with serve_app(app) as client:
        response = await client.get("/items-header/bar")
        assert (response.status_code, response.json()) == (404, {"detail": "Item not found"})
        assert response.headers["x-error"] == "There goes my error"
        response = await client.get("/items-header/cached")
        assert (response.status_code, response.body) == (304, b"")
        assert response.headers["etag"] == '"v1"'


async def test_a_catch_all_handler_answers_and_the_error_is_still_logged(caplog):
    app = App(exception_handlers={Exception: lambda request, exc: PlainTextResponse("sorry", 503)})
    threads: list[int] = []

    def sync_handler(request, exc):
        threads.append(threading.get_ident())
        return PlainTextResponse("key", status_code=400)

    app.add_exception_handler(KeyError, sync_handler)

    @app.get("/{what}")
    async def fail(what: str):
        raise (KeyError if what == "key" else ZeroDivisionError)(what)

    async with serve_app(app) as client:
        with caplog.at_level(logging.ERROR, logger="rawbg.app"):
            response = await client.get("/zero")
            assert (response.status_code, response.text) == (503, "sorry")
            response = await client.get("/key")
            assert (response.status_code, response.text) == (400, "key")
    errors = [r for r in caplog.records if r.name == "rawbg.app"]
    assert [r.getMessage() for r in errors] == ["handler of GET /{what} raised"]
    assert isinstance(errors[0].exc_info[1], ZeroDivisionError)
    assert threads and threads[0] != threading.get_ident()  # a def handler runs in a thread


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (lambda request, exc: 1 / 0, "division by zero"),
        (
            lambda request, exc: {"not": "a response"},
            "it returned {'not': 'a response'}, not a Response",
        ),
    ],
)
async def test_a_failing_exception_handler_is_a_500_with_a_log_line(caplog, handler, reason):
    app = App()
    app.add_exception_handler(UnicornException, handler)

    @app.get("/")
    async def main():
        raise UnicornException("x")

    async with serve_app(app) as client:
        response = await client.get("/")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
    [record] = [r for r in caplog.records if r.name == "rawbg.app"]
    assert record.getMessage() == (
        f"exception handler <lambda> for UnicornException of GET / failed: {reason}"
    )


# -- generator dependencies turning an exception into another ---------------------


class OwnerError(Exception):
    pass


def owner_app(events: list[str]) -> App:
    app = App()
    data = {"plumbus": {"owner": "Morty"}, "portal-gun": {"owner": "Rick"}}

    def get_username():
        try:
            yield "Rick"
        except OwnerError as e:
            events.append("dependency turned it into a 400")
            raise HTTPException(status_code=400, detail=f"Owner error: {e}") from e

    def swallowing():
        try:
            yield "Rick"
        except OwnerError:
            events.append("dependency swallowed it")

    @app.get("/items/{item_id}")
    def get_item(item_id: str, username: Annotated[str, Depends(get_username)]):
        if item_id not in data:
            raise HTTPException(status_code=404, detail="Item not found")
        item = data[item_id]
        if item["owner"] != username:
            raise OwnerError(username)
        return item

    @app.get("/swallowed")
    def swallowed(username: Annotated[str, Depends(swallowing)]):
        raise OwnerError(username)

    return app


async def test_an_http_exception_raised_while_a_dependency_unwinds_becomes_the_response():
    events: list[str] = []
    async with serve_app(owner_app(events)) as client:
        response = await client.get("/items/plumbus")
        assert (response.status_code, response.json()) == (400, {"detail": "Owner error: Rick"})
        response = await client.get("/items/portal-gun")
        assert (response.status_code, response.json()) == (200, {"owner": "Rick"})
        response = await client.get("/items/nope")
        assert (response.status_code, response.json()) == (404, {"detail": "Item not found"})
    assert events == ["dependency turned it into a 400"]


async def test_a_dependency_that_swallows_the_exception_leaves_a_500_and_says_so(caplog):
    events: list[str] = []
    async with serve_app(owner_app(events)) as client:
        response = await client.get("/swallowed")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert events == ["dependency swallowed it"]
    [record] = [r for r in caplog.records if r.name == "rawbg.app"]
    message = str(record.exc_info[1])
    assert message.startswith("GET /swallowed has no response: its handler was raising")
    assert "caught it (OwnerError('Rick')) without re-raising it" in message
    assert isinstance(record.exc_info[1], DependencySwallowedError)


# -- registration ---------------------------------------------------------------------


def test_exception_handler_registration_refuses_what_cannot_work():
    app = App()
    with pytest.raises(TypeError, match="an exception class or an HTTP status code, not 'oops'"):
        app.exception_handler("oops")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not <class 'int'>"):
        app.add_exception_handler(int, lambda request, exc: Response())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 100-599, not 999"):
        app.add_exception_handler(999, lambda request, exc: Response())
    with pytest.raises(TypeError, match=r"must accept \(request, exc\)"):
        app.add_exception_handler(KeyError, lambda exc: Response())
    with pytest.raises(TypeError, match="must be callable"):
        app.add_exception_handler(KeyError, "handler")  # type: ignore[arg-type]


async def test_trace_says_which_exception_handler_answered(caplog):
    app = override_app()
    async with serve_app(app, trace=True) as client:
        with caplog.at_level(logging.INFO, logger="rawbg.trace"):
            await client.get("/items/3")
    lines = [r.getMessage() for r in caplog.records if r.name == "rawbg.trace"]
    [line] = [line for line in lines if "exception handler answered" in line]
    assert line.endswith(
        "handler=override_app.<locals>.custom_http_exception_handler "
        "exception=HTTPException status=418"
    )


async def test_a_background_task_an_exception_handler_attaches_runs_after_its_response():
    from rawbg import BackgroundTask, BackgroundTasks

    app = App()
    events: list[str] = []

    @app.exception_handler(UnicornException)
    async def report(request, exc):
        return PlainTextResponse(
            "reported", 500, background=BackgroundTask(events.append, "report")
        )

    @app.get("/")
    async def main(background_tasks: BackgroundTasks):
        background_tasks.add_task(events.append, "queued by the failed request")
        raise UnicornException("x")

    async with serve_app(app) as client:
        assert (await client.get("/")).text == "reported"
        await client.wait_for_background()
    assert events == ["report"]  # the failed request's own tasks are still discarded


async def test_middleware_sees_the_response_an_exception_handler_made():
    app = App()
    app.add_exception_handler(UnicornException, lambda request, exc: PlainTextResponse("no", 418))

    @app.middleware("http")
    async def stamp(request, call_next):
        response = await call_next(request)
        response.headers["x-stamped"] = str(response.status_code)
        return response

    @app.get("/")
    async def main():
        raise UnicornException("x")

    async with serve_app(app) as client:
        response = await client.get("/")
        assert (response.status_code, response.text) == (418, "no")
        assert response.headers["x-stamped"] == "418"
        response = await client.get("/missing")
        assert (response.status_code, response.headers["x-stamped"]) == (404, "404")


async def test_server_error_hooks_hear_of_every_exception_that_ends_in_a_500():
    app = App()
    heard: list[str] = []
    app.server_error_hooks.append(lambda exc: heard.append(repr(exc)))
    app.add_exception_handler(KeyError, lambda request, exc: 1 / 0)

    @app.get("/{what}")
    async def fail(what: str):
        if what == "http":
            raise HTTPException(418)
        raise (KeyError if what == "key" else ValueError)(what)

    async with serve_app(app) as client:
        for what in ("value", "key", "http"):
            await client.get(f"/{what}")
    assert heard == ["ValueError('value')", "ZeroDivisionError('division by zero')"]


async def test_server_error_hooks_hear_of_a_failing_middleware():
    app = App()
    heard: list[str] = []
    app.server_error_hooks.append(lambda exc: heard.append(repr(exc)))

    @app.middleware("http")
    async def broken(request, call_next):
        raise RuntimeError("middleware bug")

    @app.get("/")
    async def main():
        return "ok"

    async with serve_app(app) as client:
        assert (await client.get("/")).status_code == 500
    assert heard == ["RuntimeError('middleware bug')"]
