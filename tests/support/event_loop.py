"""Which event loop the suite runs on: ``RAWBG_TEST_LOOP=uvloop pytest`` for uvloop.

Unset (or ``asyncio``), every test runs on asyncio's own loop, even when uvloop
is installed. tests/conftest.py gives pytest-asyncio the matching loop factory;
tests that start ``python -m rawbg`` as a subprocess pass `CLI_LOOP_ARGS`, so
that the server under test runs on the same kind of loop as the suite.
"""

from __future__ import annotations

import os

TEST_LOOP = os.environ.get("RAWBG_TEST_LOOP", "asyncio")
if TEST_LOOP not in ("asyncio", "uvloop"):
    raise RuntimeError(f"RAWBG_TEST_LOOP must be asyncio or uvloop, got {TEST_LOOP!r}")

#: the ``python -m rawbg`` options that select the suite's loop
CLI_LOOP_ARGS = ("--loop", TEST_LOOP)
