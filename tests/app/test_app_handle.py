"""`App.handle` alone: a `Request` in, an `Outcome` out (the response, and the work for after it).

No server and no socket: the connection task is what calls `App.handle`, and
these tests stand in for it.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from rawbg import App, BackgroundTasks, Depends
from rawbg.requests import Headers, Request


def request(method: str, target: str, *, body: bytes = b"", **headers: str) -> Request:
    fields = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return Request(method=method, target=target, headers=Headers(fields), body=body)


async def test_a_response_with_no_work_has_nothing_to_run_after_it():
    app = App()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    outcome = await app.handle(request("GET", "/items/3"))
    assert (outcome.response.status_code, outcome.response.body) == (200, b'{"item_id":3}')
    assert outcome.after is None


async def test_the_queued_tasks_are_handed_back_in_order_and_not_run():
    app = App()
    ran: list[str] = []

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> None:
        background_tasks.add_task(ran.append, "first")
        background_tasks.add_task(ran.append, "second")

    outcome = await app.handle(request("POST", "/work"))
    assert outcome.after is not None
    assert [task.args for task in outcome.after.tasks] == [("first",), ("second",)]
    assert outcome.after.label == "POST /work"
    assert ran == []  # the connection task runs them, once the response is flushed


async def test_a_generator_dependency_is_closed_after_the_response_not_before():
    app = App()
    events: list[str] = []

    async def session() -> AsyncIterator[str]:
        events.append("opened")
        yield "session"
        events.append("closed")

    @app.get("/")
    async def handler(value: Annotated[str, Depends(session)]) -> str:
        return value

    outcome = await app.handle(request("GET", "/"))
    assert outcome.response.body == b'"session"'
    assert events == ["opened"]
    assert outcome.after is not None and outcome.after.cleanup is not None
    await outcome.after.cleanup()
    assert events == ["opened", "closed"]


async def test_an_unknown_path_is_a_404_and_a_known_path_with_another_method_a_405():
    app = App()

    @app.get("/only-get")
    async def only_get() -> None:
        return None

    missing = await app.handle(request("GET", "/nowhere"))
    assert (missing.response.status_code, missing.response.body) == (
        404,
        b'{"detail":"Not Found"}',
    )
    wrong_method = await app.handle(request("DELETE", "/only-get"))
    assert wrong_method.response.status_code == 405
    assert wrong_method.response.headers["allow"] == "GET, HEAD"


async def test_a_handler_that_raises_is_answered_with_a_500_and_its_tasks_are_dropped():
    app = App()

    @app.get("/boom")
    async def boom(background_tasks: BackgroundTasks) -> None:
        background_tasks.add_task(print, "never")
        raise RuntimeError("boom")

    outcome = await app.handle(request("GET", "/boom"))
    assert outcome.response.status_code == 500
    assert outcome.after is None  # its task is dropped, not run


async def test_an_invalid_parameter_is_a_422_in_fastapis_shape():
    app = App()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        return item_id

    outcome = await app.handle(request("GET", "/items/x"))
    assert outcome.response.status_code == 422
    assert b'"loc":["path","item_id"]' in outcome.response.body
