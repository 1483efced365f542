"""``python -m benchmarks.journal_compare``: the task journal's cost, measured side by side.

Alternating runs on fresh servers, repeated, medians reported, because the
machine is noisy and only ratios between runs made in the same minutes mean
anything:

* peak req/s (closed loop, wrk if found) of rawbg without a journal, with one
  (``--task-journal-sync normal`` and ``full``), with one commit per
  request instead of per group, and with the journal in PostgreSQL
  (``rawbg-journal-pg``: a local cluster started for the run, on disk, with
  PostgreSQL's durable defaults, ``fsync`` and ``synchronous_commit`` on: a
  commit is on disk before its response);
* p99 at 500 req/s, keep-alive and new connections: rawbg with a journal and
  1 s tasks against the same with 0 s tasks, and against rawbg without a
  journal;
* memory per pending task (RSS, `benchmarks.memory`) with and without a journal;
* the commit itself, in this process: `SQLiteTaskStore.write` of 32 requests'
  entries as 32 transactions against one (what group commit does), in both
  sync modes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import procstat
from .loadgen import MODES, run_loadgen
from .memory import pending_task_memory
from .peak import peak_throughput, wrk_available
from .servers import PG_JOURNAL, PG_URL_ENV, running_server

PEAK_SERVERS = ("rawbg", "rawbg-journal", "rawbg-journal-full", "rawbg-journal-per-request")
# The PostgreSQL cluster of the run: PostgreSQL's own defaults for what the
# tests' clusters turn off (tests/support/postgres_server.py), on disk.
PG_SETTINGS = {"fsync": "on", "full_page_writes": "on", "shared_buffers": "128MB"}
PG_DIRECTORY = "/var/tmp"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


#: the PostgreSQL cluster's postmaster, while one runs (its backends' CPU is the journal's too)
DATABASE_PID: int | None = None


def peak(server: str, seconds: float, log_dir: Path) -> tuple[float, float, float]:
    """req/s, and CPU microseconds per request of the server and of the database.

    CPU per request moves much less than req/s when other work shares the
    cores: it says what a request costs, req/s how much CPU the run was given.
    """
    with running_server(server, 0.0, log_dir) as running:
        database = DATABASE_PID if server == PG_JOURNAL else None
        before = procstat.cpu_seconds(database) if database else 0.0
        row = peak_throughput(running.pid, running.port, seconds, 32, wrk_available(), "keepalive")
        database_cpu = procstat.cpu_seconds(database) - before if database else 0.0
    requests = max(1, int(row.get("sent", 0)))
    server_us = 1e6 * float(row.get("server_cpu_s", 0.0)) / requests
    return float(row["throughput_rps"]), server_us, 1e6 * database_cpu / requests


def p99(server: str, task_seconds: float, mode: str, seconds: float, log_dir: Path) -> float:
    with running_server(server, task_seconds, log_dir) as running:
        row: dict[str, Any] = run_loadgen(
            "open",
            seconds + 60,
            port=running.port,
            mode=mode,
            rate=500,
            seconds=seconds,
            warmup=1.0,
            watch_pid=running.pid,
        )
    return float(row["latency_ms"]["p99"])


def commit_cost(directory: Path, sync: str, requests: int, repeats: int) -> tuple[float, float]:
    """Microseconds per request: one transaction each, and one for all `requests`."""
    from rawbg.tasks.journal.sqlite import SQLiteTaskStore
    from rawbg.tasks.journal.store import NewEntry

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"commit-{sync}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = SQLiteTaskStore(str(path), sync=sync, busy_timeout=1.0)
    store.open(owner="bench", lease_until=time.time() + 60)
    entry = [NewEntry("benchmarks.apps.rawbg_app:send_email", '[["a@example.com"],{}]', "POST /x")]
    each: list[float] = []
    grouped: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(requests):
            store.write([entry], owner="bench", finished=(), attempts=())
        each.append((time.perf_counter() - started) / requests)
        started = time.perf_counter()
        store.write([entry] * requests, owner="bench", finished=(), attempts=())
        grouped.append((time.perf_counter() - started) / requests)
    store.close()
    return statistics.median(each) * 1e6, statistics.median(grouped) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal_compare")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peak-seconds", type=float, default=5.0)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--memory-tasks", type=int, default=10_000)
    parser.add_argument("--only", choices=("peak", "latency", "memory", "commit"), action="append")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "journal")
    parser.add_argument(
        "--no-pg", action="store_true", help="without rawbg-journal-pg (no PostgreSQL here)"
    )
    parser.add_argument(
        "--servers",
        help="comma-separated: only these servers (rawbg is always in: the ratios' base)",
    )
    args = parser.parse_args(argv)
    only = set(args.only or ("peak", "latency", "memory", "commit"))
    log_dir = args.out / "logs"
    with contextlib.ExitStack() as stack:
        if not args.no_pg:
            from tests.support.postgres_server import postgres_server

            pg = stack.enter_context(postgres_server(settings=PG_SETTINGS, base=PG_DIRECTORY))
            os.environ[PG_URL_ENV] = pg.url
            global DATABASE_PID
            DATABASE_PID = pg.pid()
        return compare(args, only, log_dir, with_pg=not args.no_pg)


def compare(args: argparse.Namespace, only: set[str], log_dir: Path, *, with_pg: bool) -> int:
    every = (*PEAK_SERVERS, PG_JOURNAL) if with_pg else PEAK_SERVERS
    chosen = set(args.servers.split(",")) | {"rawbg"} if args.servers else set(every)
    peak_servers = tuple(name for name in every if name in chosen)
    print(f"load average at the start: {load_average()}")

    if "peak" in only:
        peaks: dict[str, list[float]] = {name: [] for name in peak_servers}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in peak_servers}
        for round_ in range(args.rounds):
            for name in peak_servers if round_ % 2 == 0 else reversed(peak_servers):
                rps, server_us, database_us = peak(name, args.peak_seconds, log_dir)
                peaks[name].append(rps)
                cpu[name].append((server_us, database_us))
            progress(
                f"peak round {round_ + 1}: "
                + ", ".join(
                    f"{n} {v[-1]:.0f} ({cpu[n][-1][0]:.0f}+{cpu[n][-1][1]:.0f} us CPU)"
                    for n, v in peaks.items()
                )
                + f"; load {load_average()}"
            )
        base = statistics.median(peaks["rawbg"])
        print("peak req/s, median of alternating rounds (ratio to rawbg without a journal):")
        for name, values in peaks.items():
            med = statistics.median(values)
            print(f"  {name:27} {med:7.0f}  {med / base:.2f}x   runs {[round(v) for v in values]}")
        for name in peak_servers[1:]:
            ratios = [j / r for j, r in zip(peaks[name], peaks["rawbg"], strict=True)]
            print(f"  {name} / rawbg per round: {[round(x, 2) for x in ratios]}")
        print("CPU microseconds per request at peak (server + database), median of rounds:")
        base_cpu = statistics.median(s + d for s, d in cpu["rawbg"])
        for name, costs in cpu.items():
            server_us = statistics.median(s for s, _ in costs)
            database_us = statistics.median(d for _, d in costs)
            total = statistics.median(s + d for s, d in costs)
            print(
                f"  {name:27} {server_us:6.0f} + {database_us:4.0f} = {total:6.0f}  "
                f"rawbg's / this: {base_cpu / total:.2f}   "
                f"runs {[round(s + d) for s, d in costs]}"
            )
        if "rawbg-journal-per-request" in peaks and "rawbg-journal" in peaks:
            group = peaks["rawbg-journal"]
            single = peaks["rawbg-journal-per-request"]
            pairs = [g / s for g, s in zip(group, single, strict=True)]
            print(
                f"  group commit / one commit per request per round: {[round(x, 2) for x in pairs]}"
            )

    if "latency" in only:
        cases = [
            ("rawbg", 0.0),
            ("rawbg", 1.0),
            ("rawbg-journal", 0.0),
            ("rawbg-journal", 1.0),
            ("rawbg-journal-full", 1.0),
        ]
        if with_pg:
            cases += [(PG_JOURNAL, 0.0), (PG_JOURNAL, 1.0)]
        cases = [case for case in cases if case[0] in chosen]
        for mode in MODES:
            results: dict[tuple[str, float], list[float]] = {case: [] for case in cases}
            for round_ in range(args.rounds):
                for server, task_seconds in cases if round_ % 2 == 0 else reversed(cases):
                    results[(server, task_seconds)].append(
                        p99(server, task_seconds, mode, args.latency_seconds, log_dir)
                    )
                progress(
                    f"latency {mode} round {round_ + 1}: {[v[-1] for v in results.values()]}; "
                    f"load {load_average()}"
                )
            plain = statistics.median(results[("rawbg", 0.0)])
            print(f"p99 ms at 500 req/s, {mode}, median of {args.rounds} alternating runs:")
            for (server, task_seconds), values in results.items():
                med = statistics.median(values)
                same = statistics.median(
                    results.get((server, 0.0))
                    or results.get(("rawbg-journal", 0.0))
                    or results[("rawbg", 0.0)]
                )
                print(
                    f"  {server:20} tasks {task_seconds:3} s  p99 {med:6.2f}  "
                    f"{med / same:.2f}x its 0 s, {med / plain:.2f}x rawbg 0 s, "
                    f"{med / statistics.median(results[('rawbg', task_seconds)]):.2f}x rawbg "
                    f"{task_seconds:g} s   "
                    f"runs {[round(v, 2) for v in values]}"
                )

    if "memory" in only:
        print(f"memory per pending task, {args.memory_tasks} pending:")
        servers = ("rawbg", "rawbg-journal", *((PG_JOURNAL,) if with_pg else ()))
        for server in (name for name in servers if name in chosen):
            for mode in MODES:
                try:
                    row = pending_task_memory(server, mode, args.memory_tasks, 500, 1.0, log_dir)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # the next may run
                    print(f"  {server:14} {mode:9} failed: {str(exc).splitlines()[0]}")
                    continue
                print(f"  {server:14} {mode:9} {row['bytes_per_task']} bytes/task ({row['ok']} ok)")
    if "commit" in only:
        print("commit cost per request, 32 requests (median of 20):")
        for sync in ("normal", "full"):
            each, grouped = commit_cost(args.out, sync, 32, 20)
            print(
                f"  sync {sync:6}: one transaction per request {each:7.1f} us, "
                f"one for all 32 {grouped:6.1f} us ({each / grouped:.1f}x less)"
            )
    print(f"load average at the end: {load_average()}")
    return 0


def load_average() -> str:
    with open("/proc/loadavg") as loadavg:
        return loadavg.read().strip()


if __name__ == "__main__":
    sys.exit(main())
