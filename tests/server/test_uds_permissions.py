"""``--uds``: the socket file is one that a proxy running as another user can connect to.

nginx's worker processes run as ``nobody`` or ``www-data``, and connecting to a
Unix socket needs write permission on its file. Created under the usual umask
(022) the file was ``srwxr-xr-x``, and nginx answered 502 ("connect() ...
failed (13: Permission denied)"). Real processes, a real socket file, one real
request over it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS

pytestmark = pytest.mark.slow

WAIT = 20.0


def get_over_unix_socket(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(WAIT)
        client.connect(str(path))
        client.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("processes", [[], ["--workers", "2"]], ids=["one-process", "workers"])
def test_the_unix_socket_is_read_write_for_every_user(tmp_path: Path, processes: list[str]) -> None:
    path = tmp_path / "rawbg.sock"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    old_umask = os.umask(0o022)  # the usual one, whatever the test runner's is
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "rawbg", *CLI_LOOP_ARGS, "--uds", str(path), *processes],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    finally:
        os.umask(old_umask)
    output = b""
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + WAIT
        while not re.search(rb"serving on unix:", output) and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            output += line
        assert b"serving on unix:" in output, output.decode(errors="replace")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o666, oct(mode)
        assert get_over_unix_socket(path).startswith(b"HTTP/1.1 404 ")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert server.returncode == 0
