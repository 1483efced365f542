"""A FastAPI or Starlette module rawbg lacks: its import says what to use instead."""

import importlib
import importlib.machinery

import pytest

from rawbg.missing_modules import MISSING


def test_importing_a_module_rawbg_lacks_says_what_to_use_and_where_the_differences_are():
    with pytest.raises(ModuleNotFoundError) as caught:
        import rawbg.websockets  # noqa: F401
    message = str(caught.value)
    assert message.startswith("No module named 'rawbg.websockets'")
    assert "there are no WebSockets" in message
    assert "docs/fastapi-compat.md" in message

    with pytest.raises(
        ModuleNotFoundError, match=r"`BaseHTTPMiddleware` is in `rawbg\.middleware`"
    ):
        from rawbg.middleware import base  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match=r"rawbg\.App.*docs/fastapi-compat\.md"):
        from rawbg import applications  # noqa: F401


def test_a_name_rawbg_does_not_know_fails_as_python_says():
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module("rawbg.no_such_module")
    assert str(caught.value) == "No module named 'rawbg.no_such_module'"


@pytest.mark.parametrize("name", sorted(MISSING))
def test_each_module_listed_as_missing_really_is(name):
    parent, _, _ = name.rpartition(".")
    found = importlib.machinery.PathFinder.find_spec(name, importlib.import_module(parent).__path__)
    assert found is None, f"rawbg has {name} now: take it out of rawbg.missing_modules.MISSING"
