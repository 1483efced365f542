from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from rawbg import App, Server, serving
from rawbg.server.loops import LoopFactory, loop_factory
from tests.event_loop import TEST_LOOP

ServeFactory = Callable[..., AbstractAsyncContextManager[Server]]


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, LoopFactory]:
    """Every async test runs on the loop RAWBG_TEST_LOOP names (tests/event_loop.py)."""
    return {TEST_LOOP: loop_factory(TEST_LOOP)}


def pytest_report_header(config: Any) -> str:
    return f"rawbg event loop: {TEST_LOOP} (RAWBG_TEST_LOOP)"


@pytest.fixture
def serve() -> ServeFactory:
    """``async with serve(app, **config) as server:`` a real server on an ephemeral port."""

    def factory(app: App, **options: Any) -> AbstractAsyncContextManager[Server]:
        options.setdefault("port", 0)
        options.setdefault("access_log", False)
        return serving(app, **options)

    return factory


@pytest.fixture
def in_tmp_dir(tmp_path: Any) -> AsyncIterator[Any]:
    """Run the test with the current directory in a fresh temporary directory."""
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)
