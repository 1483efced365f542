"""tools/real_apps.py on a small app of its own: one suite, run on FastAPI and on rawbg."""

import subprocess
import sys
from pathlib import Path

import pytest

from tools.real_apps import ROOT, Comparison, RealApp, checkout, copy_app, run_suite

pytestmark = pytest.mark.slow  # two pytest processes

APP = """\
from fastapi import FastAPI, status
from fastapi.responses import Response

app = FastAPI()


@app.get("/moved")
def moved():
    return Response(status_code=status.HTTP_302_FOUND, headers={"location": "/"})


@app.get("/items/{item_id}")
def item(item_id: int):
    return {"item_id": item_id}
"""

TESTS = """\
import inspect

from fastapi.testclient import TestClient
from starlette import status

from main import app

client = TestClient(app)


def test_the_redirect_is_the_status_constant_itself():
    assert client.get("/moved", follow_redirects=False).status_code is status.HTTP_302_FOUND


def test_an_item_and_a_bad_item():
    assert client.get("/items/3").json() == {"item_id": 3}
    assert client.get("/items/x").status_code == 422


def test_the_app_is_an_asgi_callable():
    assert list(inspect.signature(app).parameters) == ["scope", "receive", "send"]
"""


def bare_repository(tmp_path: Path) -> Path:
    """A bare git directory holding the app, as the session's fetch tool leaves one."""
    work = tmp_path / "work"
    (work / "tests").mkdir(parents=True)
    (work / "main.py").write_text(APP)
    (work / "tests" / "test_tiny.py").write_text(TESTS)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    for step in (["init", "-q"], ["add", "."], ["commit", "-qm", "tiny app"]):
        subprocess.run([*git, *step], check=True)
    bare = tmp_path / "apps" / "someone+tiny" / "repo"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return tmp_path / "apps"


def test_the_tool_runs_an_apps_suite_on_both_and_lists_what_rawbg_lost_with_the_asgi_reason(
    tmp_path, monkeypatch
):
    # the tiny suite needs no plugin: without this venv's (hypothesis, xdist...) it starts faster
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    app = RealApp(
        name="tiny",
        repo="someone/tiny",
        needs_asgi={"test_the_app_is_an_asgi_callable": "asks for app(scope, receive, send)"},
    )
    source = checkout(bare_repository(tmp_path), app)
    runs = {}
    for framework, rawbg in (("fastapi", None), ("rawbg", ROOT / "rawbg")):
        where = tmp_path / framework
        app_dir = copy_app(source, app, where / "app")
        # this venv has FastAPI (the test extra): the app's own requirements
        runs[framework] = run_suite(
            app, app_dir, Path(sys.prefix), rawbg=rawbg, scratch=where, timeout=120
        )
    comparison = Comparison(app, runs["fastapi"], runs["rawbg"])
    assert comparison.passed(comparison.fastapi) == 3, runs["fastapi"]
    assert comparison.passed(comparison.rawbg) == 2, runs["rawbg"]
    [(test, why, asgi)] = comparison.lost()
    assert test == "tests.test_tiny::test_the_app_is_an_asgi_callable"
    assert asgi == "asks for app(scope, receive, send)"
    assert why is not None and "is not a callable object" in why
    assert comparison.gained() == []
