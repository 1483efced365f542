"""``app.dependency_overrides``: a test puts its own function in place of a dependency."""

from typing import Annotated

from rawbg import App, Depends, Header
from rawbg.testing import serve_app


async def common_parameters(q: str | None = None, skip: int = 0, limit: int = 100):
    return {"q": q, "skip": skip, "limit": limit}


def database():
    yield "the real database"


def override_app(events: list[str]) -> App:
    app = App(dependencies=[Depends(lambda: events.append("app dependency"))])

    @app.get("/items/")
    async def read_items(commons: Annotated[dict, Depends(common_parameters)]):
        return {"message": "Hello Items!", "params": commons}

    def user(db: Annotated[str, Depends(database)]):
        return f"user from {db}"

    @app.get("/users/{user_id}")
    async def read_user(
        user_id: int,
        who: Annotated[str, Depends(user)],
        db: Annotated[str, Depends(database)],
    ):
        return {"user_id": user_id, "who": who, "db": db}

    return app


async def test_an_override_is_called_in_place_of_the_dependency_with_its_own_parameters():
    app = override_app([])

    async def override(q: str | None = None, token: Annotated[str, Header()] = "none"):
        return {"q": q, "skip": 5, "limit": 10, "token": token}

    async with serve_app(app) as client:
        before = (await client.get("/items/?q=x&skip=1")).json()
        app.dependency_overrides[common_parameters] = override
        during = (await client.get("/items/?q=x&skip=1", headers={"token": "t"})).json()
        app.dependency_overrides = {}
        after = (await client.get("/items/?skip=2")).json()
    assert before["params"] == {"q": "x", "skip": 1, "limit": 100}
    assert during["params"] == {"q": "x", "skip": 5, "limit": 10, "token": "t"}
    assert after["params"] == {"q": None, "skip": 2, "limit": 100}


async def test_an_override_replaces_every_use_of_the_dependency_once_per_request():
    app = override_app([])
    calls: list[int] = []

    def fake_database(user_id: int):  # an override may read what the route has: the path
        calls.append(user_id)
        yield f"the fake database of {user_id}"

    app.dependency_overrides[database] = fake_database
    async with serve_app(app) as client:
        response = await client.get("/users/7")
    assert response.json() == {
        "user_id": 7,
        "who": "user from the fake database of 7",
        "db": "the fake database of 7",
    }
    assert calls == [7]  # cached for the request, as the original would be


async def test_a_route_dependency_is_overridden_too():
    events: list[str] = []
    app = override_app(events)
    original = app.dependencies[0].dependency
    app.dependency_overrides[original] = lambda: events.append("overridden")
    async with serve_app(app) as client:
        assert (await client.get("/items/")).status_code == 200
    assert events == ["overridden"]


async def test_an_override_with_an_invalid_parameter_is_a_422_as_for_the_original():
    app = override_app([])

    def strict(limit: int):
        return {"limit": limit}

    app.dependency_overrides[common_parameters] = strict
    async with serve_app(app) as client:
        response = await client.get("/items/?limit=x")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]
