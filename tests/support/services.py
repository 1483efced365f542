"""The real services some tests need (nginx, PostgreSQL, chromium), found or not.

A test that needs one is marked ``service`` and calls `require_program`. On a
machine without the program it is skipped, with the command that installs it:
the README's test command passes on a fresh machine. Under ``CI=true``
(`.ci/run` installs every service first) a missing program fails the test
instead, and so does any skip of a ``service`` test (tests/conftest.py): CI
never passes by leaving a service untested.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True where every service must be there: `.ci/run` sets ``CI=true``."""
    return os.environ.get("CI", "").lower() == "true"


def require_program(name: str, *, install: str, also_look_in: tuple[str, ...] = ()) -> str:
    """The path of program `name`; else skip (fail in CI), saying how to install it."""
    found = shutil.which(name) or next(
        (path for path in also_look_in if os.access(path, os.X_OK)), None
    )
    if found is not None:
        return found
    message = f"{name} is not installed, and these tests need a real one: {install}"
    if in_ci():
        pytest.fail(f"{message} (.ci/run installs it; CI=true)")
    pytest.skip(f"{message} (skipped outside CI)")
