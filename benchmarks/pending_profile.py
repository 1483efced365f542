"""Where the CPU that pending tasks cost goes: ``python -m benchmarks.pending_profile --rate R``.

Runs rawbg at one open-loop rate (loadgen.c) with no background task, and
with tasks of each ``--task-seconds`` (0,1 by default: 1 s tasks keep about R
of them pending), each on a fresh server with benchmarks/apps/diagnostics.py
inside it, in rounds of alternating order, while py-spy samples the server
over the measured window (``--native``: C frames too, so that the cyclic GC
and the timer heap's C code show by name). Prints per run:

* the generator's p50 and p99, the server's CPU per request (/proc);
* from inside the server (highload_split.summary): the GC's collections per
  generation (count / longest ms / CPU ms), the loop's lag, the most timers
  and tasks alive;
* the samples sorted into `CATEGORIES` by their innermost frame that matches
  one, each category's share of the samples times the server's CPU per
  request (py-spy counts a thread waiting for a CPU as busy, /proc does not);

then, per category and per function (the innermost Python frame of each
sample), the median growth over the variant with no task: where the extra
CPU goes.
py-spy must be allowed to ptrace the server (root).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import report
from .highload import realtime
from .highload_split import environment, summary
from .loadgen import run_loadgen
from .profile import stacks
from .servers import running_server

# (category, markers): a sample belongs to the first category one of whose
# markers is in its innermost frame that has any marker, walking outwards.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "cyclic GC (automatic, and rawbg's clock)",
        ("gc_collect", "collect_with_callback", "gc_clock.py", "gcmodule", "collect_generations"),
    ),
    ("timer heap: TimerHandle.__lt__ (Python)", ("__lt__ (asyncio/events.py",)),
    ("timer heap: heappush/heappop (C)", ("heappush", "heappop", "siftdown", "siftup")),
    (
        "timers: made, scheduled, cancelled",
        (
            "call_at (",
            "call_later (",
            "TimerHandle.__init__",
            "TimerHandle.cancel",
            "_timer_handle",
        ),
    ),
    (
        "the background task: its steps, wake-up, end and release",
        (
            "send_email",
            "sleep (asyncio/tasks.py",
            "_set_result_unless_cancelled",
            "rawbg/background.py",
            "rawbg/tasks/",
            "WorkGroup",
            "_release",
        ),
    ),
    ("epoll_wait", ("select (selectors.py", "epoll_wait")),
    ("socket receive", ("_read_ready", "recv")),
    ("socket send", ("write (asyncio/selector_events.py", "sendmsg", "sock_send", "send (")),
]
OTHER = "the rest: HTTP, the app, the loop"


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def read_samples(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Samples per category and per innermost Python frame, and in all, from py-spy's output."""
    by_category: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks(raw):
        by_category[category(frames)] += count
        python = [frame for frame in frames if ".py:" in frame]
        by_function[python[-1] if python else frames[-1]] += count
        total += count
    return by_category, by_function, total


