"""Choosing the event loop (rawbg.server.loops): auto, asyncio, uvloop; no socket needed here.

The CLI's ``--loop`` is proven end to end in tests/server/test_cli.py; the whole suite
runs on either loop with ``RAWBG_TEST_LOOP`` (tests/support/event_loop.py).
"""

from __future__ import annotations

import importlib

import pytest

from rawbg import App, serving
from rawbg.server import loops
from rawbg.server.config import ServerConfig
from tests.support.event_loop import TEST_LOOP


def made_by(loop: str) -> str:
    new_loop = loops.loop_factory(loop)()
    try:
        return type(new_loop).__module__.partition(".")[0]
    finally:
        new_loop.close()


def test_auto_takes_uvloop_when_it_is_installed():
    importlib.import_module("uvloop")
    assert loops.resolve("auto") == "uvloop"
    assert made_by("auto") == "uvloop"


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch):
    monkeypatch.setattr(loops, "uvloop_installed", lambda: False)
    assert loops.resolve("auto") == "asyncio"
    assert made_by("auto") == "asyncio"


def test_asking_for_uvloop_without_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(loops, "uvloop_installed", lambda: False)
    with pytest.raises(RuntimeError, match=r"rawbg\[speed\]"):
        loops.loop_factory("uvloop")


def test_asyncio_is_asyncio_even_when_uvloop_is_installed():
    assert made_by("asyncio") == "asyncio"


def test_an_unknown_loop_is_a_configuration_error():
    with pytest.raises(ValueError, match="loop must be one of auto, asyncio, uvloop"):
        ServerConfig(loop="trio")


async def test_serving_refuses_a_loop_other_than_the_running_one():
    other = "asyncio" if TEST_LOOP == "uvloop" else "uvloop"
    importlib.import_module(other)
    with pytest.raises(RuntimeError, match=f"loop='{other}' but the running loop is"):
        async with serving(App(), port=0, loop=other):
            pass


async def test_serving_accepts_the_running_loop_by_name():
    assert loops.running_loop_name() == TEST_LOOP
    async with serving(App(), port=0, loop=TEST_LOOP, access_log=False) as server:
        assert server.port > 0
