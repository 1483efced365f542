"""Where the p99 goes at high load: ``python -m benchmarks.highload_split [options]``.

Runs the open loop at one rate against a fresh rawbg with no task, then with
tasks of ``--task-seconds``, with benchmarks/apps/diagnostics.py sampling
inside the server, and prints side by side what grows with the pending tasks:
the p99, the server's CPU per request (the work that is physics: timers,
wake-ups and completions of the pending tasks), the cyclic GC's collections
per generation (count, longest pause, total CPU), the loop's longest busy
stretch (lag of a 5 ms timer), and the most timers and tasks alive at once.
Everything from inside the server is counted over the measured window only
(after the warm-up), so a ramp-up of pending tasks does not hide in it.

``--rounds R`` repeats the comparison R times, alternating the order, and
prints each round's ratio to the run without tasks: on a shared machine one
pair of runs says little, the spread of several does. ``--gc off`` (or
``--gc 700,10,100``) adds a run with tasks and that GC setting to each round
(``BENCH_GC``: off is the upper bound of what any GC policy could gain), and
``--server-args "--gc-interval 0"`` one with tasks and these options of
rawbg's command line (``BENCH_RAWBG_ARGS``).
With ``--quiet P`` each run starts after a second in which the machine's CPU
wait (PSI) was under P %, and a run during which it was over P % is done
again (at most `ATTEMPTS` times; the table says how many it took): the other
work of a shared machine otherwise decides the p99.

``--fraction 0.8`` first searches the open-loop capacity (as the full run
does) and runs at that fraction of it; ``--rate R`` runs at R req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import procstat, report
from .__main__ import PROFILES, Runner
from .loadgen import GENERATORS, MODES, cpu_wait_pct, run_loadgen
from .servers import RAWBG_ARGS_ENV, running_server

ATTEMPTS = 4


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """`values` set in os.environ (which the server inherits) for the block's duration."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def one_run(
    server: str,
    mode: str,
    rate: float,
    seconds: float,
    warmup: float,
    task_seconds: float,
    gc_setting: str | None = None,
    server_args: str = "",
    generator: str = "c",
) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="rawbg-split-"))
    diagnostics = log_dir / "diagnostics.json"
    settings = {"BENCH_DIAGNOSTICS": str(diagnostics), RAWBG_ARGS_ENV: server_args}
    if gc_setting is not None:
        settings["BENCH_GC"] = gc_setting
    with environment(**settings), running_server(server, task_seconds, log_dir) as running:
        row = run_loadgen(
            "open",
            seconds + warmup + 70,
            generator=generator,
            port=running.port,
            mode=mode,
            rate=round(rate, 1),
            seconds=seconds,
            warmup=warmup,
            watch_pid=running.pid,
        )
        time.sleep(1.2)  # one more dump, covering the end of the run
        inside = json.loads(diagnostics.read_text())
    return {**summary(row, inside, task_seconds, gc_setting), "options": server_args or "-"}


def quiet_run(max_wait_pct: float | None, *args: Any) -> dict[str, Any]:
    """`one_run(*args)`, on a quiet machine if `max_wait_pct` is given (see ``--quiet``)."""
    if max_wait_pct is None:
        return one_run(*args)
    attempts = 0
    while True:
        attempts += 1
        procstat.wait_for_quiet(max_wait_pct, patience=60)
        row = one_run(*args)
        waited = row["cpu wait%"]
        if waited is None or waited <= max_wait_pct or attempts == ATTEMPTS:
            return {**row, "attempts": attempts}


