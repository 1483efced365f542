"""Peak throughput: a closed loop of C connections, each sending as soon as it got its answer.

With ``wrk`` on PATH: ``wrk -t1 -cC -dSs --latency -s post.lua URL``; without
it, the closed-loop mode of `benchmarks.loadgen`. Either way the result says
how much CPU the client itself used over how long: a client near one full
core is the bottleneck, and the number is a floor for the server's peak.
Latencies here are from the actual send (a closed loop cannot see stalls).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from . import procstat
from .loadgen import PATH, run_loadgen
from .servers import HOST

LUA_SCRIPT = Path(__file__).with_name("post.lua")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def peak_throughput(
    server_pid: int, port: int, seconds: float, connections: int, use_wrk: bool, mode: str
) -> dict[str, Any]:
    """Closed loop for `seconds`; `mode` ``close`` sends ``Connection: close`` (a new
    connection per request: wrk reconnects when the server closes)."""
    if not use_wrk:
        result = run_loadgen(
            "closed",
            seconds + 30,
            port=port,
            mode=mode,
            connections=connections,
            seconds=seconds,
            watch_pid=server_pid,
        )
        return {**result, "tool": "loadgen"}
    server_cpu, waiting = procstat.cpu_seconds(server_pid), procstat.cpu_wait_seconds()
    result = run_wrk(port, seconds, connections, mode)
    waited = procstat.cpu_wait_seconds()
    result["server_cpu_s"] = round(procstat.cpu_seconds(server_pid) - server_cpu, 3)
    result["cpu_pressure_pct"] = (
        None
        if waited is None or waiting is None
        else round(100 * (waited - waiting) / result["wall_s"], 1)
    )
    return result


def run_wrk(
    port: int, seconds: float, connections: int, mode: str, script: Path = LUA_SCRIPT
) -> dict[str, Any]:
    """Run wrk; its CPU time comes from os.wait4's rusage of the reaped process."""
    options = f"-t1 -c{connections} -d{max(1, round(seconds))}s --latency -s"
    close = ["-H", "Connection: close"] if mode == "close" else []
    argv = ["wrk", *options.split(), str(script), *close, f"http://{HOST}:{port}{PATH}"]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(seconds + 30, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watchdog.cancel()
        if process.returncode is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {process.returncode}:\n{output}")
    return {
        **parse_wrk(output),
        "tool": "wrk",
        "mode": mode,
        "connections": connections,
        "wall_s": round(time.monotonic() - started, 3),
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests, throughput, latency percentiles and errors from wrk's ``--latency`` report."""

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return round(float(value) * UNITS[unit], 3)

    latency: dict[str, float | None] = {
        f"p{p}": ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.M)
    }
    max_match = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    latency["max"] = ms(max_match.group(1)) if max_match else None
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors: dict[str, int] = {}
    if socket_errors := re.search(r"Socket errors: (.*)", output):
        for kind, count in re.findall(r"(\w+) (\d+)", socket_errors.group(1)):
            if int(count):
                errors[kind] = int(count)
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors["status"] = int(non_2xx.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return {
        "sent": requests,
        "ok": requests - errors.get("status", 0),
        "errors": errors,
        "error_count": sum(errors.values()),
        "latency_ms": latency,
        "throughput_rps": rps,
    }
