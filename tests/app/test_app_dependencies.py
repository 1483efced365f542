"""Depends: spellings, nesting, the per-request cache, threads, generator clean-up and scopes."""

import asyncio
import threading
from collections import Counter
from typing import Annotated

import pytest

from rawbg import App, BackgroundTasks, Depends, HTTPException, Request, RouteDefinitionError
from rawbg.testing import serve_app

#: the pages App() registers before any route: Swagger UI, its OAuth2 redirect, ReDoc
DOCS_PAGES = ["/docs", "/docs/oauth2-redirect", "/redoc"]

# How long a test waits for a response it expects, rather than hanging.
WAIT = 5.0


# -- spellings and nesting -----------------------------------------------------


async def test_depends_as_a_default_and_in_annotated():
    app = App()

    def shout(q: str = "quiet"):
        return q.upper()

    @app.get("/default")
    async def with_default(value: str = Depends(shout)):
        return value

    @app.get("/annotated")
    async def with_annotated(value: Annotated[str, Depends(shout)]):
        return value

    async with serve_app(app, in_memory=True) as client:
        for path in ("/default", "/annotated"):
            assert (await client.get(path)).body == b'"QUIET"', path
            assert (await client.get(f"{path}?q=hey")).body == b'"HEY"', path


async def test_depends_without_a_callable_calls_the_annotated_class():
    app = App()

    class Paging:
        def __init__(self, skip: int = 0, limit: int = 10):
            self.skip = skip
            self.limit = limit

    @app.get("/items")
    async def items(paging: Annotated[Paging, Depends()]):
        assert isinstance(paging, Paging)
        return [paging.skip, paging.limit]

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/items")).body == b"[0,10]"
        assert (await client.get("/items?skip=5&limit=2")).body == b"[5,2]"


def nested_app(calls: list[str]) -> App:
    app = App()

    def level3(c: int = 3):
        calls.append("level3")
        return [f"c={c}"]

    async def level2(b: int, deeper: Annotated[list, Depends(level3)]):
        calls.append("level2")
        return [f"b={b}", *deeper]

    def level1(a: str, deeper: list = Depends(level2)):
        calls.append("level1")
        return [f"a={a}", *deeper]

    @app.get("/nested/{item_id}")
    async def handler(item_id: int, chain: Annotated[list, Depends(level1)], d: bool = False):
        calls.append("handler")
        return {"item_id": item_id, "chain": chain, "d": d}

    return app


async def test_nested_dependencies_each_read_their_own_query_parameters():
    calls: list[str] = []
    async with serve_app(nested_app(calls), in_memory=True) as client:
        response = await client.get("/nested/9?a=x&b=2&c=30&d=yes")
        assert response.status_code == 200
        assert response.json() == {"item_id": 9, "chain": ["a=x", "b=2", "c=30"], "d": True}
        assert calls == ["level3", "level2", "level1", "handler"]

        calls.clear()
        response = await client.get("/nested/9?a=x&b=2")
        assert response.json() == {"item_id": 9, "chain": ["a=x", "b=2", "c=3"], "d": False}