def summary(
    row: dict[str, Any], inside: dict[str, Any], task_seconds: float, gc_setting: str | None
) -> dict[str, Any]:
    """One line of the table: the generator's figures and the server's, over the measured window."""
    start, end = row["window"]

    def within(samples: list[list[float]]) -> list[list[float]]:
        return [sample for sample in samples if start <= sample[0] <= end]

    lags = sorted(lag for _, lag in within(inside["lag"]))
    collections = within(inside["gc"])
    by_generation = {
        g: [(wall, cpu) for _, gen, wall, cpu in collections if gen == g] for g in range(3)
    }

    def pauses(g: int) -> str:
        walls = [wall for wall, _ in by_generation[g]]
        cpu = sum(cpu for _, cpu in by_generation[g])
        return f"{len(walls)}/{max(walls, default=0.0):.1f}/{cpu:.0f}"

    return {
        "task s": task_seconds,
        "gc": gc_setting or "on",
        "p50 ms": row["latency_ms"]["p50"],
        "p99 ms": row["latency_ms"]["p99"],
        "max ms": row["latency_ms"]["max"],
        "req/s": row["throughput_rps"],
        "server µs/req": round(1e6 * row["server_cpu_s"] / max(row["ok"], 1)),
        "server cpu%": report.percent(row["server_cpu_s"], row["wall_s"]),
        "client cpu%": report.percent(row["client_cpu_s"], row["wall_s"]),
        "cpu wait%": cpu_wait_pct(row),
        "psi%": row["cpu_pressure_pct"],
        "lag p99 ms": lags[max(0, round(0.99 * len(lags)) - 1)] if lags else None,
        "lag max ms": lags[-1] if lags else None,
        **{f"gc{g} n/max ms/cpu ms": pauses(g) for g in range(3)},
        "max timers": max((n for _, n in inside["timers"]), default=None),
        "max tasks": max((n for _, n in inside["tasks"]), default=None),
    }


def ratios(rows: list[dict[str, Any]], variants: int) -> list[str]:
    """Per variant after the first: each round's p99 over the first variant's, then the median."""
    lines = []
    for v in range(1, variants):
        per_round = [
            rows[i + v]["p99 ms"] / rows[i]["p99 ms"] for i in range(0, len(rows), variants)
        ]
        label = f"{rows[v]['task s']:g} s tasks, gc {rows[v]['gc']}, options {rows[v]['options']}"
        lines.append(
            f"p99 with {label} / p99 without tasks: median {statistics.median(per_round):.2f}, "
            f"per round {', '.join(f'{r:.2f}' for r in per_round)}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.highload_split", description=__doc__
    )
    parser.add_argument("--server", default="rawbg", choices=["rawbg", "rawbg-uvloop"])
    parser.add_argument("--mode", default="keepalive", choices=MODES)
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float)
    load.add_argument("--fraction", type=float, help="of the capacity searched first")
    parser.add_argument("--seconds", type=float, default=10, help="recorded, per run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds before, unrecorded")
    parser.add_argument("--task-seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--gc", action="append", default=[], help="add a run with tasks and this BENCH_GC"
    )
    parser.add_argument(
        "--server-args", action="append", default=[], help="add a run with tasks and these"
    )
    parser.add_argument("--quiet", type=float, help="max CPU wait %% of a run (else redone)")
    parser.add_argument(
        "--generator", choices=GENERATORS, default="c", help="loadgen.c (default) or loadgen.py"
    )
    args = parser.parse_args()
    rate = args.rate
    if rate is None:
        runner = Runner(
            PROFILES["full"],
            Path(tempfile.mkdtemp(prefix="rawbg-cap-")),
            use_wrk=False,
            generator=args.generator,
        )
        capacity = runner.capacity(args.server, args.mode, start=1500)
        print(f"capacity: {capacity['capacity_rps']} req/s (probes {capacity['probes']})")
        rate = args.fraction * capacity["capacity_rps"]
    print(f"{args.server} {args.mode} at {rate:.0f} req/s for {args.seconds:g} s:", flush=True)
    variants: list[tuple[float, str | None, str]] = [(0.0, None, ""), (args.task_seconds, None, "")]
    variants += [(args.task_seconds, setting, "") for setting in args.gc]
    variants += [(args.task_seconds, None, options) for options in args.server_args]
    rows = []
    for round_ in range(args.rounds):
        results = {}
        # alternate the order, so that neither variant always runs first
        for v in range(len(variants)) if round_ % 2 == 0 else reversed(range(len(variants))):
            task_seconds, gc_setting, options = variants[v]
            results[v] = quiet_run(
                args.quiet,
                *(args.server, args.mode, rate, args.seconds, args.warmup, task_seconds),
                gc_setting,
                options,
                args.generator,
            )
            print(f"  round {round_ + 1}: {json.dumps(results[v])}", flush=True)
        rows += [{"round": round_ + 1, **results[v]} for v in range(len(variants))]
    columns = [(name, lambda row, name=name: row[name]) for name in rows[0]]
    print(report.table(rows, columns))
    print("\n".join(ratios(rows, len(variants))))


if __name__ == "__main__":
    main()
