"""Where the p99 goes at high load: ``python -m benchmarks.highload_split [options]``.

Runs the open loop at one rate against a fresh rawbg with no task, then with
tasks of ``--task-seconds``, with benchmarks/apps/diagnostics.py sampling
inside the server, and prints side by side what grows with the pending tasks:
the p99, the server's CPU per request (the work that is physics: timers,
wake-ups and completions of the pending tasks), the cyclic GC's pauses (count,
longest, total) per generation, the loop's longest busy stretch (lag of a 5 ms
timer), and the most timers and tasks alive at once.

``--fraction 0.8`` first searches the open-loop capacity (as the full run
does) and runs at that fraction of it; ``--rate R`` runs at R req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report
from .__main__ import PROFILES, Runner
from .loadgen import MODES, run_loadgen
from .servers import running_server


def one_run(
    server: str, mode: str, rate: float, seconds: float, task_seconds: float
) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="rawbg-split-"))
    diagnostics = log_dir / "diagnostics.json"
    os.environ["BENCH_DIAGNOSTICS"] = str(diagnostics)
    try:
        with running_server(server, task_seconds, log_dir) as running:
            row = run_loadgen(
                "open",
                seconds + 70,
                port=running.port,
                mode=mode,
                rate=round(rate, 1),
                seconds=seconds,
                warmup=2,
                watch_pid=running.pid,
            )
            time.sleep(1.2)  # one more dump, covering the end of the run
            inside = json.loads(diagnostics.read_text())
    finally:
        del os.environ["BENCH_DIAGNOSTICS"]
    gc_stats = inside["gc"]
    return {
        "task s": task_seconds,
        "p50 ms": row["latency_ms"]["p50"],
        "p99 ms": row["latency_ms"]["p99"],
        "max ms": row["latency_ms"]["max"],
        "req/s": row["throughput_rps"],
        "server µs/req": round(1e6 * row["server_cpu_s"] / max(row["ok"], 1)),
        "client cpu%": report.percent(row["client_cpu_s"], row["wall_s"]),
        "cpu wait%": row["cpu_pressure_pct"],
        "lag p99 ms": inside["lag_ms"]["p99"],
        "lag max ms": inside["lag_ms"]["max"],
        **{
            f"gc{g} n/max/total ms": "{count:.0f}/{max_ms:.2f}/{total_ms:.0f}".format(**gc_stats[g])
            for g in ("0", "1", "2")
        },
        "max timers": inside["max_timers"],
        "max tasks": inside["max_tasks"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.highload_split", description=__doc__
    )
    parser.add_argument("--server", default="rawbg", choices=["rawbg", "rawbg-uvloop"])
    parser.add_argument("--mode", default="keepalive", choices=MODES)
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float)
    load.add_argument("--fraction", type=float, help="of the capacity searched first")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--task-seconds", type=float, default=1.0)
    args = parser.parse_args()
    rate = args.rate
    if rate is None:
        runner = Runner(
            PROFILES["full"], Path(tempfile.mkdtemp(prefix="rawbg-cap-")), use_wrk=False
        )
        capacity = runner.capacity(args.server, args.mode, start=1500)
        print(f"capacity: {capacity['capacity_rps']} req/s (probes {capacity['probes']})")
        rate = args.fraction * capacity["capacity_rps"]
    print(f"{args.server} {args.mode} at {rate:.0f} req/s for {args.seconds:g} s:")
    rows = [
        one_run(args.server, args.mode, rate, args.seconds, t) for t in (0.0, args.task_seconds)
    ]
    columns = [(name, lambda row, name=name: row[name]) for name in rows[0]]
    print(report.table(rows, columns))


if __name__ == "__main__":
    main()
