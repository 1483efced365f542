"""``python -m benchmarks.pg_drivers``: psycopg 3 against asyncpg for the task journal's writes.

What the PostgreSQL journal's writer thread would do, timed from a thread
that is not an event loop's (as `rawbg.journal_writer` calls its store):

* a group commit of N entries (N = 1, 32, 256) into a table shaped as the
  journal's ``rawbg_tasks`` (`TABLE`): one transaction, each way a driver can send it
  (a multi-row ``VALUES`` list, arrays through ``unnest``, a pipeline of
  one-row inserts, ``COPY``);
* a batch of N done-marks: ``DELETE ... WHERE id = ANY(...) AND token = ...``.

psycopg runs as the writer thread would run it: blocking calls, autocommit
(a single statement is its own transaction), the pipeline inside an explicit
transaction. asyncpg needs an event loop: the writer thread keeps one of its
own and runs each commit with ``run_until_complete`` ("asyncpg, thread
loop"). The cost that asyncpg would add to the *server's* loop if it ran
there instead is the same work without the per-commit ``run_until_complete``
("asyncpg, in loop": the commits awaited one after another in one coroutine).

Per cell: latency per commit (median and p90, wall clock around each
commit), the client's CPU per entry (``time.thread_time`` of the thread that
commits: its loop, if it has one, included) and the server's (the backend's
``/proc/PID/schedstat``, nanoseconds). Cells run in alternating order,
reversed every other round, on one throwaway cluster (tests/support/postgres_server.py,
TCP on 127.0.0.1, ``fsync = off``: the driver and the server's CPU, not a
disk's flush). Run it under the benchmark lock:
``flock /tmp/rawbg-bench.lock python -m benchmarks.pg_drivers``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.postgres_server import PostgresServer, postgres_server

# The entries' table as the groundwork measured it (the owner's token in a
# column of its own; rawbg.tasks.journal.postgres keeps it in the id): the
# same columns a commit writes, so the same cost per entry.
TABLE = """
CREATE TABLE rawbg_tasks (
    id bigint PRIMARY KEY, token bigint NOT NULL, function text NOT NULL,
    arguments text NOT NULL, label text NOT NULL, state smallint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0, created timestamptz NOT NULL DEFAULT now()
)"""
COLUMNS = ("id", "token", "function", "arguments", "label")
TOKEN = 1
# one entry as rawbg journals FastAPI's tutorial task: its function, [args, kwargs], its route
FUNCTION = "main:write_notification"
ARGUMENTS = '[["someone@example.com"], {"message": "some notification"}]'
LABEL = "POST /send-notification/{email}"

VALUES = "INSERT INTO rawbg_tasks (id, token, function, arguments, label) VALUES "
UNNEST_PSYCOPG = (
    "INSERT INTO rawbg_tasks (id, token, function, arguments, label) "
    "SELECT u.id, %s, u.f, u.a, u.l FROM unnest(%s::int8[], %s::text[], %s::text[], %s::text[])"
    " AS u(id, f, a, l)"
)
UNNEST_ASYNCPG = (
    "INSERT INTO rawbg_tasks (id, token, function, arguments, label) "
    "SELECT u.id, $1, u.f, u.a, u.l FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[])"
    " AS u(id, f, a, l)"
)
# one parameter: the group as a JSON array of objects, which the server unpacks
JSON_ROWS = (
    "INSERT INTO rawbg_tasks (id, token, function, arguments, label) "
    "SELECT r.id, {token}, r.function, r.arguments, r.label "
    "FROM json_populate_recordset(NULL::rawbg_tasks, {rows}::json) AS r"
)
JSON_PSYCOPG = JSON_ROWS.format(token="%s", rows="%s")
JSON_ASYNCPG = JSON_ROWS.format(token="$1", rows="$2")
ONE_ROW_PSYCOPG = VALUES + "(%s, %s, %s, %s, %s)"
ONE_ROW_ASYNCPG = VALUES + "($1, $2, $3, $4, $5)"
DONE_PSYCOPG = "DELETE FROM rawbg_tasks WHERE id = ANY(%s) AND token = %s"
DONE_ASYNCPG = "DELETE FROM rawbg_tasks WHERE id = ANY($1::int8[]) AND token = $2"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_schema(url: str) -> None:
    """The entries' table (`TABLE`)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLE)


