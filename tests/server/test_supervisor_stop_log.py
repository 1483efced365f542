"""What the supervisor says on SIGTERM: the drain time it announces is the one configured.

With ``--timeout-graceful-shutdown 0.5`` it said "each drains for up to 0 s"
(the value was rounded to whole seconds). A real supervisor and worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS

pytestmark = pytest.mark.slow

WAIT = 20.0


def test_sigterm_announces_the_configured_drain_time(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    options = ("--port", "0", "--workers", "1", "--timeout-graceful-shutdown", "0.5")
    server = subprocess.Popen(
        [sys.executable, "-m", "rawbg", *CLI_LOOP_ARGS, *options],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = b""
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + WAIT
        while b"serving on" not in output and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            output += line
        assert b"serving on" in output, output.decode(errors="replace")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rest, _ = server.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
            rest, _ = server.communicate()
    output += rest
    assert b"SIGTERM: stopping 1 worker(s); each drains for up to 0.5 s" in output, output
    assert server.returncode == 0