async def test_invalid_parameters_of_nested_dependencies_are_all_reported_and_nothing_runs():
    calls: list[str] = []
    async with serve_app(nested_app(calls), in_memory=True) as client:
        response = await client.get("/nested/x?c=three")
        assert response.status_code == 422
        assert response.json() == {
            # FastAPI's order: the deepest dependency's errors first, then each caller's
            "detail": [
                {
                    "type": "int_parsing",
                    "loc": ["query", "c"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": "three",
                },
                {"type": "missing", "loc": ["query", "b"], "msg": "Field required", "input": None},
                {"type": "missing", "loc": ["query", "a"], "msg": "Field required", "input": None},
                {
                    "type": "int_parsing",
                    "loc": ["path", "item_id"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": "x",
                },
            ]
        }
    assert calls == []


async def test_dependencies_get_path_parameters_the_request_and_can_raise_http_errors():
    app = App()
    calls: list[str] = []

    def current_owner(owner: str, request: Request):
        calls.append("current_owner")
        if request.headers.get("x-token") != f"token-{owner}":
            raise HTTPException(401, "bad token", headers={"WWW-Authenticate": "Bearer"})
        return owner

    @app.get("/owners/{owner}/things")
    async def things(owner: Annotated[str, Depends(current_owner)]):
        calls.append("handler")
        return {"owner": owner}

    async with serve_app(app, in_memory=True) as client:
        response = await client.get("/owners/ada/things", headers={"X-Token": "token-ada"})
        assert (response.status_code, response.json()) == (200, {"owner": "ada"})
        response = await client.get("/owners/ada/things", headers={"X-Token": "nope"})
        assert response.status_code == 401
        assert response.json() == {"detail": "bad token"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert calls == ["current_owner", "handler", "current_owner"]


# -- the per-request cache -----------------------------------------------------


def cache_app(counts: Counter) -> App:
    app = App()

    def shared():
        counts["shared"] += 1
        return object()

    def left(value: Annotated[object, Depends(shared)]):
        return value

    async def right(value: object = Depends(shared)):
        return value

    def fresh(value: Annotated[object, Depends(shared, use_cache=False)]):
        return value

    @app.get("/cached")
    async def cached(
        a: Annotated[object, Depends(left)],
        b: Annotated[object, Depends(right)],
        c: Annotated[object, Depends(shared)],
    ):
        return {"same": a is b is c}

    @app.get("/uncached")
    async def uncached(
        a: Annotated[object, Depends(shared, use_cache=False)],
        b: Annotated[object, Depends(shared, use_cache=False)],
        c: Annotated[object, Depends(fresh)],
    ):
        return {"distinct": len({id(a), id(b), id(c)})}

    return app


async def test_a_dependency_used_several_times_runs_once_per_request():
    counts: Counter = Counter()
    async with serve_app(cache_app(counts), in_memory=True) as client:
        assert (await client.get("/cached")).json() == {"same": True}
        assert counts["shared"] == 1
        assert (await client.get("/cached")).json() == {"same": True}
        assert counts["shared"] == 2  # once per request, not once for ever


async def test_use_cache_false_runs_the_dependency_each_time_it_is_needed():
    counts: Counter = Counter()
    async with serve_app(cache_app(counts), in_memory=True) as client:
        assert (await client.get("/uncached")).json() == {"distinct": 3}
        assert counts["shared"] == 3


# -- threads -------------------------------------------------------------------


async def test_def_dependencies_run_in_a_worker_thread_and_async_def_on_the_loop():
    app = App()
    threads: dict[str, threading.Thread] = {}

    def sync_dep():
        threads["sync"] = threading.current_thread()
        return "s"

    async def async_dep():
        threads["async"] = threading.current_thread()
        return "a"

    def sync_gen():
        threads["sync generator set-up"] = threading.current_thread()
        yield "g"
        threads["sync generator clean-up"] = threading.current_thread()

    @app.get("/")
    async def handler(
        s: Annotated[str, Depends(sync_dep)],
        a: Annotated[str, Depends(async_dep)],
        g: Annotated[str, Depends(sync_gen)],
    ):
        return s + a + g

    loop_thread = threading.current_thread()
    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/")).body == b'"sag"'
        await client.wait_for_background()
    assert threads["async"] is loop_thread
    for name in ("sync", "sync generator set-up", "sync generator clean-up"):
        assert threads[name] is not loop_thread, name


# -- generator dependencies: clean-up order and errors -------------------------


def generator_app(events: list[str]) -> App:
    """Three generator dependencies, set up outer -> middle -> inner."""
    app = App()

    def outer():
        events.append("set up outer")
        try:
            yield "outer"
        except Exception as exc:
            events.append(f"outer saw {exc!r}")
            raise
        finally:
            events.append("clean up outer")

    async def middle(o: Annotated[str, Depends(outer)]):
        events.append("set up middle")
        try:
            yield f"middle({o})"
        except Exception as exc:
            events.append(f"middle saw {exc!r}")
            raise
        finally:
            events.append("clean up middle")

    def inner(m: Annotated[str, Depends(middle)]):
        events.append("set up inner")
        try:
            yield f"inner({m})"
        except Exception as exc:
            events.append(f"inner saw {exc!r}")
            raise
        finally:
            events.append("clean up inner")

    @app.get("/ok")
    async def ok(value: Annotated[str, Depends(inner)]):
        events.append("handler")
        return value

    @app.get("/crash")
    def crash(value: Annotated[str, Depends(inner)]):
        events.append("handler")
        raise RuntimeError("boom")

    @app.get("/refuse")
    async def refuse(value: Annotated[str, Depends(inner)]):
        events.append("handler")
        raise HTTPException(409, "conflict")

    return app


async def test_generator_dependencies_clean_up_in_reverse_order_of_set_up():
    events: list[str] = []
    async with serve_app(generator_app(events), in_memory=True) as client:
        response = await client.get("/ok")
        assert response.body == b'"inner(middle(outer))"'
        await client.wait_for_background()
    assert events == [
        "set up outer",
        "set up middle",
        "set up inner",
        "handler",
        "clean up inner",
        "clean up middle",
        "clean up outer",
    ]


async def test_generator_dependencies_see_the_handler_exception_and_still_clean_up(caplog):
    events: list[str] = []
    async with serve_app(generator_app(events), in_memory=True) as client:
        response = await client.get("/crash")
        assert (response.status_code, response.body) == (500, b"Internal Server Error")
        await client.wait_for_background()
        seen = "RuntimeError('boom')"
        assert events == [
            "set up outer",
            "set up middle",
            "set up inner",
            "handler",
            f"inner saw {seen}",
            "clean up inner",
            f"middle saw {seen}",
            "clean up middle",
            f"outer saw {seen}",
            "clean up outer",
        ]

        events.clear()
        response = await client.get("/refuse")
        assert (response.status_code, response.json()) == (409, {"detail": "conflict"})
        await client.wait_for_background()
        seen = "HTTPException(status_code=409, detail='conflict')"
        assert events == [
            "set up outer",
            "set up middle",
            "set up inner",
            "handler",
            f"inner saw {seen}",
            "clean up inner",
            f"middle saw {seen}",
            "clean up middle",
            f"outer saw {seen}",
            "clean up outer",
        ]
    # the exception the generators re-raised is the handler's: not a clean-up failure
    assert not [r for r in caplog.records if "clean-up" in r.getMessage()]


async def test_a_failing_clean_up_is_logged_and_the_earlier_ones_still_run(caplog):
    app = App()
    events: list[str] = []

    def first():
        try:
            yield 1
        except Exception as exc:  # the clean-up of `second` failed
            events.append(f"first saw {exc!r}")
            raise
        finally:
            events.append("clean up first")

    async def second(f: Annotated[int, Depends(first)]):
        yield 2
        raise ValueError("clean-up failed")

    @app.get("/")
    async def handler(s: Annotated[int, Depends(second)]):
        return s

    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/")).body == b"2"
        await client.wait_for_background()
        assert (await client.get("/")).body == b"2"  # still serving
        await client.wait_for_background()
    assert events == ["first saw ValueError('clean-up failed')", "clean up first"] * 2
    failures = [r for r in caplog.records if r.name == "rawbg.background"]
    assert [r.getMessage() for r in failures] == [
        "clean-up of the dependencies of GET / failed"
    ] * 2
    assert isinstance(failures[0].exc_info[1], ValueError)


# -- scopes: when the clean-up runs --------------------------------------------


class Session:
    def __init__(self) -> None:
        self.closed = False


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_request_scope_cleans_up_after_the_response_and_after_the_background_tasks(kind):
    app = App()
    events: list[str] = []
    response_received = asyncio.Event()
    response_received_in_thread = threading.Event()

    if kind == "async":

        async def get_session():
            session = Session()
            events.append("session opened")
            yield session
            # not in a `finally`: only a proper clean-up gets here, not the
            # GeneratorExit of a generator dropped without one
            session.closed = True
            events.append("session closed")

        async def use_session(session: Session, n: int):
            await asyncio.wait_for(response_received.wait(), WAIT)
            events.append(f"task {n} (session closed: {session.closed})")
    else:

        def get_session():
            session = Session()
            events.append("session opened")
            yield session
            # not in a `finally`: only a proper clean-up gets here, not the
            # GeneratorExit of a generator dropped without one
            session.closed = True
            events.append("session closed")

        def use_session(session: Session, n: int):
            assert response_received_in_thread.wait(WAIT)
            events.append(f"task {n} (session closed: {session.closed})")

    @app.post("/orders")
    async def create_order(
        background_tasks: BackgroundTasks, session: Annotated[Session, Depends(get_session)]
    ):
        events.append("handler")
        background_tasks.add_task(use_session, session, 1)
        background_tasks.add_task(use_session, session, 2)
        return {"created": True}

    async with serve_app(app, in_memory=True) as client:
        # The tasks wait for this test to have the response: a server that ran
        # them (or the clean-up) before responding would time out here.
        async with asyncio.timeout(WAIT):
            response = await client.post("/orders")
        assert response.json() == {"created": True}
        events.append("response received")
        response_received.set()
        response_received_in_thread.set()
        await client.wait_for_background()
    assert events == [
        "session opened",
        "handler",
        "response received",
        "task 1 (session closed: False)",
        "task 2 (session closed: False)",
        "session closed",
    ]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_function_scope_cleans_up_before_the_response_is_sent(kind):
    app = App()
    events: list[str] = []
    response_received = asyncio.Event()

    if kind == "async":

        async def get_session():
            session = Session()
            events.append("session opened")
            yield session
            # not in a `finally`: only a proper clean-up gets here, not the
            # GeneratorExit of a generator dropped without one
            session.closed = True
            events.append("session closed")
    else:

        def get_session():
            session = Session()
            events.append("session opened")
            yield session
            # not in a `finally`: only a proper clean-up gets here, not the
            # GeneratorExit of a generator dropped without one
            session.closed = True
            events.append("session closed")

    async def use_session(session: Session):
        await asyncio.wait_for(response_received.wait(), WAIT)
        events.append(f"task (session closed: {session.closed})")

    @app.post("/orders")
    async def create_order(
        background_tasks: BackgroundTasks,
        session: Annotated[Session, Depends(get_session, scope="function")],
    ):
        events.append("handler")
        background_tasks.add_task(use_session, session)
        return {"created": True}

    async with serve_app(app, in_memory=True) as client:
        async with asyncio.timeout(WAIT):
            response = await client.post("/orders")
        assert response.json() == {"created": True}
        events.append("response received")
        response_received.set()
        await client.wait_for_background()
    assert events == [
        "session opened",
        "handler",
        "session closed",
        "response received",
        "task (session closed: True)",
    ]


async def test_both_scopes_unwind_before_the_error_response_when_the_handler_raises():
    # As in FastAPI: a failed request's exception goes through every generator
    # dependency before the response is chosen (one may turn it into another).
    app = App()
    events: list[str] = []

    async def per_function():
        try:
            yield "f"
        except Exception as exc:
            events.append(f"function scope saw {exc!r}")
            raise

    async def per_request():
        try:
            yield "r"
        except Exception as exc:
            events.append(f"request scope saw {exc!r}")
            raise

    @app.get("/")
    async def handler(
        f: Annotated[str, Depends(per_function, scope="function")],
        r: Annotated[str, Depends(per_request)],
    ):
        events.append("handler")
        raise HTTPException(400, "no")

    async with serve_app(app, in_memory=True) as client:
        async with asyncio.timeout(WAIT):
            response = await client.get("/")
        assert (response.status_code, response.json()) == (400, {"detail": "no"})
        events.append("response received")
        await client.wait_for_background()
    assert events == [
        "handler",
        "function scope saw HTTPException(status_code=400, detail='no')",
        "request scope saw HTTPException(status_code=400, detail='no')",
        "response received",
    ]


async def test_depends_scope_must_be_request_or_function():
    with pytest.raises(ValueError, match="scope must be 'request' or 'function', not 'app'"):
        Depends(lambda: None, scope="app")


# -- registration errors -------------------------------------------------------


# A cycle needs names that exist when the route is registered: module-level
# functions whose string annotations are evaluated then.
def cycle_a(value: "Annotated[int, Depends(cycle_b)]"):
    return value


def cycle_b(other: "Annotated[int, Depends(cycle_a)]"):
    return other


def register_cycle() -> None:
    app = App()

    @app.get("/cycle")
    async def cyclic(start: Annotated[int, Depends(cycle_a)]):
        return start


async def test_a_dependency_cycle_is_refused_at_registration_naming_the_functions():
    with pytest.raises(RouteDefinitionError) as raised:
        register_cycle()
    message = str(raised.value)
    where, _, chain_text = message.partition(" closes a dependency cycle: ")
    assert where.startswith(f"parameter 'other' of {__name__}.cycle_b (")
    chain = chain_text.split(" -> ")
    assert [link.split(" (")[0] for link in chain] == [
        f"{__name__}.register_cycle.<locals>.cyclic",
        f"{__name__}.cycle_a",
        f"{__name__}.cycle_b",
        f"{__name__}.cycle_a",
    ]
    assert "test_app_dependencies.py:" in chain[1]


async def test_a_dependency_cycle_error_names_the_parameter():
    with pytest.raises(RouteDefinitionError) as raised:
        register_cycle()
    assert "'other'" in str(raised.value)


async def test_a_parameter_nothing_can_supply_is_refused_at_registration():
    app = App()

    class Database:
        pass

    with pytest.raises(RouteDefinitionError) as raised:

        @app.get("/direct")
        async def direct(db: Database):
            return None

    message = str(raised.value)
    assert message.startswith(
        f"parameter 'db' of {__name__}.test_a_parameter_nothing_can_supply_is_refused_at_"
        "registration.<locals>.direct ("
    )
    assert f"nothing can supply a value of type {Database!r}" in message
    assert "anything else needs Depends(...)" in message

    def get_repo(db: Database):
        return db

    with pytest.raises(RouteDefinitionError) as raised:

        @app.get("/through-a-dependency")
        async def indirect(repo: Annotated[object, Depends(get_repo)]):
            return None

    message = str(raised.value)
    assert message.startswith(f"parameter 'db' of {__name__}.test_a_parameter_nothing_can_")
    assert ".<locals>.get_repo (" in message
    assert f"nothing can supply a value of type {Database!r}" in message
    # nothing was registered (but the docs pages, which App() registers first)
    assert [route.template for route in app.router] == ["/openapi.json", *DOCS_PAGES]
    assert [route.path for route in app.routes] == ["/openapi.json", *DOCS_PAGES]
