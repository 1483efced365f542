"""rawbg.status: every HTTPStatus name, and the RFC 9110 spellings Starlette uses."""

import http
import importlib.util

import rawbg
from rawbg import status
from tests.support import REPO

ROOT = REPO


def test_every_http_status_of_this_python_has_its_constant():
    for name, member in http.HTTPStatus.__members__.items():
        assert getattr(status, f"HTTP_{member.value}_{name}") == member.value, name


def test_both_spellings_of_renamed_statuses_are_there():
    assert status.HTTP_422_UNPROCESSABLE_ENTITY == status.HTTP_422_UNPROCESSABLE_CONTENT == 422
    assert status.HTTP_413_REQUEST_ENTITY_TOO_LARGE == status.HTTP_413_CONTENT_TOO_LARGE == 413
    assert status.HTTP_414_REQUEST_URI_TOO_LONG == status.HTTP_414_URI_TOO_LONG == 414
    assert status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE == status.HTTP_416_RANGE_NOT_SATISFIABLE
    assert status.HTTP_418_IM_A_TEAPOT == 418
    assert status.HTTP_306_RESERVED == 306


def test_status_is_importable_from_rawbg_and_lists_its_names():
    from rawbg import status as imported

    assert imported is rawbg.status
    assert status.__all__ == sorted(status.__all__, key=lambda n: (int(n.split("_")[1]), n))
    assert all(getattr(status, name) == int(name.split("_")[1]) for name in status.__all__)


def test_the_module_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "tools" / "generate_status.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (ROOT / "rawbg" / "status.py").read_text() == generator.render()