class Ids:
    """Entry ids as a node makes them: its token in the high half, a count in the low."""

    def __init__(self) -> None:
        self.n = 0

    def take(self, count: int) -> list[int]:
        first = self.n
        self.n += count
        return [(TOKEN << 32) | i for i in range(first + 1, first + count + 1)]


def rows(ids: Sequence[int]) -> list[tuple[int, int, str, str, str]]:
    return [(i, TOKEN, FUNCTION, ARGUMENTS, LABEL) for i in ids]


def values_sql(n: int, placeholder: Callable[[int], str]) -> str:
    return VALUES + ", ".join(
        "(" + ", ".join(placeholder(5 * r + c + 1) for c in range(5)) + ")" for r in range(n)
    )


def json_rows(ids: Sequence[int]) -> str:
    return json.dumps(
        [{"id": i, "function": FUNCTION, "arguments": ARGUMENTS, "label": LABEL} for i in ids]
    )


def flat(batch: Sequence[tuple[Any, ...]]) -> list[Any]:
    return [value for row in batch for value in row]


def server_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


# -- the drivers' commits -------------------------------------------------------------------
# Each factory connects, and returns (insert(ids), done(ids), backend pid, close).


@dataclass
class Driver:
    insert: Callable[[list[int]], None]
    done: Callable[[list[int]], None]
    backend: int
    close: Callable[[], None]
    # asyncpg "in loop": the coroutines, awaited in one coroutine on `loop`
    loop: asyncio.AbstractEventLoop | None = None
    insert_async: Callable[[list[int]], Awaitable[None]] | None = None
    done_async: Callable[[list[int]], Awaitable[None]] | None = None


def psycopg_driver(url: str, method: str) -> Driver:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    # RawCursor: $n placeholders, sent as they are (a %s query is parsed at every execute
    # once it is longer than psycopg's cache takes: the multi-row VALUES of N >= 32)
    cur = conn.cursor() if method != "values-raw" else psycopg.RawCursor(conn)
    backend = conn.info.backend_pid
    statements: dict[int, str] = {}

    def insert(ids: list[int]) -> None:
        batch = rows(ids)
        if method == "values":
            sql = statements.get(len(ids)) or statements.setdefault(
                len(ids), values_sql(len(ids), lambda _: "%s")
            )
            cur.execute(sql, flat(batch))
        elif method == "values-raw":
            sql = statements.get(len(ids)) or statements.setdefault(
                len(ids), values_sql(len(ids), lambda i: f"${i}")
            )
            cur.execute(sql, flat(batch))
        elif method == "json":
            cur.execute(JSON_PSYCOPG, (TOKEN, json_rows(ids)))
        elif method in ("unnest", "unnest-binary"):
            cur.execute(
                UNNEST_PSYCOPG,
                (TOKEN, ids, [FUNCTION] * len(ids), [ARGUMENTS] * len(ids), [LABEL] * len(ids)),
                binary=method == "unnest-binary",
            )
        elif method == "pipeline":
            with conn.pipeline(), conn.transaction():
                cur.executemany(ONE_ROW_PSYCOPG, batch)
        elif method == "copy":
            with cur.copy(f"COPY rawbg_tasks ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        else:
            raise ValueError(method)

    def done(ids: list[int]) -> None:
        cur.execute(DONE_PSYCOPG, (ids, TOKEN))

    return Driver(insert, done, backend, conn.close)


def asyncpg_driver(url: str, method: str, *, in_loop: bool) -> Driver:
    """asyncpg on a loop of this thread's own; `in_loop`: see `measure_in_loop`."""
    import asyncpg

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(url))
    backend = conn.get_server_pid()

    async def insert_async(ids: list[int]) -> None:
        batch = rows(ids)
        if method == "values":
            await conn.execute(values_sql(len(ids), lambda i: f"${i}"), *flat(batch))
        elif method == "json":
            await conn.execute(JSON_ASYNCPG, TOKEN, json_rows(ids))
        elif method == "unnest":
            n = len(ids)
            await conn.execute(
                UNNEST_ASYNCPG, TOKEN, ids, [FUNCTION] * n, [ARGUMENTS] * n, [LABEL] * n
            )
        elif method == "executemany":
            await conn.executemany(ONE_ROW_ASYNCPG, batch)
        elif method == "copy":
            await conn.copy_records_to_table("rawbg_tasks", records=batch, columns=COLUMNS)
        else:
            raise ValueError(method)

    async def done_async(ids: list[int]) -> None:
        await conn.execute(DONE_ASYNCPG, ids, TOKEN)

    def insert(ids: list[int]) -> None:
        loop.run_until_complete(insert_async(ids))

    def done(ids: list[int]) -> None:
        loop.run_until_complete(done_async(ids))

    def close() -> None:
        loop.run_until_complete(conn.close())
        loop.close()

    if in_loop:
        return Driver(insert, done, backend, close, loop, insert_async, done_async)
    return Driver(insert, done, backend, close)