def one_run(
    args: argparse.Namespace, task_seconds: float, scratch: Path, label: str
) -> dict[str, Any]:
    diagnostics = scratch / f"{label}.json"
    raw = scratch / f"{label}.txt"
    load: dict[str, Any] = {}
    with (
        environment(BENCH_DIAGNOSTICS=str(diagnostics)),
        running_server(args.server, task_seconds, scratch / "logs") as server,
    ):
        generator = threading.Thread(
            target=lambda: load.update(
                run_loadgen(
                    "open",
                    args.warmup + args.seconds + 60,
                    port=server.port,
                    rate=args.rate,
                    mode=args.mode,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    watch_pid=server.pid,
                )
            )
        )
        generator.start()
        time.sleep(args.warmup + 0.5)
        sampled = max(1, round(args.seconds - 1))
        spy = ["py-spy", "record", "--pid", str(server.pid), "--duration", str(sampled)]
        spy += ["--rate", str(args.sample_rate), "--format", "raw", "--output", str(raw)]
        # --native must stop the server for each sample (py-spy cannot unwind C stacks
        # of a running process); Python frames alone are read without stopping it
        spy += ["--native"] if args.native else ["--nonblocking"]
        subprocess.run(spy, check=True, capture_output=True)
        generator.join()
        time.sleep(1.2)  # the diagnostics' last dump covers the end of the run
        inside = json.loads(diagnostics.read_text())
    by_category, by_function, total = read_samples(raw)
    row = summary(load, inside, task_seconds, None)
    # py-spy counts a runnable thread as busy: the samples give the shares, /proc the CPU
    per_request = row["server µs/req"] / max(total, 1)
    return {
        **row,
        "samples": total,
        "categories": {name: round(n * per_request, 2) for name, n in by_category.items()},
        "functions": {name: round(n * per_request, 3) for name, n in by_function.items()},
    }


def growth(runs: list[dict[str, Any]], key: str, variant: float) -> dict[str, float]:
    """Per name in runs[*][key]: median over rounds of (variant's µs/req - no task's)."""
    rounds = collections.defaultdict(dict)
    for run in runs:
        rounds[run["round"]][run["task s"]] = run[key]
    deltas: dict[str, list[float]] = collections.defaultdict(list)
    for by_variant in rounds.values():
        base, other = by_variant.get(0.0, {}), by_variant.get(variant, {})
        for name in set(base) | set(other):
            deltas[name].append(other.get(name, 0.0) - base.get(name, 0.0))
    return {name: round(statistics.median(values), 2) for name, values in deltas.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pending_profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--task-seconds", default="0,1", help="variants, 0 first")
    parser.add_argument("--server", default="rawbg", choices=["rawbg", "rawbg-uvloop"])
    parser.add_argument("--mode", default="keepalive", choices=["keepalive", "close"])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sample-rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--realtime", action="store_true", help="SCHED_FIFO (see highload)")
    parser.add_argument("--out", type=Path, help="write every run as JSON here")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        parser.error("py-spy is not on PATH (pip install -e '.[bench]')")
    if args.realtime:
        realtime()
    variants = [float(v) for v in args.task_seconds.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="rawbg-pending-") as scratch:
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            for task_seconds in order:
                label = f"r{round_}-{task_seconds:g}"
                run = one_run(args, task_seconds, Path(scratch), label)
                runs.append({"round": round_ + 1, **run})
                print(
                    f"  round {round_ + 1}, {task_seconds:g} s tasks: p99 {run['p99 ms']} ms, "
                    f"server {run['server µs/req']} µs/req, {run['samples']} samples",
                    file=sys.stderr,
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2) + "\n")
    skip = {"categories", "functions"}
    columns = [(name, lambda r, name=name: r[name]) for name in runs[0] if name not in skip]
    print(report.table(runs, columns))
    names = [name for name, _ in CATEGORIES] + [OTHER]
    print(f"\nµs of server CPU per request, by category (py-spy, {args.rate:g} req/s):")
    print(
        report.table(
            runs,
            [
                ("round", lambda r: r["round"]),
                ("task s", lambda r: r["task s"]),
                *[(n, lambda r, n=n: r["categories"].get(n, 0.0)) for n in names],
            ],
        )
    )
    for variant in variants[1:]:
        print(f"\nwith {variant:g} s tasks over none, median of the rounds' differences, µs/req:")
        by_category = growth(runs, "categories", variant)
        for name in names:
            print(f"  {by_category.get(name, 0.0):+7.2f}  {name}")
        by_function = growth(runs, "functions", variant)
        print("  functions (innermost frame) that grew most:")
        for name, delta in sorted(by_function.items(), key=lambda item: -item[1])[:20]:
            print(f"  {delta:+7.2f}  {name}")


if __name__ == "__main__":
    main()
