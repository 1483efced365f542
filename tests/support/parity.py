"""The same app on FastAPI and on rawbg, only its import line changed: both clients.

An app is a source text with an ``{imports}`` slot, run twice: once with
FastAPI's names, once with rawbg's. FastAPI's own TestClient asks the first,
rawbg's (over a real socket) the second; `comparable` is what a test holds
equal: the status and the JSON body.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator
from typing import Any

importlib.import_module("fastapi")
importlib.import_module("pydantic")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about httpx
    from fastapi.testclient import TestClient as FastAPIClient

from rawbg.testclient import TestClient  # noqa: E402


def build(source: str, imports: str) -> Any:
    """The ``app`` of `source`, with `imports` in its ``{imports}`` slot."""
    namespace: dict[str, Any] = {}
    # dont_inherit: the app's annotations are evaluated, not this module's postponed ones
    code = compile(source.format(imports=imports), f"<app: {imports}>", "exec", dont_inherit=True)
    exec(code, namespace)
    return namespace["app"]


@contextlib.contextmanager
def both_clients(source: str, *, fastapi: str, rawbg: str) -> Iterator[tuple[Any, TestClient]]:
    """FastAPI's client of the app with `fastapi` imports, and rawbg's with `rawbg` ones."""
    reference = FastAPIClient(build(source, fastapi))
    with TestClient(build(source, rawbg)) as ours:
        yield reference, ours


def comparable(response: Any) -> tuple[int, Any]:
    body = response.json() if response.content else None
    return response.status_code, body


def assert_same_answer(clients: tuple[Any, TestClient], method: str, target: str, **options: Any):
    """The request gets the same status and body from both apps."""
    reference, ours = clients
    expected = comparable(reference.request(method, target, **options))
    assert comparable(ours.request(method, target, **options)) == expected
