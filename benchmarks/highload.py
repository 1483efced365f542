"""The high-load table: p99 with 1 s tasks pending over p99 with none, near capacity.

``python -m benchmarks.highload [--rounds 3] [--servers ...] [--out DIR | --publish]``

1. **Capacity**, per mode, of rawbg on asyncio and on uvloop (`Runner.capacity`:
   the highest open-loop rate sustained for 10 s with every request answered
   and a p99 under 50 ms), unless given with ``--capacity SERVER:MODE=RATE``.
2. **Rates**: each rawbg server runs at ``--fractions`` (50 % and 80 %) of its
   own capacity; the peers (FastAPI on uvicorn[standard], on granian) at
   rawbg-on-asyncio's rates, the load a rawbg user would put on them.
3. **Rounds**: for every server, mode and load, one run with no task and one
   with tasks of ``--task-seconds``, each on a fresh server, the two in
   alternating order from round to round. A run the machine disturbed (the
   generator over half a core, or the CPU wait over 10 %: `loadgen.invalid_reasons`)
   is done again, up to `ATTEMPTS` times; if it stays disturbed the round is
   left out of the median. ``--realtime`` runs servers and generator under
   SCHED_FIFO, out of reach of the machine's other work (`realtime`).
4. **Output**: each round's p99s, ratio, server and generator CPU; per cell
   the median ratio over the valid rounds. ``highload.json`` and
   ``highload.png`` go to ``--out`` (default benchmarks/results/local/), or to
   benchmarks/results/ with ``--publish``. ``--markdown`` prints the summary
   as the table at the top of benchmarks/README.md.

The load comes from benchmarks/loadgen.c (``--generator python``: loadgen.py,
whose rows at these rates are all invalid).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import operator
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import report
from .__main__ import LOCAL_RESULTS, PROFILES, PUBLISHED_RESULTS, Runner, machine, versions
from .cgen import GeneratorUnavailable, generator_path
from .loadgen import GENERATORS, MODES
from .servers import missing_modules

BASES = ("rawbg", "rawbg-uvloop")
PEERS = ("fastapi-std", "fastapi-granian")
# Where the capacity search starts (about 60 % of what it found before), per mode
START = {"keepalive": 6000.0, "close": 3000.0}
ATTEMPTS = 3
# Before redoing a disturbed run, let the burst that disturbed it pass
RETRY_PAUSE_S = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.highload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="recorded, per run")
    parser.add_argument("--warmup", type=float, default=2, help="unrecorded, before each run")
    parser.add_argument("--task-seconds", type=float, default=1.0)
    parser.add_argument("--servers", default=",".join((*BASES, *PEERS)))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--fractions", default="0.5,0.8")
    parser.add_argument(
        "--start",
        action="append",
        default=[],
        metavar="MODE=RATE",
        help=f"where the capacity search starts (default {START})",
    )
    parser.add_argument(
        "--capacity",
        action="append",
        default=[],
        metavar="SERVER:MODE=RATE",
        help="use this capacity instead of searching it (rawbg:keepalive=10500)",
    )
    parser.add_argument("--generator", choices=GENERATORS, default="c")
    parser.add_argument(
        "--realtime", action="store_true", help="servers and generator under SCHED_FIFO (root)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the README's table")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path)
    where.add_argument("--publish", action="store_true", help=f"write to {PUBLISHED_RESULTS}")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.modes = [m for m in args.modes.split(",") if m]
    args.fractions = [float(f) for f in args.fractions.split(",") if f]
    if args.out is None:
        args.out = PUBLISHED_RESULTS if args.publish else LOCAL_RESULTS
    given = {}
    for item in args.capacity:
        key, rate = item.split("=")
        server, mode = key.split(":")
        given[server, mode] = float(rate)
    args.capacity = given
    args.start = {**START, **{m: float(r) for m, r in (item.split("=") for item in args.start)}}
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def disturbed_run(runner: Runner, *run: Any) -> dict[str, Any]:
    """`runner.open_loop(*run)`, redone (up to `ATTEMPTS` times) while the machine disturbs it."""
    attempts = 0
    while True:
        attempts += 1
        row = runner.open_loop(*run)
        if not row["invalid"] or attempts == ATTEMPTS:
            return {**row, "attempts": attempts}
        time.sleep(RETRY_PAUSE_S)


def realtime() -> None:
    """Run this process, and the servers and generators it starts, under SCHED_FIFO.

    On a machine shared with other work (even niced), a server at nice 0 waited
    for a CPU 20-45 % of its runs (schedstat); under SCHED_FIFO priority 1 it
    and the generator preempt everything of the normal classes at once, and
    the kernel's real-time throttling still leaves the rest 5 % of each CPU.
    The measure is then of the server on a machine of its own.
    """
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


def summary_row(row: dict[str, Any]) -> dict[str, Any]:
    """What the table keeps of one run."""
    return {
        "p50_ms": row["latency_ms"]["p50"],
        "p99_ms": row["latency_ms"]["p99"],
        "max_ms": row["latency_ms"]["max"],
        "ok": row["ok"],
        "sent": row["sent"],
        "errors": row["errors"],
        "server_cpu_pct": report.percent(row["server_cpu_s"], row["wall_s"]),
        "client_cpu_pct": report.percent(row["client_cpu_s"], row["wall_s"]),
        "cpu_wait_pct": row["cpu_wait_pct"],
        "psi_pct": row["cpu_pressure_pct"],
        "send_lag_p99_ms": row["send_lag_ms"]["p99"],
        "invalid": row["invalid"],
        "attempts": row["attempts"],
    }


def cell_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median ratio over the rounds whose two runs were both valid and fully answered."""
    ratios = []
    for r in rounds:
        none, tasks = r["none"], r["tasks"]
        usable = not none["invalid"] and not tasks["invalid"]
        r["ratio"] = (
            round(tasks["p99_ms"] / none["p99_ms"], 2)
            if usable and none["p99_ms"] and tasks["p99_ms"] is not None
            else None
        )
        if r["ratio"] is not None:
            ratios.append(r["ratio"])
    return {
        "median_ratio": round(statistics.median(ratios), 2) if ratios else None,
        "valid_rounds": len(ratios),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    profile = dataclasses.replace(PROFILES["full"], warmup=args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(profile, LOCAL_RESULTS / "logs", use_wrk=False, generator=args.generator)
    servers = [s for s in args.servers if not missing_modules(s)]
    notes = [f"{s} skipped: {', '.join(missing_modules(s))} missing" for s in args.servers]
    notes = [n for n, s in zip(notes, args.servers, strict=True) if s not in servers]
    capacity: dict[str, dict[str, Any]] = {}
    for server in (s for s in BASES if s in servers):
        for mode in args.modes:
            key = f"{server}:{mode}"
            if (server, mode) in args.capacity:
                capacity[key] = {"capacity_rps": args.capacity[server, mode], "given": True}
                continue
            progress(f"capacity of {key}, from {args.start[mode]:.0f} req/s:")
            found = runner.capacity(server, mode, args.start[mode])
            progress(f"  {found['capacity_rps']} req/s, probes {found['probes']}")
            capacity[key] = found
    cells = []
    for server in servers:
        base = server if server in BASES else "rawbg"
        for mode in args.modes:
            for fraction in args.fractions:
                rate = round(fraction * capacity[f"{base}:{mode}"]["capacity_rps"], 1)
                cells.append({"server": server, "mode": mode, "load": fraction, "rate": rate})
    for cell in cells:
        cell["rounds"] = []
    started = time.monotonic()
    for round_ in range(args.rounds):
        for cell in cells:
            order = [0.0, args.task_seconds] if round_ % 2 == 0 else [args.task_seconds, 0.0]
            runs = {}
            for task_seconds in order:
                label = (
                    f"round {round_ + 1}: {cell['server']} {cell['mode']} {cell['load']:.0%} "
                    f"({cell['rate']:.0f} req/s) tasks={task_seconds:g}"
                )
                row = disturbed_run(
                    runner, cell["server"], task_seconds, cell["mode"], cell["rate"], args.seconds
                )
                runs["tasks" if task_seconds else "none"] = summary_row(row)
                progress(
                    f"  {label}: p99 {row['latency_ms']['p99']} ms, {row['ok']}/{row['sent']} ok, "
                    f"server {runs['tasks' if task_seconds else 'none']['server_cpu_pct']} %, "
                    f"generator {runs['tasks' if task_seconds else 'none']['client_cpu_pct']} %, "
                    f"wait {row['cpu_wait_pct']} %"
                    + (f", INVALID: {row['invalid']}" if row["invalid"] else "")
                )
            cell["rounds"].append({"round": round_ + 1, "first": order[0], **runs})
    for cell in cells:
        cell.update(cell_summary(cell["rounds"]))
    return {
        "capacity": capacity,
        "cells": cells,
        "notes": notes,
        "meta": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "task_seconds": args.task_seconds,
            "generator": args.generator,
            "realtime": args.realtime,
            "machine": machine(),
            "versions": versions(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "duration_s": round(time.monotonic() - started, 1),
            "loadavg": Path("/proc/loadavg").read_text().strip(),
        },
    }


def spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    low, high = min(known), max(known)
    return f"{low:.3g}" if low == high else f"{low:.3g}-{high:.3g}"


NAMES = {
    "rawbg": "rawbg",
    "rawbg-uvloop": "rawbg on uvloop",
    "fastapi-std": "FastAPI, uvicorn[standard]",
    "fastapi-granian": "FastAPI, granian",
}


def markdown(results: dict[str, Any]) -> str:
    """The summary table: one line per server, mode and load."""
    lines = [
        "| server | mode | load (req/s) | p99 with 1 s tasks / none: median (rounds) "
        "| p99 ms, none | p99 ms, tasks | server CPU %, none / tasks | generator CPU % "
        "| CPU wait % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        rounds = cell["rounds"]
        none = [r["none"] for r in rounds]
        tasks = [r["tasks"] for r in rounds]
        per_round = ", ".join("-" if r["ratio"] is None else f"{r['ratio']:g}" for r in rounds)
        median = "-" if cell["median_ratio"] is None else f"**{cell['median_ratio']:g}**"
        unanswered = sum(t["sent"] - t["ok"] for t in tasks)
        tasks_p99 = spread([t["p99_ms"] for t in tasks])
        if unanswered:
            tasks_p99 += f" ({unanswered} of {sum(t['sent'] for t in tasks)} unanswered)"
        lines.append(
            f"| {NAMES.get(cell['server'], cell['server'])} | "
            f"{'keep-alive' if cell['mode'] == 'keepalive' else 'new connections'} | "
            f"{cell['load']:.0%} ({cell['rate']:.0f}) | {median} ({per_round}) | "
            f"{spread([n['p99_ms'] for n in none])} | {tasks_p99} | "
            f"{spread([n['server_cpu_pct'] for n in none])} / "
            f"{spread([t['server_cpu_pct'] for t in tasks])} | "
            f"{spread([r['client_cpu_pct'] for r in none + tasks])} | "
            f"{spread([r['cpu_wait_pct'] for r in none + tasks])} |"
        )
    return "\n".join(lines)


def rounds_table(results: dict[str, Any]) -> str:
    rows = []
    for cell in results["cells"]:
        for r in cell["rounds"]:
            for variant in ("none", "tasks"):
                rows.append(
                    {
                        **cell,
                        **r[variant],
                        "round": r["round"],
                        "variant": variant,
                        "ratio": r["ratio"] if variant == "tasks" else None,
                    }
                )
    shown = {
        "server": "server",
        "mode": "mode",
        "rate": "rate",
        "round": "round",
        "tasks": "variant",
        "p50 ms": "p50_ms",
        "p99 ms": "p99_ms",
        "max ms": "max_ms",
        "server cpu%": "server_cpu_pct",
        "client cpu%": "client_cpu_pct",
        "cpu wait%": "cpu_wait_pct",
        "lag p99 ms": "send_lag_p99_ms",
        "ratio": "ratio",
    }
    columns: list[report.Column] = [
        (header, operator.itemgetter(key)) for header, key in shown.items()
    ]
    columns[2:2] = [("load", lambda r: f"{r['load']:.0%}")]
    columns[9:9] = [("ok/sent", lambda r: f"{r['ok']}/{r['sent']}")]
    columns.append(("valid", report.validity))
    return report.table(rows, columns)


def plot(results: dict[str, Any], out: Path) -> Path | None:
    """Per mode, the median ratio per server and load, each round as a dot; log scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cells = results["cells"]
    modes = list(dict.fromkeys(c["mode"] for c in cells))
    servers = list(dict.fromkeys(c["server"] for c in cells))
    loads = list(dict.fromkeys(c["load"] for c in cells))
    by_key = {(c["server"], c["mode"], c["load"]): c for c in cells}
    figure, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), sharey=True)
    axes = [axes] if len(modes) == 1 else list(axes)
    width = 0.8 / len(servers)
    for ax, mode in zip(axes, modes, strict=True):
        for s, server in enumerate(servers):
            for x, load in enumerate(loads):
                cell = by_key.get((server, mode, load))
                if cell is None or cell["median_ratio"] is None:
                    continue
                at = x + (s - (len(servers) - 1) / 2) * width
                color = report.COLORS.get(server)
                ax.bar(
                    at,
                    cell["median_ratio"],
                    width,
                    color=color,
                    label=NAMES.get(server, server) if x == 0 else None,
                )
                dots = [r["ratio"] for r in cell["rounds"] if r["ratio"] is not None]
                ax.plot([at] * len(dots), dots, "k.", markersize=4)
        ax.axhline(1.5, color="black", linestyle="--", linewidth=1, label="target: 1.5")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(loads)), [f"{load:.0%} of capacity" for load in loads])
        ax.set_title("keep-alive" if mode == "keepalive" else "new connection per request")
        ax.grid(True, which="both", axis="y", alpha=0.3)
    axes[0].set_ylabel(f"p99 with {results['meta']['task_seconds']:g} s tasks / p99 with none")
    axes[-1].legend(fontsize="small")
    figure.suptitle(
        "p99 with background tasks pending over p99 with none (median of rounds; dots: each round)",
        fontsize="medium",
    )
    figure.tight_layout()
    path = out / "highload.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.realtime:
        realtime()
    if args.generator == "c":
        try:
            generator_path()
        except GeneratorUnavailable as exc:
            print(f"python -m benchmarks.highload: {exc}", file=sys.stderr)
            return 2
    results = run(args)
    path = args.out / "highload.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    plotted = plot(results, args.out)
    print(rounds_table(results))
    print()
    print(markdown(results))
    print(f"\nwrote {path}" + (f" and {plotted}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
