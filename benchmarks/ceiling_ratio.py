"""rawbg's peak over the bare h11 ceiling's, on the wall clock, per Python: side by side.

``python -m benchmarks.ceiling_ratio [--python 3.12=/path/to/python ...] [--rounds 5]``

Issue 25's target: rawbg at 32 keep-alive connections reaches at least 0.85 of
the ceiling (benchmarks/ceiling.py: asyncio + h11 answering every request the
same, no routing, no handler, no background work) on asyncio's loop. The
instruction counts (`benchmarks.instructions`) give the same ratio without
noise but not what the memory system and the kernel add; this is the wall
clock. Each round runs, per Python, the ceiling and rawbg one after the other
(the order swapped every round), each a fresh server given a warm-up and then
`--seconds` of wrk (`-t1 -c32`, the tutorial's POST); the ratio of a round is
rawbg's req/s over the ceiling's of the same round, and the table gives the
median of the rounds' ratios with each round's. Under ``--realtime`` (root)
the servers and wrk run under SCHED_FIFO, out of reach of the machine's other
work. The Pythons are this one (the default) and each ``--python
VERSION=PATH``; each needs h11 (and this checkout's rawbg, which is put on its
PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from .highload import realtime
from .peak import peak_throughput
from .servers import running_server

SERVERS = ("ceiling", "rawbg")
CONNECTIONS = 32


def one_peak(
    server: str, interpreter: str, seconds: float, warmup: float, log_dir: Path
) -> dict[str, Any]:
    with running_server(server, 0.0, log_dir, interpreter) as running:
        peak_throughput(running.pid, running.port, warmup, CONNECTIONS, True, "keepalive")
        result = peak_throughput(running.pid, running.port, seconds, CONNECTIONS, True, "keepalive")
    return {
        "req_s": result["throughput_rps"],
        "server_cpu_pct": round(100 * result["server_cpu_s"] / result["wall_s"], 1),
        "client_cpu_pct": round(100 * result["client_cpu_s"] / result["wall_s"], 1),
        "cpu_pressure_pct": result["cpu_pressure_pct"],
        "errors": result["error_count"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling_ratio")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="VERSION=PATH",
        help="another Python to run both servers with (repeatable)",
    )
    parser.add_argument("--realtime", action="store_true", help="SCHED_FIFO (root)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "local")
    args = parser.parse_args(argv)
    if args.realtime:
        realtime()
    this = f"{sys.version_info.major}.{sys.version_info.minor}"
    pythons = {this: sys.executable}
    for spec in args.python:
        version, _, path = spec.partition("=")
        if not path:
            parser.error(f"--python {spec!r}: VERSION=PATH")
        pythons[version] = path
    log_dir = args.out / "logs"
    rounds: dict[str, list[dict[str, Any]]] = {version: [] for version in pythons}
    for number in range(args.rounds):
        order = SERVERS if number % 2 == 0 else SERVERS[::-1]
        for version, interpreter in pythons.items():
            runs = {s: one_peak(s, interpreter, args.seconds, args.warmup, log_dir) for s in order}
            ratio = runs["rawbg"]["req_s"] / runs["ceiling"]["req_s"]
            rounds[version].append({"ratio": round(ratio, 3), **runs})
            print(
                f"round {number + 1}, Python {version}: ceiling {runs['ceiling']['req_s']:.0f} "
                f"req/s, rawbg {runs['rawbg']['req_s']:.0f} req/s: {ratio:.3f} "
                f"(CPU pressure {runs['ceiling']['cpu_pressure_pct']} / "
                f"{runs['rawbg']['cpu_pressure_pct']} %)",
                flush=True,
            )
    print("\n| Python | rawbg / ceiling: median (rounds) | ceiling req/s | rawbg req/s |")
    print("|---|---|---|---|")
    summary = {}
    for version, runs in rounds.items():
        ratios = [r["ratio"] for r in runs]
        ceiling = statistics.median(r["ceiling"]["req_s"] for r in runs)
        rawbg = statistics.median(r["rawbg"]["req_s"] for r in runs)
        summary[version] = {"median_ratio": statistics.median(ratios), "rounds": runs}
        shown = ", ".join(f"{r:.3f}" for r in ratios)
        median = statistics.median(ratios)
        print(f"| {version} | **{median:.3f}** ({shown}) | {ceiling:,.0f} | {rawbg:,.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ceiling_ratio.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
