"""Scaling past one core: ``python -m benchmarks.scaling [--rounds R] [--seconds S]``.

A CPU-bound endpoint (the tutorial's path, about 1 ms of pure-Python work
per request, calibrated on this machine) served by

* ``rawbg-1``: ``python -m rawbg`` (one process, no supervisor);
* ``rawbg-2``: ``python -m rawbg --workers 2``;
* ``uvicorn-2``: FastAPI on ``uvicorn --workers 2 --http h11``.

Each is driven by ``wrk`` (one thread, C keep-alive connections, closed
loop; without wrk, `benchmarks.loadgen`'s closed loop) for S seconds after a
warm-up; the servers take turns, R rounds, in a rotating
order, so that the noise of a shared machine falls on all of them. Reported
per server: the median over rounds of peak req/s and of wrk's p99, the CPU
the server's processes used (and so requests per CPU-second), the CPU
pressure while it ran (the share of time some task waited for a CPU: on a
shared machine, how much the others took), and the scaling ratio
rawbg-2 / rawbg-1. With
about 1 ms of work per request the load generator needs a few percent of a
core, so on two cores the servers are the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .apps.cpu_work import WORK_ENV, burn
from .peak import peak_throughput, wrk_available
from .servers import ROOT, free_port, wait_until_answering

SERVERS = ("rawbg-1", "rawbg-2", "uvicorn-2")
TARGET_WORK_SECONDS = 0.001
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def calibrate(target: float = TARGET_WORK_SECONDS) -> int:
    """Iterations of `burn` that take about `target` seconds here (best of a few tries)."""
    iterations = 10_000
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        burn(iterations)
        best = min(best, time.perf_counter() - started)
    return max(1, round(iterations * target / best))


def command(name: str, port: int) -> list[str]:
    python = sys.executable
    if name.startswith("rawbg-"):
        workers = int(name.removeprefix("rawbg-"))
        argv = [python, "-m", "rawbg", "benchmarks.apps.cpu_rawbg:app", "--no-access-log"]
        argv += ["--port", str(port), "--app-dir", str(ROOT), "--log-level", "warning"]
        return argv + (["--workers", str(workers)] if workers > 1 else [])
    if name.startswith("uvicorn-"):
        workers = name.removeprefix("uvicorn-")
        argv = [python, "-m", "uvicorn", "benchmarks.apps.cpu_fastapi:app", "--http", "h11"]
        return [*argv, "--workers", workers, "--no-access-log", "--port", str(port)]
    raise ValueError(f"unknown server {name!r}")


def measure(
    name: str,
    *,
    iterations: int,
    seconds: float,
    warmup: float,
    connections: int,
    use_wrk: bool,
    log: Path,
) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, WORK_ENV: str(iterations), "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            command(name, port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        wait_until_answering(process, port, time.monotonic() + START_TIMEOUT)
        peak_throughput(process.pid, port, warmup, connections, use_wrk, "keepalive")
        result = peak_throughput(process.pid, port, seconds, connections, use_wrk, "keepalive")
        if not result["ok"]:  # no answer at all: its wall time is 0, and there is no rate
            raise RuntimeError(f"{name} answered no request in {seconds} s: {result}")
        cores = (result["server_cpu_s"] or 0) / result["wall_s"]
        result["server_cpu_cores"] = round(cores, 2)
        # requests per CPU-second: what a request costs, whatever share of the CPU it got
        result["rps_per_core"] = round(result["throughput_rps"] / cores, 1) if cores else None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {"server": name, **result}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_server: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_server.setdefault(run["server"], []).append(run)
    summary: dict[str, Any] = {}
    for name, rows in by_server.items():
        summary[name] = {
            "rps": round(statistics.median(row["throughput_rps"] for row in rows), 1),
            "p99_ms": round(statistics.median(row["latency_ms"]["p99"] for row in rows), 2),
            "cpu_cores": round(statistics.median(row["server_cpu_cores"] for row in rows), 2),
            "rps_per_core": round(statistics.median(row["rps_per_core"] or 0 for row in rows), 1),
            "cpu_pressure_pct": statistics.median(row["cpu_pressure_pct"] or 0 for row in rows),
            "errors": sum(row["error_count"] for row in rows),
            "rounds": len(rows),
        }
    ratios: dict[str, float] = {}
    if "rawbg-1" in summary and "rawbg-2" in summary:
        ratios["rawbg-2 / rawbg-1"] = round(
            summary["rawbg-2"]["rps"] / summary["rawbg-1"]["rps"], 2
        )
    if "rawbg-2" in summary and "uvicorn-2" in summary:
        ratios["rawbg-2 / uvicorn-2"] = round(
            summary["rawbg-2"]["rps"] / summary["uvicorn-2"]["rps"], 2
        )
    return {"servers": summary, "ratios": ratios}


def render(results: dict[str, Any]) -> str:
    lines = [
        f"CPU work per request: {results['work_ms']} ms ({results['iterations']} iterations); "
        f"{results['connections']} connections, {results['seconds']} s x "
        f"{results['rounds']} rounds",
        f"{'server':<10} {'req/s':>8} {'p99 ms':>8} {'cores':>6} {'req/core-s':>10} "
        f"{'pressure%':>9} {'errors':>7}",
    ]
    for name, row in results["summary"]["servers"].items():
        lines.append(
            f"{name:<10} {row['rps']:>8} {row['p99_ms']:>8} {row['cpu_cores']:>6} "
            f"{row['rps_per_core']:>10} {row['cpu_pressure_pct']:>9} {row['errors']:>7}"
        )
    lines += [f"{name}: {ratio}" for name, ratio in results["summary"]["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-wrk", action="store_true", help="the built-in closed loop")
    args = parser.parse_args(argv)
    use_wrk = wrk_available() and not args.no_wrk
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    for name in servers:
        command(name, 0)  # an unknown name fails here, before any run
    args.out.mkdir(parents=True, exist_ok=True)
    iterations = calibrate()
    timings = []
    for _ in range(5):  # the best of a few: one preemption must not count as work
        started = time.perf_counter()
        burn(iterations)
        timings.append(time.perf_counter() - started)
    work_ms = round(min(timings) * 1000, 2)
    runs = []
    for round_index in range(args.rounds):
        order = servers[round_index % len(servers) :] + servers[: round_index % len(servers)]
        for name in order:
            print(f"round {round_index + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            runs.append(
                measure(
                    name,
                    iterations=iterations,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    connections=args.connections,
                    use_wrk=use_wrk,
                    log=args.out / "scaling-servers.log",
                )
            )
    results = {
        "iterations": iterations,
        "work_ms": work_ms,
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "tool": "wrk" if use_wrk else "loadgen",
        "runs": runs,
        "summary": summarize(runs),
    }
    (args.out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
