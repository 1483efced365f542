"""``python -m benchmarks.pg_takeover``: how long a dead node's tasks wait, with the default lease.

Two rawbg nodes on hosts of their own (tests/support/netns.py: a network and
a UTS namespace each, so neither takes the other for a process of its own
host) share one PostgreSQL. Each round: both serve keep-alive clients whose
requests queue a 1 s task, then one node is SIGKILLed. The **takeover time**
is from the kill to the survivor's log line ``took over N task(s) from node
...``; the round also waits until every task the killed node acknowledged
has run. The tasks note each start and each finished run, so that a round
counts the tasks that *started* twice (a task the kill cut short, then run
again, is one of them), and checks each against what the killed node had
started before the kill: those it had cut short (running at the kill) and
those it had finished but not yet marked done (done-marks are batched: in
the journal's terms, still running). The killed node starts again (a new
registration) for the next round. Then, alone: **100 000 entries** of a node
that is gone, taken over and run by one node.

Needs root (namespaces) and PostgreSQL's binaries, like the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from rawbg.server.config import DEFAULT_SHARED_JOURNAL_LEASE
from rawbg.tasks.journal.postgres import RENEWALS_PER_LEASE
from tests.support.journal_nodes import entry_count, keep_posting, leave_entries, node, runs
from tests.support.netns import covering, hosts
from tests.support.postgres_server import PostgresServer, postgres_server

CLIENTS_PER_NODE = 8


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def kill_rounds(
    pg: PostgresServer, rounds: int, load_seconds: float, lease: float | None
) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    with hosts(2) as (host_a, host_b):
        pg.listen_also([host_a.gateway, host_b.gateway], covering([host_a, host_b]))
        directory = Path(tempfile.mkdtemp(prefix="rawbg-takeover-"))
        numbers = itertools.count(1)
        survivor_node = node(host_b, pg, directory, lease=lease, task_seconds=1.0, note_starts=True)
        async with survivor_node as survivor:
            for round_ in range(rounds):
                acknowledged: set[int] = set()
                victim_node = node(
                    host_a, pg, directory, lease=lease, task_seconds=1.0, note_starts=True
                )
                async with victim_node as victim:
                    load = [
                        asyncio.create_task(
                            keep_posting(host, n.port, "/work", numbers, acknowledged)
                        )
                        for host, n in ((host_a, victim), (host_b, survivor))
                        for _ in range(CLIENTS_PER_NODE)
                    ]
                    # The kill falls anywhere in the victim's renewal cycle: with a
                    # fixed delay it falls at the same phase of it in every round.
                    renewal = (lease or DEFAULT_SHARED_JOURNAL_LEASE) / RENEWALS_PER_LEASE
                    await asyncio.sleep(load_seconds + random.uniform(0.0, renewal))
                    seen = len(survivor.lines)
                    victim.signal(signal.SIGKILL)
                    killed = time.monotonic()
                    await victim.proc.wait()
                    pid = victim.proc.pid
                    started_there = {n for n, p in runs(directory, "start") if p == pid}
                    finished_there = {n for n, p in runs(directory) if p == pid}
                    while not any("took over" in line for line in survivor.lines[seen:]):
                        await asyncio.sleep(0.005)
                    takeover = time.monotonic() - killed
                    for task in load:
                        task.cancel()
                    await asyncio.gather(*load, return_exceptions=True)
                    while not acknowledged <= {n for n, _ in runs(directory)}:
                        await asyncio.sleep(0.05)
                    all_ran = time.monotonic() - killed
                starts = collections.Counter(n for n, _ in runs(directory, "start"))
                twice = {n for n in acknowledged if starts[n] > 1}
                cut_short = started_there - finished_there
                results.append(
                    {
                        "takeover_s": takeover,
                        "all_ran_s": all_ran,
                        "acknowledged": len(acknowledged),
                        "twice": len(twice),
                        "cut_short": len(cut_short),
                        "twice_cut_short": len(twice & cut_short),
                        "twice_finished_unmarked": len(twice & finished_there),
                        "twice_not_started_there": len(twice - started_there),
                    }
                )
                progress(
                    f"kill {round_ + 1}: taken over {takeover:.2f} s after the kill, all "
                    f"{len(acknowledged)} acknowledged ran by {all_ran:.2f} s; started twice "
                    f"{len(twice)}: {len(twice & cut_short)} of the {len(cut_short)} running "
                    f"at the kill, {len(twice & finished_there)} finished there but not yet "
                    f"marked done, {len(twice - started_there)} others; load {load_average()}"
                )
    return results


def many_entries(pg: PostgresServer, count: int) -> dict[str, float]:
    """`count` entries of a node that is gone, taken over and run by one node."""
    url = pg.url.rsplit("/", 1)[0] + "/many"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE many")
    leave_entries(url, count)

    async def run() -> dict[str, float]:
        from rawbg.testing import serve_app
        from tests.support import journal_app

        began = time.monotonic()
        async with serve_app(journal_app.app, task_journal=url) as client:
            up = time.monotonic() - began
            while await asyncio.to_thread(entry_count, url) > 0:
                await asyncio.sleep(0.1)
            done = time.monotonic() - began
            assert client.server.journal is not None
            taken = client.server.journal.taken_over
        return {"up_s": up, "all_run_s": done, "taken": taken}

    return asyncio.run(run())


def load_average() -> str:
    with open("/proc/loadavg") as loadavg:
        return loadavg.read().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_takeover")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--load-seconds", type=float, default=2.0)
    parser.add_argument("--lease", type=float, help="--task-journal-lease (default: rawbg's)")
    parser.add_argument("--entries", type=int, default=100_000, help="0: skip that part")
    args = parser.parse_args(argv)
    print(f"load average at the start: {load_average()}")
    with postgres_server() as pg:
        rounds = asyncio.run(kill_rounds(pg, args.kills, args.load_seconds, args.lease))
    takeovers = [r["takeover_s"] for r in rounds]
    print(
        f"takeover after a SIGKILL over {len(rounds)} kills (lease "
        f"{args.lease or 'default'}): p50 {statistics.median(takeovers):.2f} s, "
        f"max {max(takeovers):.2f} s, min {min(takeovers):.2f} s"
    )
    total = {key: sum(r[key] for r in rounds) for key in rounds[0]}
    all_ran = statistics.median(r["all_ran_s"] for r in rounds)
    print(
        f"  every acknowledged task ran ({total['acknowledged']:.0f}); all of a kill's tasks "
        f"ran by {all_ran:.2f} s (p50), {max(r['all_ran_s'] for r in rounds):.2f} s (max)"
    )
    print(
        f"  started twice {total['twice']:.0f}: {total['twice_cut_short']:.0f} of the "
        f"{total['cut_short']:.0f} cut short by the kill, {total['twice_finished_unmarked']:.0f} "
        f"finished on the killed node, done-mark not yet committed; "
        f"{total['twice_not_started_there']:.0f} that the killed node had not started"
    )
    for number, r in enumerate(rounds, 1):
        print(
            f"  kill {number:2}: takeover {r['takeover_s']:5.2f} s, "
            f"all ran {r['all_ran_s']:5.2f} s, acknowledged {r['acknowledged']:.0f}, "
            f"running at the kill {r['cut_short']:.0f}, started twice {r['twice']:.0f} "
            f"({r['twice_cut_short']:.0f} cut short, {r['twice_finished_unmarked']:.0f} "
            f"unmarked, {r['twice_not_started_there']:.0f} others)"
        )
    if args.entries:
        with postgres_server() as pg:
            many = many_entries(pg, args.entries)
        print(
            f"{args.entries} entries of a dead node: serving after {many['up_s']:.2f} s, "
            f"all taken over and run after {many['all_run_s']:.1f} s ({many['taken']:.0f} taken)"
        )
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
