"""A small shop with every kind of parameter, served by a real rawbg for schemathesis.

``python -m rawbg tests.support.openapi_app:app``: path, query, header and
cookie parameters with checks, enums, a model body, an embedded body, a
dataclass body, response models, a declared 404, route dependencies and a
router. Each answer is one its document promises (tests/app/test_openapi_conformance.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from rawbg import APIRouter, App, Body, Cookie, Depends, Header, HTTPException, Path, Query


class Kind(enum.StrEnum):
    book = "book"
    game = "game"


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    price: float = Field(gt=0, le=10_000)
    kind: Kind = Kind.book
    tags: list[str] = Field(default_factory=list, max_length=5)


class Item(ItemIn):
    id: int


class Message(BaseModel):
    detail: str


@dataclasses.dataclass
class Review:
    stars: int
    text: str = ""


app = App(title="Conformance shop", version="1.0.0")
ITEMS: dict[int, Item] = {
    1: Item(id=1, name="Pen", price=1.5, kind=Kind.book, tags=["office"]),
    2: Item(id=2, name="Chess", price=20.0, kind=Kind.game, tags=[]),
}
NOT_FOUND = {404: {"model": Message, "description": "No such item"}}


def paging(
    skip: Annotated[int, Query(ge=0, le=1000)] = 0,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> tuple[int, int]:
    return skip, limit


router = APIRouter(prefix="/items", tags=["items"])


@router.get("/", response_model=list[Item])
async def list_items(
    page: Annotated[tuple[int, int], Depends(paging)],
    kind: Kind | None = None,
    q: Annotated[str | None, Query(max_length=20)] = None,
) -> list[Item]:
    skip, limit = page
    found = [i for i in ITEMS.values() if kind is None or i.kind == kind]
    if q is not None:
        found = [i for i in found if q.lower() in i.name.lower()]
    return found[skip : skip + limit]


@router.get("/{item_id}", response_model=Item, responses=NOT_FOUND)
async def read_item(item_id: Annotated[int, Path(ge=1, le=1_000_000)]) -> Item:
    item = ITEMS.get(item_id)
    if item is None:
        raise HTTPException(404, "No such item")
    return item


@router.post("/", response_model=Item, status_code=201)
async def add_item(item: ItemIn) -> Item:
    return Item(id=len(ITEMS) + 1, **item.model_dump())


@router.put("/{item_id}/price", response_model=Item, responses=NOT_FOUND)
async def set_price(
    item_id: Annotated[int, Path(ge=1, le=1_000_000)],
    price: Annotated[float, Body(embed=True, gt=0, le=10_000)],
) -> Item:
    item = ITEMS.get(item_id)
    if item is None:
        raise HTTPException(404, "No such item")
    return item.model_copy(update={"price": price})


@router.post("/{item_id}/reviews", status_code=201, responses=NOT_FOUND)
async def review(
    item_id: Annotated[int, Path(ge=1, le=1_000_000)], review: Review
) -> dict[str, int]:
    if item_id not in ITEMS:
        raise HTTPException(404, "No such item")
    return {"stars": review.stars}


app.include_router(router)


@app.get("/hello/{name}")
async def hello(
    name: Annotated[str, Path(min_length=1, max_length=20, pattern="^[a-z]+$")],
    mode: Literal["short", "long"] = "short",
    x_greeting: Annotated[str | None, Header(max_length=10, pattern="^[A-Za-z]+$")] = None,
    session: Annotated[str | None, Cookie(max_length=10, pattern="^[a-z0-9]+$")] = None,
) -> dict[str, str]:
    greeting = x_greeting or "Hello"
    text = f"{greeting}, {name}" if mode == "short" else f"{greeting}, dear {name}"
    return {"text": text, "session": session or ""}


@app.get("/time")
async def now(tz: Annotated[int, Query(ge=-12, le=14)] = 0) -> dict[str, str]:
    zone = datetime.timezone(datetime.timedelta(hours=tz))
    return {
        "now": datetime.datetime(2024, 1, 1, tzinfo=zone).isoformat(),
        "id": str(uuid.UUID(int=tz + 12)),
    }