CELLS: dict[str, Callable[[str], Driver]] = {
    "psycopg values": lambda url: psycopg_driver(url, "values"),
    "psycopg values raw": lambda url: psycopg_driver(url, "values-raw"),
    "psycopg json": lambda url: psycopg_driver(url, "json"),
    "psycopg unnest": lambda url: psycopg_driver(url, "unnest"),
    "psycopg unnest binary": lambda url: psycopg_driver(url, "unnest-binary"),
    "psycopg pipeline": lambda url: psycopg_driver(url, "pipeline"),
    "psycopg copy": lambda url: psycopg_driver(url, "copy"),
    "asyncpg values": lambda url: asyncpg_driver(url, "values", in_loop=False),
    "asyncpg json": lambda url: asyncpg_driver(url, "json", in_loop=False),
    "asyncpg unnest": lambda url: asyncpg_driver(url, "unnest", in_loop=False),
    "asyncpg executemany": lambda url: asyncpg_driver(url, "executemany", in_loop=False),
    "asyncpg copy": lambda url: asyncpg_driver(url, "copy", in_loop=False),
    "asyncpg unnest in loop": lambda url: asyncpg_driver(url, "unnest", in_loop=True),
}
DONE_CELLS = ("psycopg unnest", "asyncpg unnest", "asyncpg unnest in loop")


# -- measuring ------------------------------------------------------------------------------


