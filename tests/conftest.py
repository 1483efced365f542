from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from rawbg import App, Server, serving
from rawbg.server.loops import LoopFactory, loop_factory
from tests.support.event_loop import TEST_LOOP
from tests.support.postgres_server import (
    PostgresMissing,
    PostgresServer,
    binaries,
    postgres_server,
)
from tests.support.services import in_ci

ServeFactory = Callable[..., AbstractAsyncContextManager[Server]]


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, LoopFactory]:
    """Every async test runs on the loop RAWBG_TEST_LOOP names (tests/support/event_loop.py)."""
    return {TEST_LOOP: loop_factory(TEST_LOOP)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """Under CI=true a ``service`` test that was skipped fails (tests/support/services.py)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("service") is not None:
        report.outcome = "failed"
        report.longrepr = f"a service test was skipped under CI=true: {report.longrepr}"


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


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own (tests/support/postgres_server.py).

    Without PostgreSQL the test is skipped, saying how to install it; under
    ``CI=true`` it fails. Mark the test ``service``.
    """
    try:
        binaries()
    except PostgresMissing as exc:
        if in_ci():
            pytest.fail(f"{exc} (CI=true)")
        pytest.skip(f"{exc} (skipped outside CI)")
    with postgres_server() as server:
        yield server
