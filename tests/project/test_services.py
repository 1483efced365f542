"""A test needing a missing service is skipped, saying how to install it; under CI=true it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

NEEDS_A_MISSING_PROGRAM = """
import pytest

from tests.support.services import require_program


@pytest.mark.service
def test_needs_it():
    require_program("rawbg-no-such-program", install="apt-get install rawbg-no-such-program")


@pytest.mark.service
def test_skips_by_itself():
    pytest.skip("no such service here")
"""


def run_pytest(tmp_path: Path, *, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_a_service.py").write_text(NEEDS_A_MISSING_PROGRAM)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    # xdist and hypothesis's plugin are not what is tested: left out, the run takes half the time
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-p", "no:xdist"]
    plugins += ["-p", "no:hypothesispytest"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-rsf"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_outside_ci_a_missing_service_skips_the_test_saying_how_to_install_it(
    tmp_path: Path,
) -> None:
    done = run_pytest(tmp_path, ci=None)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout
    assert "apt-get install rawbg-no-such-program" in done.stdout


def test_under_ci_a_missing_service_fails_the_run(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, ci="true")
    assert done.returncode == 1, done.stdout
    assert "2 failed" in done.stdout
    assert "rawbg-no-such-program is not installed" in done.stdout
    assert "a service test was skipped under CI=true" in done.stdout