def measure(
    pg: PostgresServer, cell: str, n: int, seconds: float, *, done_marks: bool
) -> dict[str, Any]:
    """One cell, in a thread of its own (not an event loop's): see the module docstring."""
    result: dict[str, Any] = {}

    def work() -> None:
        truncate(pg.url)
        driver = CELLS[cell](pg.url)
        ids = Ids()
        try:
            if done_marks:  # entries to mark, written beforehand (not timed)
                pool = ids.take(min(max(n * 2000, 20_000), 100_000))
                for start in range(0, len(pool), 1000):
                    driver.insert(pool[start : start + 1000])
                batches = [pool[i : i + n] for i in range(0, len(pool), n)]
                run = driver.done
            else:
                batches = [ids.take(n) for _ in range(min(100_000 // n, 20_000))]
                run = driver.insert
            for batch in batches[:5]:  # warm-up: prepared statements, caches
                run(batch)
            if driver.loop is not None:
                timed = measure_in_loop(driver, batches[5:], n, seconds, done_marks=done_marks)
            else:
                timed = measure_calls(driver, run, batches[5:], n, seconds)
            result.update(timed)
        finally:
            driver.close()

    thread = threading.Thread(target=work, name="journal-writer")
    thread.start()
    thread.join()
    return result


def measure_calls(
    driver: Driver,
    run: Callable[[list[int]], None],
    batches: list[list[int]],
    n: int,
    seconds: float,
) -> dict[str, Any]:
    """Commit `batches` one by one until `seconds` have passed (or they run out)."""
    latencies = []
    server0, cpu0 = server_cpu_ns(driver.backend), time.thread_time_ns()
    deadline = time.perf_counter() + seconds
    for batch in batches:
        began = time.perf_counter()
        run(batch)
        latencies.append(time.perf_counter() - began)
        if began > deadline:
            break
    cpu, server = time.thread_time_ns() - cpu0, server_cpu_ns(driver.backend) - server0
    return summary(latencies, n, cpu, server)


def measure_in_loop(
    driver: Driver, batches: list[list[int]], n: int, seconds: float, *, done_marks: bool
) -> dict[str, Any]:
    """The commits awaited in one coroutine: what asyncpg would cost the server's loop."""
    call = driver.done_async if done_marks else driver.insert_async
    assert call is not None and driver.loop is not None

    async def commits() -> tuple[list[float], int, int]:
        latencies = []
        server0, cpu0 = server_cpu_ns(driver.backend), time.thread_time_ns()
        deadline = time.perf_counter() + seconds
        for batch in batches:
            began = time.perf_counter()
            await call(batch)
            latencies.append(time.perf_counter() - began)
            if began > deadline:
                break
        return latencies, time.thread_time_ns() - cpu0, server_cpu_ns(driver.backend) - server0

    latencies, cpu, server = driver.loop.run_until_complete(commits())
    return summary(latencies, n, cpu, server)


def summary(latencies: list[float], n: int, cpu_ns: int, server_ns: int) -> dict[str, Any]:
    entries = len(latencies) * n
    ordered = sorted(latencies)
    return {
        "commits": len(latencies),
        "latency_us_p50": statistics.median(ordered) * 1e6,
        "latency_us_p90": ordered[int(0.9 * (len(ordered) - 1))] * 1e6,
        "client_cpu_us_per_entry": cpu_ns / 1000 / entries,
        "server_cpu_us_per_entry": server_ns / 1000 / entries,
    }


def truncate(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE rawbg_tasks")
        conn.execute("VACUUM ANALYZE rawbg_tasks")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="per cell and round")
    parser.add_argument("--sizes", default="1,32,256")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated cell names")
    parser.add_argument("--out", type=Path, help="write every round's figures here (JSON)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cells = [c.strip() for c in args.cells.split(",")]
    plan = [(cell, n, False) for cell in cells for n in sizes]
    plan += [(cell, n, True) for cell in DONE_CELLS if cell in cells for n in sizes]
    results: list[dict[str, Any]] = []
    with postgres_server() as pg:
        create_schema(pg.url)
        for r in range(args.rounds):
            order = plan if r % 2 == 0 else plan[::-1]
            load = Path("/proc/loadavg").read_text().split()[:3]
            progress(f"round {r + 1}/{args.rounds}, load {' '.join(load)}")
            for cell, n, done_marks in order:
                row = measure(pg, cell, n, args.seconds, done_marks=done_marks)
                row.update(
                    round=r + 1,
                    cell=cell,
                    n=n,
                    what="done-marks" if done_marks else "commit",
                    load=load,
                )
                results.append(row)
                progress(
                    f"  {row['what']:10} {cell:26} N={n:<4} p50 {row['latency_us_p50']:8.0f} µs"
                    f"  client {row['client_cpu_us_per_entry']:7.2f} µs/entry"
                    f"  server {row['server_cpu_us_per_entry']:7.2f} µs/entry"
                )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print_table(results)


FIGURES = (
    "latency_us_p50",
    "latency_us_p90",
    "client_cpu_us_per_entry",
    "server_cpu_us_per_entry",
)


def print_table(results: list[dict[str, Any]]) -> None:
    """Medians over the rounds, one line per cell, with each round's client CPU per entry."""
    keys = sorted(
        {(r["what"], r["cell"], r["n"]) for r in results}, key=lambda k: (k[0], k[2], k[1])
    )
    print(
        "| what | driver, method | N | latency p50 µs | p90 µs "
        "| client CPU µs/entry (each round) | server CPU µs/entry |"
    )
    print("|---|---|---|---|---|---|---|")
    for what, cell, n in keys:
        rs = [r for r in results if (r["what"], r["cell"], r["n"]) == (what, cell, n)]
        med = {k: statistics.median(r[k] for r in rs) for k in FIGURES}
        rounds = ", ".join(f"{r['client_cpu_us_per_entry']:.1f}" for r in rs)
        print(
            f"| {what} | {cell} | {n} | {med['latency_us_p50']:.0f} "
            f"| {med['latency_us_p90']:.0f} | {med['client_cpu_us_per_entry']:.1f} ({rounds}) "
            f"| {med['server_cpu_us_per_entry']:.1f} |"
        )


if __name__ == "__main__":
    main()
