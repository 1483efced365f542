"""/docs in a real headless chromium, offline: the operations listed, "Try it out" answered.

The app serves Swagger UI's files itself (``App(offline_docs=True)``), and
chromium runs with background networking off, so the page works with no CDN.
The test clicks as a person would: opens one operation, "Try it out", types a
path parameter, "Execute", and reads the response Swagger UI shows.
``RAWBG_DOCS_SCREENSHOT=docs/img/swagger-ui.png`` also saves what it sees.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from rawbg import App, Query
from rawbg.server.server import serving
from tests.support.browser import Browser

pytestmark = [pytest.mark.service, pytest.mark.slow]


def bookshop() -> App:
    app = App(
        title="Bookshop",
        version="1.0.0",
        description="Served by **rawbg**, documented from its routes.",
        offline_docs=True,
    )
    books = {1: {"id": 1, "title": "The Art of Computer Programming", "author": "Knuth"}}

    @app.get("/books/{book_id}", tags=["books"])
    async def read_book(book_id: int) -> dict[str, object]:
        """Find one book by its id."""
        return books.get(book_id, {"id": book_id, "title": None})

    @app.get("/books", tags=["books"])
    async def search_books(q: str | None = Query(default=None, min_length=2)) -> list[object]:
        """Search the books."""
        return list(books.values())

    @app.post("/books", tags=["books"], status_code=201)
    async def add_book(title: str, author: str) -> dict[str, str]:
        return {"title": title, "author": author}

    @app.delete("/books/{book_id}", tags=["books"], deprecated=True)
    async def remove_book(book_id: int) -> None:
        return None

    return app


OPENED = "#operations-books-read_book_books__book_id__get"

EXECUTE = """(() => {
  const status = document.querySelector(
    "%(op)s .live-responses-table tbody .response-col_status"
  );
  if (status) return status.textContent.trim();
  document.querySelector("%(op)s .execute").click();
  return null;
})()"""


def try_it_out(port: int) -> tuple[list[str], str, str, bytes]:
    with Browser() as browser:
        browser.goto(f"http://127.0.0.1:{port}/docs")
        listed = browser.wait_for(
            "Array.from(document.querySelectorAll('.opblock-summary-path'))"
            ".map(e => e.getAttribute('data-path')).join(' ')"
        )
        browser.evaluate(f"document.querySelector('{OPENED} .opblock-summary-control').click()")
        browser.wait_for(f"!!document.querySelector('{OPENED} .try-out__btn')")
        browser.evaluate(f"document.querySelector('{OPENED} .try-out__btn').click()")
        book_id = f'{OPENED} input[placeholder="book_id"]'
        browser.wait_for(f"!!document.querySelector({json.dumps(book_id)})")
        browser.type_into(book_id, "1")
        # Swagger UI takes a typed value after a short debounce: Execute until it answers
        status = browser.wait_for(EXECUTE % {"op": OPENED}, every=0.5)
        body = browser.wait_for(
            f"document.querySelector('{OPENED} .live-responses-table .microlight')?.textContent"
        )
        browser.evaluate(  # the answer in the middle of the picture
            f"document.querySelector('{OPENED} .live-responses-table')"
            ".scrollIntoView({block: 'center'})"
        )
        return listed.split(), status, body, browser.screenshot()


async def test_swagger_ui_lists_the_operations_and_try_it_out_shows_the_answer() -> None:
    async with serving(bookshop(), port=0, access_log=False) as server:
        paths, status, body, png = await asyncio.to_thread(try_it_out, server.port)
    assert set(paths) == {"/books/{book_id}", "/books"}
    assert status == "200"
    assert json.loads(body) == {
        "id": 1,
        "title": "The Art of Computer Programming",
        "author": "Knuth",
    }
    assert png.startswith(b"\x89PNG")
    target = os.environ.get("RAWBG_DOCS_SCREENSHOT")
    if target:
        Path(target).write_bytes(png)
