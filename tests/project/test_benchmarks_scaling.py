"""The scaling scenario runs end to end: rawbg with 1 and 2 workers start, answer, are measured.

No timing assertions (the machine is shared): every run got answers, no errors,
and the summary has the scaling ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

ROOT = REPO


def test_scaling_smoke_run_measures_one_and_two_workers(tmp_path: Path) -> None:
    argv = ["--rounds", "1", "--seconds", "0.5", "--warmup", "0.2", "--connections", "4"]
    argv += ["--servers", "rawbg-1,rawbg-2", "--no-wrk", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "scaling.json").read_text())
    assert [run["server"] for run in results["runs"]] == ["rawbg-1", "rawbg-2"]
    for run in results["runs"]:
        assert run["ok"] > 0, run
        assert run["error_count"] == 0, run
    assert results["summary"]["ratios"]["rawbg-2 / rawbg-1"] > 0
    assert "rawbg-2 / rawbg-1" in done.stdout
