"""Check the compiled generator against the others, and measure what it costs.

``python -m benchmarks.validate_loadgen agree [--server rawbg] [--rate 500] [--rounds 3]``
runs, on a fresh server with no background task, in rotating order round
after round: loadgen.c (precise; precise but timed when it read each
response, as a client in user space is; batched every 500 µs), loadgen.py and
wrk, at the same low rate, and prints each one's latency percentiles. At a
rate the server handles easily nothing stalls, so every open loop and the
closed loop should see the same latencies, within the noise of the machine,
but for what each adds of its own: the receive path and wake-up of a client
that times a response when it reads it, which loadgen.c's kernel timestamps
leave out.
wrk (Debian's 4.1) has no fixed rate: its connections each wait ``delay()``
ms (Lua) after every response, which brings it near the rate; its latency
runs from its actual send.

``python -m benchmarks.validate_loadgen cost [--server nginx] [--rates 1000,5000]``
runs loadgen.c in every mode and schedule, and loadgen.py, at each rate, each
on a fresh server, and prints the CPU each used (user and system, share of a
core), its wake-ups and how late it sent. The server is by default an nginx
(the Debian package) answering the benchmark's response from its config: it
keeps up with 5 000 req/s using a fraction of a core, where every Python
server here would be near its limit and answer in bursts, which changes the
generator's work. ``--realtime``: servers and
generators under SCHED_FIFO (see `highload.realtime`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import procstat, report
from .apps import MESSAGE
from .highload import realtime
from .loadgen import MODES, cpu_wait_pct, run_loadgen
from .peak import LUA_SCRIPT, run_wrk
from .servers import START_TIMEOUT, free_port, running_server, stop, wait_until_answering

BATCH_US = 500
LOG_DIR = Path(tempfile.gettempdir()) / "rawbg-validate-loadgen"


def open_loop(
    generator: str, batch_us: int | None = None, timing: str | None = None
) -> Callable[[int, int, str, float, float], dict[str, Any]]:
    def run(port: int, pid: int, mode: str, rate: float, seconds: float) -> dict[str, Any]:
        return run_loadgen(
            "open",
            seconds + 60,
            generator=generator,
            port=port,
            mode=mode,
            rate=rate,
            seconds=seconds,
            warmup=1,
            watch_pid=pid,
            batch_us=batch_us,
            timing=timing,
        )

    return run


WRK_CONNECTIONS = 4


def wrk(port: int, pid: int, mode: str, rate: float, seconds: float) -> dict[str, Any]:
    """wrk near `rate`: each of its connections waits 1/rate per connection after a response."""
    delay_ms = 1000 * WRK_CONNECTIONS / rate
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA_SCRIPT.read_text())
        script.write(f"\nfunction delay()\n  return {delay_ms:.3f}\nend\n")
    delay = procstat.run_delay_seconds(pid)
    try:
        row = run_wrk(port, seconds, WRK_CONNECTIONS, mode, script=Path(script.name))
    finally:
        Path(script.name).unlink()
    waited = procstat.run_delay_seconds(pid) - delay
    return {**row, "server_wait_pct": round(100 * waited / row["wall_s"], 1)}


TOOLS: dict[str, Callable[[int, int, str, float, float], dict[str, Any]]] = {
    "loadgen.c": open_loop("c"),
    "loadgen.c, timed when read": open_loop("c", timing="read"),
    f"loadgen.c batched {BATCH_US} µs": open_loop("c", BATCH_US),
    "loadgen.py": open_loop("python"),
    "wrk": wrk,
}


def attempt(tool: str, *run: Any) -> dict[str, Any] | None:
    """One tool's run, or None (said on stderr) if it failed."""
    try:
        row = TOOLS[tool](*run)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"  {tool} {run[2:]}: FAILED {str(exc)[-300:]}", file=sys.stderr, flush=True)
        return None
    print(f"  {tool} {run[2:]}: {row['latency_ms']}", file=sys.stderr, flush=True)
    return {"tool": tool, **row}


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    keepalive_requests 100000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


