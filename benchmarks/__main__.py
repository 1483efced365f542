"""``python -m benchmarks [--quick | --smoke] [--servers a,b,...] [--out DIR | --publish]``

Runs every scenario against every server, each server in a fresh process of
its own, the load from another process; prints the tables, writes results.json
and latency.png to benchmarks/results/local/ (ignored by git), or to
benchmarks/results/ with --publish. See benchmarks/README.md for what each
number means.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import instructions, memory, report
from .cgen import GeneratorUnavailable, generator_path
from .loadgen import GENERATORS, MODES, cpu_wait_pct, invalid_reasons, run_loadgen
from .peak import peak_throughput, wrk_available
from .servers import DEMO, SERVERS, missing_modules, running_server


@dataclass(frozen=True, kw_only=True)
class Profile:
    """How much of everything to run."""

    name: str
    task_seconds: tuple[float, ...]  # background task durations
    rate: float  # open loop, requests per second
    seconds: float  # open loop, recorded duration of each run
    warmup: float  # open loop, unrecorded seconds before it
    peak_seconds: float  # closed loop duration
    peak_connections: tuple[int, ...]  # each peak run: these many connections ...
    peak_modes: tuple[str, ...]  # ... keep-alive and/or a new connection per request
    # high load: the sweep at fractions of rawbg's own open-loop capacity
    high_load_fractions: tuple[float, ...]
    high_load_task_seconds: tuple[float, ...]
    high_load_seconds: float  # recorded duration of each run (warm-up as above)
    capacity_probe_seconds: float  # each probe of the capacity search
    capacity_probes: int  # at most this many probes
    capacity_start: float | None = None  # first probe's rate (None: 60 % of the closed-loop peak)
    # the p99 a capacity probe must stay under to pass (see KEEP_UP_P99_MS below)
    keep_up_p99_ms: float = 50.0
    memory_tasks: int  # pending tasks measured per memory run
    memory_warmup: int  # requests before the first RSS reading
    memory_settle: float  # seconds of quiet before each RSS reading


DURATIONS = (0.0, 0.01, 0.1, 1.0, 10.0)
# The peers people deploy instead run the sweep at the base rate with fewer
# durations: none, and tasks long enough to pile up.
PEER_DURATIONS = (0.0, 1.0, 10.0)
PEERS = {"fastapi-std", "starlette-std", "fastapi-granian"}
# The servers whose latency is swept at high load, each at its own capacity.
HIGH_LOAD_SERVERS = ("rawbg", "rawbg-uvloop")
BOTH = ("keepalive", "close")
PROFILES = {
    "full": Profile(
        name="full",
        task_seconds=DURATIONS,
        rate=500,
        seconds=15,
        warmup=2,
        peak_seconds=10,
        peak_connections=(32, 256),
        peak_modes=BOTH,
        high_load_fractions=(0.5, 0.8),
        high_load_task_seconds=DURATIONS,
        high_load_seconds=10,
        capacity_probe_seconds=10,
        capacity_probes=8,
        memory_tasks=10_000,
        memory_warmup=500,
        memory_settle=1,
    ),
    "quick": Profile(
        name="quick",
        task_seconds=DURATIONS,
        rate=500,
        seconds=1.5,
        warmup=0.3,
        peak_seconds=2,
        peak_connections=(32, 256),
        peak_modes=BOTH,
        high_load_fractions=(0.5, 0.8),
        high_load_task_seconds=(0.0, 1.0),
        high_load_seconds=1.5,
        capacity_probe_seconds=1,
        capacity_probes=6,
        memory_tasks=5_000,
        memory_warmup=300,
        memory_settle=0.5,
    ),
    "smoke": Profile(
        name="smoke",
        task_seconds=(0.01,),
        rate=100,
        seconds=0.3,
        warmup=0.1,
        peak_seconds=1,
        peak_connections=(8,),
        peak_modes=("keepalive",),
        high_load_fractions=(0.5,),
        high_load_task_seconds=(0.01,),
        high_load_seconds=0.3,
        capacity_probe_seconds=0.3,
        capacity_probes=3,  # halving after a failure: a loaded machine still finds one
        # the smoke run checks that the harness works, not how fast the
        # machine is: a CI machine busy with other jobs must not fail it
        keep_up_p99_ms=5000.0,
        capacity_start=100,  # smoke: only that the machinery runs, even on a busy machine
        memory_tasks=100,
        memory_warmup=10,
        memory_settle=0.2,
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about 4 minutes")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="about 90 s (all servers): that everything runs, for CI",
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated subset of %(default)s"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        help=f"where results.json, latency.png and logs/ go (default: {LOCAL_RESULTS})",
    )
    where.add_argument(
        "--publish",
        action="store_true",
        help=f"write to {PUBLISHED_RESULTS}, the results benchmarks/README.md quotes",
    )
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="c",
        help="the open loop's load generator: benchmarks/loadgen.c, built at first use with "
        "the system's C compiler (default), or benchmarks/loadgen.py",
    )
    parser.add_argument(
        "--no-wrk",
        action="store_true",
        help="peak throughput with the built-in closed loop even if wrk is found",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = PUBLISHED_RESULTS if args.publish else LOCAL_RESULTS
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    if unknown := set(args.servers) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


PUBLISHED_RESULTS = Path(__file__).parent / "results"
# A run that is not asked to publish must not dirty the checkout (.gitignore)
LOCAL_RESULTS = PUBLISHED_RESULTS / "local"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Runner:
    """Runs scenarios, collecting rows; a scenario that fails is noted and skipped."""

    def __init__(
        self, profile: Profile, log_dir: Path, use_wrk: bool, generator: str = "c"
    ) -> None:
        self.profile = profile
        self.log_dir = log_dir
        self.use_wrk = use_wrk
        self.generator = generator
        self.failures: list[str] = []

    def attempt(self, label: str, scenario: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            row = scenario()
        except Exception as exc:  # a server that would not start, a generator that died
            self.failures.append(f"{label}: {exc}")
            progress(f"  {label}: FAILED: {exc}")
            return None
        if "bytes_per_task" in row:
            outcome = f"{row['bytes_per_task']} bytes/task"
        elif "capacity_rps" in row:
            outcome = f"capacity {row['capacity_rps']} req/s"
        else:
            outcome = f"p99 {row['latency_ms']['p99']} ms, {row['throughput_rps']} req/s"
        progress(
            f"  {label}: {row['ok']} ok, {row['error_count']} errors, {outcome} "
            f"({time.monotonic() - started:.1f} s)"
        )
        return row

    def open_loop(
        self,
        server: str,
        task_seconds: float | None,
        mode: str,
        rate: float | None = None,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """One open-loop run on a fresh server: keep-alive or a new connection per request."""
        p = self.profile
        rate, seconds = rate or p.rate, seconds or p.seconds
        with running_server(server, task_seconds or 0.0, self.log_dir) as running:
            row = self.load(running.port, running.pid, mode, rate, seconds)
        return {"server": server, "task_seconds": task_seconds, **row}

    def load(self, port: int, pid: int, mode: str, rate: float, seconds: float) -> dict[str, Any]:
        """The open loop against a running server; the row says why it is invalid, if it is."""
        row = run_loadgen(
            "open",
            self.profile.warmup + seconds + 60,
            generator=self.generator,
            port=port,
            mode=mode,
            rate=round(rate, 1),
            seconds=seconds,
            warmup=self.profile.warmup,
            watch_pid=pid,
        )
        return {**row, "cpu_wait_pct": cpu_wait_pct(row), "invalid": invalid_reasons(row)}

    def peak(self, server: str, connections: int, mode: str) -> dict[str, Any]:
        p = self.profile
        with running_server(server, 0.0, self.log_dir) as running:
            row = peak_throughput(
                running.pid, running.port, p.peak_seconds, connections, self.use_wrk, mode
            )
        return {"server": server, **row}

    def capacity(self, server: str, mode: str, start: float) -> dict[str, Any]:
        """The highest open-loop rate `server` sustains, 0 s tasks: a search from `start`.

        A probe (`capacity_probe_seconds` long, 10 s in the full run) passes
        when every request sent got a 200 and the p99 stayed under the
        profile's bound (`KEEP_UP_P99_MS` but for the smoke run): a server
        falling behind builds a queue, which the p99 shows long before the
        probe ends. A probe the machine disturbed (`invalid_reasons`: the
        generator over half a core or stopped, or the CPU wait over 10 %) is
        done again, up to `PROBE_ATTEMPTS` times in all; so is a probe that
        failed, once: on this VM one pause of 60-150 ms, which comes with or
        without load, fails a 10 s probe by itself (its p99 is the pause),
        while a server short of the rate fails every time. Up until the first
        failure the rate grows by a quarter; then the search bisects to within
        5 %. One fresh server serves all probes (no task is pending between
        them); each probe keeps the server's and the generator's CPU.
        """
        p = self.profile
        passed, failed = 0.0, math.inf
        rate, probes = start, []

        def sustained(row: dict[str, Any]) -> bool:
            p99 = row["latency_ms"]["p99"]
            return (
                row["error_count"] == 0
                and row["ok"] == row["sent"]
                and p99 is not None
                and p99 <= p.keep_up_p99_ms
            )

        with running_server(server, 0.0, self.log_dir) as running:
            for _ in range(p.capacity_probes):
                attempts, failures = 0, 0
                while True:
                    attempts += 1
                    row = self.load(running.port, running.pid, mode, rate, p.capacity_probe_seconds)
                    kept_up = sustained(row)
                    if attempts == PROBE_ATTEMPTS:
                        break
                    if row["invalid"]:
                        continue
                    failures += not kept_up
                    if kept_up or failures == 2:
                        break
                p99 = row["latency_ms"]["p99"]
                probes.append(
                    {
                        "rate": round(rate, 1),
                        "kept_up": kept_up,
                        "p99_ms": p99,
                        "server_cpu_pct": report.percent(row["server_cpu_s"], row["wall_s"]),
                        "client_cpu_pct": report.percent(row["client_cpu_s"], row["wall_s"]),
                        "cpu_wait_pct": row["cpu_wait_pct"],
                        "attempts": attempts,
                        "send_lag_max_ms": row["send_lag_ms"]["max"],
                        "invalid": row["invalid"],
                    }
                )
                progress(f"    probe {probes[-1]}")
                if kept_up:
                    passed = rate
                else:
                    failed = rate
                rate = rate * 1.25 if failed == math.inf else (passed + failed) / 2
                if passed and failed - passed < 0.05 * failed:
                    break
        if not passed:
            raise RuntimeError(f"{server} kept up with none of the probed rates: {probes}")
        best = max((probe for probe in probes if probe["kept_up"]), key=lambda p: p["rate"])
        return {
            "server": server,
            "mode": mode,
            "capacity_rps": round(passed),
            "server_cpu_pct": best["server_cpu_pct"],
            "probes": probes,
            "ok": len(probes),
            "error_count": 0,
        }

    def memory(self, server: str, mode: str) -> dict[str, Any]:
        p = self.profile
        return memory.pending_task_memory(
            server, mode, p.memory_tasks, p.memory_warmup, p.memory_settle, self.log_dir
        )


# The capacity search (Runner.capacity): a probe passes with a p99 under 50 ms,
# 20-100 times that of a server that keeps up (0.5-2.5 ms); a server 1 % short
# of the rate is 100 ms behind by the end of a 10 s probe, and its last few
# per cent of requests show it.
KEEP_UP_P99_MS = Profile.keep_up_p99_ms
# A probe the machine disturbed, or that failed once, is done again: at most
# this many attempts in all.
PROBE_ATTEMPTS = 3


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
    packages = ("rawbg", "h11", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "granian")
    for package in packages:
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
    for server in list(servers):
        if missing := missing_modules(server):
            servers.remove(server)
            notes.append(
                f"{server} skipped: {', '.join(missing)} not importable (pip install -e '.[bench]')"
            )
    if args.generator == "c":
        try:
            generator_path()  # built now: a missing compiler is said before anything runs
        except GeneratorUnavailable as exc:
            print(f"python -m benchmarks: {exc}", file=sys.stderr)
            return 2
    else:
        notes.append("open loop from loadgen.py (--generator python): it costs the CPU of a server")
    use_wrk = wrk_available() and not args.no_wrk
    if not use_wrk:
        notes.append("peak throughput from the built-in closed loop (no wrk on PATH, or --no-wrk)")
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(profile, args.out / "logs", use_wrk, args.generator)
    started, started_at = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %z")
    results: dict[str, Any] = {
        "open_loop": [],
        "peak": [],
        "capacity": [],
        "high_load": [],
        "memory": [],
        "instructions": None,
        "notes": notes,
    }

    progress("peak throughput, closed loop:")
    for server in [*servers, *([DEMO] if "rawbg" in servers else [])]:
        for connections in profile.peak_connections if server != DEMO else (32,):
            for mode in profile.peak_modes if server != DEMO else ("keepalive",):
                label = f"{server} peak c={connections} {mode}"
                if row := runner.attempt(label, partial(runner.peak, server, connections, mode)):
                    results["peak"].append(row)
    progress(f"open loop, {profile.rate:g} req/s for {profile.seconds:g} s:")
    for server in servers:
        # the ceiling has no background work: one run per mode
        durations: tuple[float | None, ...] = (
            (None,)
            if server == "ceiling"
            else PEER_DURATIONS
            if server in PEERS and profile.name != "smoke"
            else profile.task_seconds
        )
        for task_seconds in durations:
            for mode in MODES:
                label = f"{server} {mode} tasks={task_seconds}"
                row = runner.attempt(label, partial(runner.open_loop, server, task_seconds, mode))
                if row:
                    results["open_loop"].append(row)
    high_load(runner, [s for s in HIGH_LOAD_SERVERS if s in servers], results)
    progress("memory per pending task:")
    for server in (s for s in servers if s != "ceiling"):
        for mode in MODES:
            label = f"{server} {mode} memory"
            if row := runner.attempt(label, partial(runner.memory, server, mode)):
                results["memory"].append(row)
    if profile.name == "full" and instructions.valgrind_available():
        progress("instructions per request (callgrind):")
        results["instructions"] = instructions.measure()
    elif profile.name == "full":
        notes.append("no instruction counts: valgrind is not on PATH")

    results["meta"] = {
        "profile": profile.name,
        "settings": asdict(profile),
        "machine": machine(),
        "versions": versions(),
        "peak_tool": "wrk" if use_wrk else "loadgen",
        "open_loop_generator": args.generator,
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


def high_load(runner: Runner, servers: list[str], results: dict[str, Any]) -> None:
    """The task-duration sweep at fractions of each server's own open-loop capacity.

    The capacity is searched in this run, per mode, from 60 % of the server's
    closed-loop peak with 32 connections (an open loop batches less work per
    wake-up than a closed one, so its capacity is lower).
    """
    p = runner.profile
    for server in servers:
        for mode in MODES:
            peaks = [
                r["throughput_rps"]
                for r in results["peak"]
                if r["server"] == server and r.get("mode", "keepalive") == mode
            ]
            if not peaks:  # no closed-loop peak in this mode: guess from keep-alive's
                peaks = [
                    0.5 * r["throughput_rps"] for r in results["peak"] if r["server"] == server
                ]
            start = p.capacity_start or (0.6 * max(peaks) if peaks else 2 * p.rate)
            progress(f"high load: {server} {mode}, capacity search from {start:.0f} req/s:")
            capacity = runner.attempt(
                f"{server} {mode} capacity", partial(runner.capacity, server, mode, start)
            )
            if capacity is None:
                continue
            results["capacity"].append(capacity)
            for fraction in p.high_load_fractions:
                rate = fraction * capacity["capacity_rps"]
                for task_seconds in p.high_load_task_seconds:
                    label = (
                        f"{server} {mode} {fraction:.0%} ({rate:.0f} req/s) tasks={task_seconds}"
                    )
                    scenario = partial(
                        runner.open_loop, server, task_seconds, mode, rate, p.high_load_seconds
                    )
                    if row := runner.attempt(label, scenario):
                        results["high_load"].append({**row, "load": fraction})


if __name__ == "__main__":
    sys.exit(main())
