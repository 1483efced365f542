"""``python -m benchmarks [--quick | --smoke] [--servers rawbg,ceiling,fastapi] [--out DIR]``

Runs every scenario against every server, each server in a fresh process of
its own, the load from another process; prints a table, writes results.json
and latency.png to --out. See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import memory, report
from .loadgen import MODES, run_loadgen
from .peak import peak_throughput, wrk_available
from .servers import DEMO, SERVERS, fastapi_available, running_server


@dataclass(frozen=True)
class Profile:
    """How much of everything to run."""

    name: str
    task_seconds: tuple[float, ...]  # background task durations
    rate: float  # open loop, requests per second
    seconds: float  # open loop, recorded duration of each run
    warmup: float  # open loop, unrecorded seconds before it
    peak_seconds: float  # closed loop duration
    peak_connections: int
    memory_tasks: int  # pending tasks measured per memory run
    memory_warmup: int  # requests before the first RSS reading
    memory_settle: float  # seconds of quiet before each RSS reading


DURATIONS = (0.0, 0.01, 0.1, 1.0, 10.0)
PROFILES = {
    "full": Profile("full", DURATIONS, 500, 15, 2, 10, 32, 10_000, 500, 1),
    "quick": Profile("quick", DURATIONS, 500, 1.5, 0.3, 2, 32, 5_000, 300, 0.5),
    "smoke": Profile("smoke", (0.01,), 100, 0.3, 0.1, 1, 8, 100, 10, 0.2),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about a minute and a half")
    size.add_argument("--smoke", action="store_true", help="about ten seconds, for CI")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where results.json, latency.png and logs/ go (default: %(default)s)",
    )
    parser.add_argument(
        "--no-wrk",
        action="store_true",
        help="peak throughput with the built-in closed loop even if wrk is found",
    )
    args = parser.parse_args(argv)
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    if unknown := set(args.servers) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Runner:
    """Runs scenarios, collecting rows; a scenario that fails is noted and skipped."""

    def __init__(self, profile: Profile, log_dir: Path, use_wrk: bool) -> None:
        self.profile = profile
        self.log_dir = log_dir
        self.use_wrk = use_wrk
        self.failures: list[str] = []

    def attempt(self, label: str, scenario: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            row = scenario()
        except Exception as exc:  # a server that would not start, a generator that died
            self.failures.append(f"{label}: {exc}")
            progress(f"  {label}: FAILED: {exc}")
            return None
        outcome = (
            f"{row['bytes_per_task']} bytes/task"
            if "bytes_per_task" in row
            else f"p99 {row['latency_ms']['p99']} ms, {row['throughput_rps']} req/s"
        )
        progress(
            f"  {label}: {row['ok']} ok, {row['error_count']} errors, {outcome} "
            f"({time.monotonic() - started:.1f} s)"
        )
        return row

    def open_loop(self, server: str, task_seconds: float | None, mode: str) -> dict[str, Any]:
        """One open-loop run on a fresh server: keep-alive or a new connection per request."""
        p = self.profile
        with running_server(server, task_seconds or 0.0, self.log_dir) as running:
            row = run_loadgen(
                "open",
                p.warmup + p.seconds + 60,
                port=running.port,
                mode=mode,
                rate=p.rate,
                seconds=p.seconds,
                warmup=p.warmup,
                watch_pid=running.pid,
            )
        return {"server": server, "task_seconds": task_seconds, **row}

    def peak(self, server: str) -> dict[str, Any]:
        p = self.profile
        with running_server(server, 0.0, self.log_dir) as running:
            row = peak_throughput(
                running.pid, running.port, p.peak_seconds, p.peak_connections, self.use_wrk
            )
        return {"server": server, **row}

    def memory(self, server: str, mode: str) -> dict[str, Any]:
        p = self.profile
        return memory.pending_task_memory(
            server, mode, p.memory_tasks, p.memory_warmup, p.memory_settle, self.log_dir
        )


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("rawbg", "h11", "fastapi", "starlette", "uvicorn"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    notes: list[str] = []
    servers = list(args.servers)
    if "fastapi" in servers and not fastapi_available():
        servers.remove("fastapi")
        notes.append(
            "fastapi skipped: fastapi or uvicorn is not importable (pip install -e '.[bench]')"
        )
    use_wrk = wrk_available() and not args.no_wrk
    if not use_wrk:
        notes.append("peak throughput from the built-in closed loop (no wrk on PATH, or --no-wrk)")
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(profile, args.out / "logs", use_wrk)
    started, started_at = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %z")
    results: dict[str, Any] = {"open_loop": [], "peak": [], "memory": [], "notes": notes}

    progress(f"open loop, {profile.rate:g} req/s for {profile.seconds:g} s:")
    for server in servers:
        # the ceiling has no background work: one run per mode
        durations: tuple[float | None, ...] = (
            (None,) if server == "ceiling" else profile.task_seconds
        )
        for task_seconds in durations:
            for mode in MODES:
                label = f"{server} {mode} tasks={task_seconds}"
                row = runner.attempt(label, partial(runner.open_loop, server, task_seconds, mode))
                if row:
                    results["open_loop"].append(row)
    progress("peak throughput, closed loop:")
    for server in [*servers, *([DEMO] if "rawbg" in servers else [])]:
        if row := runner.attempt(f"{server} peak", partial(runner.peak, server)):
            results["peak"].append(row)
    progress("memory per pending task:")
    for server in (s for s in servers if s != "ceiling"):
        for mode in MODES:
            label = f"{server} {mode} memory"
            if row := runner.attempt(label, partial(runner.memory, server, mode)):
                results["memory"].append(row)

    results["meta"] = {
        "profile": profile.name,
        "settings": asdict(profile),
        "machine": machine(),
        "versions": versions(),
        "peak_tool": "wrk" if use_wrk else "loadgen",
        "started": started_at,
        "duration_s": round(time.monotonic() - started, 1),
    }
    results["failures"] = runner.failures
    notes += [f"FAILED {failure}" for failure in runner.failures]
    plot_path = report.plot(results, args.out)
    if plot_path is None:
        notes.append("no plot: matplotlib is not installed")
    json_path = report.write_json(results, args.out)
    print(report.render(results))
    print(f"\nwrote {json_path}" + (f" and {plot_path}" if plot_path else ""))
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