@contextlib.contextmanager
def target(server: str) -> Iterator[tuple[int, int]]:
    """A fresh server to load: (port, pid). ``nginx``, or one of `servers.SERVERS`."""
    if server != "nginx":
        with running_server(server, 0.0, LOG_DIR) as running:
            yield running.port, running.pid
        return
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        raise SystemExit("nginx is not installed: apt-get install nginx, or pass --server")
    with tempfile.TemporaryDirectory(prefix="rawbg-nginx-") as prefix:
        port = free_port()
        conf = Path(prefix) / "nginx.conf"
        body = json.dumps(MESSAGE, separators=(",", ":"))
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, body=body))
        process = subprocess.Popen([binary, "-p", prefix, "-c", str(conf)])
        try:
            wait_until_answering(process, port, time.monotonic() + START_TIMEOUT)
            yield port, process.pid
        finally:
            stop(process)


def agree(args: argparse.Namespace) -> None:
    rows = []
    tools = list(TOOLS)
    for round_ in range(args.rounds):
        shift = round_ % len(tools)
        for mode in args.modes:
            for tool in tools[shift:] + tools[:shift]:
                with target(args.server) as (port, pid):
                    row = attempt(tool, port, pid, mode, args.rate, args.seconds)
                if row:
                    rows.append({**row, "mode": mode, "round": round_ + 1})
    columns: list[report.Column] = [
        ("tool", lambda r: r["tool"]),
        ("mode", lambda r: r["mode"]),
        ("round", lambda r: r["round"]),
        ("req/s", lambda r: r["throughput_rps"]),
        ("p50 ms", report.latency("p50")),
        ("p90 ms", report.latency("p90")),
        ("p99 ms", report.latency("p99")),
        ("max ms", report.latency("max")),
        ("client cpu%", lambda r: report.percent(r["client_cpu_s"], r["wall_s"])),
        ("cpu wait%", lambda r: cpu_wait_pct(r)),
    ]
    print(report.table(rows, columns))
    print("\nmedians over the rounds (p50 / p90 / p99 ms):")
    for mode in args.modes:
        for tool in tools:
            mine = [r for r in rows if r["tool"] == tool and r["mode"] == mode]
            if not mine:
                continue
            medians = [
                statistics.median(r["latency_ms"][p] for r in mine) for p in ("p50", "p90", "p99")
            ]
            print(f"  {mode:9} {tool:26} " + " / ".join(f"{m:.3f}" for m in medians))


def cost(args: argparse.Namespace) -> None:
    rows = []
    for rate in args.rates:
        for mode in args.modes:
            for tool in (t for t in TOOLS if t != "wrk"):
                with target(args.server) as (port, pid):
                    row = attempt(tool, port, pid, mode, rate, args.seconds)
                if row:
                    rows.append(row)

    def share(key: str) -> Callable[[dict[str, Any]], float | None]:
        return lambda r: report.percent(r.get(key), r["wall_s"])

    columns: list[report.Column] = [
        ("tool", lambda r: r["tool"]),
        ("mode", lambda r: r["mode"]),
        ("rate", lambda r: r["rate"]),
        ("ok/sent", lambda r: f"{r['ok']}/{r['sent']}"),
        ("client cpu%", share("client_cpu_s")),
        ("user%", share("client_user_s")),
        ("sys%", share("client_sys_s")),
        ("µs/req", lambda r: round(1e6 * r["client_cpu_s"] / max(r["sent"], 1), 1)),
        ("wake-ups/s", lambda r: round(r["wakeups"] / r["wall_s"]) if "wakeups" in r else None),
        ("lag p50 ms", lambda r: r["send_lag_ms"].get("p50")),
        ("lag p99 ms", lambda r: r["send_lag_ms"]["p99"]),
        ("p50 ms", report.latency("p50")),
        ("p99 ms", report.latency("p99")),
        ("server cpu%", share("server_cpu_s")),
        ("cpu wait%", lambda r: cpu_wait_pct(r)),
    ]
    print(report.table(rows, columns))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.validate_loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=("agree", "cost"))
    parser.add_argument("--server", help="default: rawbg (agree), nginx (cost)")
    parser.add_argument("--rate", type=float, default=500, help="agree: requests per second")
    parser.add_argument("--rates", default="1000,5000", help="cost: requests per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--realtime", action="store_true", help="servers and generators under SCHED_FIFO (root)"
    )
    args = parser.parse_args()
    if args.realtime:
        realtime()
    args.modes = args.modes.split(",")
    args.rates = [float(r) for r in args.rates.split(",")]
    args.server = args.server or ("rawbg" if args.what == "agree" else "nginx")
    (agree if args.what == "agree" else cost)(args)
    with open("/proc/loadavg") as loadavg:
        print(f"\nload average after: {loadavg.read().strip()}")


if __name__ == "__main__":
    main()
