"""Try notes/pg_schema.sql on a throwaway cluster: ``python -m notes.pg_schema_try``.

Each scenario prints what it saw and checks it (an AssertionError says what
went wrong). The nodes are sessions of this script: a node "paused past its
lease" is one that does not renew for longer than the lease, which is all the
database can see of a SIGSTOPped process. Needs psycopg 3 (``pip install
'psycopg[binary]'``) and PostgreSQL's server binaries (tests/support/postgres_server.py).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from tests.support.postgres_server import PostgresServer, postgres_server

SCHEMA = Path(__file__).with_name("pg_schema.sql")
LEASE = timedelta(seconds=1)  # short, so that the scenarios wait little


def signatures() -> dict[str, list[str]]:
    """Each prepared statement's parameter types, by name."""
    found = {}
    for statement in statements():
        match = re.match(r"PREPARE (\w+)\(([^)]*)\)", statement)
        if match:
            found[match.group(1)] = [t.strip() for t in match.group(2).split(",")]
    return found


def execute(name: str) -> str:
    """``EXECUTE name(%s::type, ...)``, bound by psycopg's ClientCursor (EXECUTE takes no
    protocol-level parameters)."""
    return f"EXECUTE {name}({', '.join(f'%s::{t}' for t in signatures()[name])})"


def statements() -> list[str]:
    """The file's statements, without comments and psql's backslash lines."""
    text = "\n".join(
        re.sub(r"--.*$", "", line)
        for line in SCHEMA.read_text().splitlines()
        if not line.startswith("\\")
    )
    return [s.strip() for s in text.split(";") if s.strip()]


class Node:
    """One session, as a node's writer thread would hold it."""

    def __init__(self, url: str, name: str, *, lease: timedelta = LEASE) -> None:
        self.conn = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor)
        for statement in statements():
            if statement.startswith(("SET", "PREPARE")):  # the session's settings, statements
                self.conn.execute(statement)
        self.name = name
        self.lease = lease
        self.token, _ = self.one(execute("rawbg_register"), name, "host", 1, lease)
        self.next_id = 0

    def one(self, sql: str, *params: Any) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, *params: Any) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    def add(self, count: int) -> list[int]:
        ids = [(self.token << 32) | (self.next_id + i + 1) for i in range(count)]
        self.next_id += count
        self.commit(new=ids)
        return ids

    def commit(
        self,
        *,
        new: Sequence[int] = (),
        done: Sequence[int] = (),
        failed: Sequence[int] = (),
    ) -> list[int]:
        """One group commit; the ids of the done-marks that counted."""
        rows = self.all(
            execute("rawbg_commit"),
            self.token,
            list(new),
            ["tests.journal_app:record_run"] * len(new),
            [f"[[{i}], {{}}]" for i in new],
            ["POST /work/{n}"] * len(new),
            list(done),
            list(failed),
            [],
            [],
        )
        return [row[0] for row in rows]

    def renew(self) -> bool:
        return self.one(execute("rawbg_renew"), self.token) is not None

    def claim(self, batch: int = 1000) -> list[tuple[Any, ...]]:
        return self.all(execute("rawbg_claim"), self.token, batch)

    def owned(self) -> int:
        return int(self.one("SELECT count(*) FROM rawbg_tasks WHERE token = %s", self.token)[0])


def wait_out_the_startup_lease(pg: PostgresServer) -> None:
    """Claims wait a lease after the server's start (the restart guard): wait it out."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time() + %s - now()", (LEASE,)).fetchone()
    assert row is not None
    time.sleep(max(0.0, row[0].total_seconds()) + 0.05)


def two_claimers(pg: PostgresServer) -> None:
    dead = Node(pg.url, "dead")
    ids = set()
    for _ in range(20):
        ids.update(dead.add(500))
    time.sleep(LEASE.total_seconds() + 0.1)  # dead's lease runs out
    # the claimers' leases outlast the scenario: a claimer whose lease ran out would
    # rightly have its claims taken by the other
    minute = timedelta(seconds=60)
    a, b = Node(pg.url, "a", lease=minute), Node(pg.url, "b", lease=minute)
    got: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claim_all(node: Node) -> None:
        start.wait()
        for _ in range(200):  # both loop until nothing is left
            got[node.name].extend(row[0] for row in node.claim(batch=250))
            if node.owned() + len(got["a" if node.name == "b" else "b"]) >= len(ids):
                break

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = set(got["a"]) & set(got["b"])
    print(
        f"two claimers: {len(ids)} entries of a dead node; a claimed {len(got['a'])}, "
        f"b {len(got['b'])}, both {len(both)}"
    )
    assert not both
    assert set(got["a"]) | set(got["b"]) == ids
    assert a.owned() == len(got["a"]) and b.owned() == len(got["b"])
    assert not dead.renew(), "a fenced node's renewal must be refused"

    # a claimer holding its claim open: the other skips, and does not wait
    late = Node(pg.url, "late")
    late_ids = set(late.add(100))
    time.sleep(LEASE.total_seconds() + 0.1)
    a.renew()
    b.renew()
    with a.conn.transaction():
        first = a.claim(batch=1000)
        began = time.monotonic()
        second = b.claim(batch=1000)
        waited = time.monotonic() - began
    print(
        f"claim held open by a: a got {len(first)}, b got {len(second)} in {waited * 1000:.1f} ms"
    )
    assert {row[0] for row in first} == late_ids and second == []
    assert waited < 0.5


def paused_node(pg: PostgresServer) -> None:
    a, b = Node(pg.url, "a"), Node(pg.url, "b")
    running = a.add(3)  # a starts them, then stops past its lease
    b_renewals = 0
    deadline = time.monotonic() + LEASE.total_seconds() + 0.2
    while time.monotonic() < deadline:  # b stays alive meanwhile, a does not renew
        b_renewals += b.renew()
        time.sleep(LEASE.total_seconds() / 5)
    claimed = b.claim()
    assert sorted(row[0] for row in claimed) == running
    assert {row[-1] for row in claimed} == {"a"}  # the name for "took over N tasks from a"
    # a is back: its done-marks of the tasks it ran do not count...
    counted = a.commit(done=running)
    print(
        f"paused node: b took over {len(claimed)} entries from a; "
        f"a's stale done-marks counted: {counted}"
    )
    assert counted == []
    assert b.owned() == 3
    # ...its renewal is refused, so it runs none of what it held...
    assert not a.renew()
    old_token = a.token
    a.token, _ = a.one(execute("rawbg_register"), "a", "host", 1, LEASE)
    assert a.token > old_token
    # ...its new entries are its own again, and b's done-marks count
    a.add(1)
    assert a.owned() == 1
    assert sorted(b.commit(done=running)) == running
    print(f"paused node: a registered again (token {old_token} -> {a.token}); b marked done")

    # the race: a renewal and a claim at once. The claim holds a's row: the renewal waits,
    # then is refused.
    c = Node(pg.url, "c")
    time.sleep(LEASE.total_seconds() + 0.1)
    c.renew()
    result: list[bool] = []
    with c.conn.transaction():
        taken = c.claim()
        renewer = threading.Thread(target=lambda: result.append(a.renew()))
        renewer.start()
        time.sleep(0.2)
        assert renewer.is_alive(), "the renewal must wait for the claim's row lock"
    renewer.join()
    print(f"renewal racing a claim: claim took {len(taken)}, renewal then refused: {not result[0]}")
    assert result == [False]


def renewal_first(pg: PostgresServer) -> None:
    a, b = Node(pg.url, "a"), Node(pg.url, "b")
    a.add(5)
    time.sleep(LEASE.total_seconds() + 0.1)
    b.renew()
    with a.conn.transaction():  # a's renewal, late but before anyone fenced it, holds the row
        renewed = a.renew()
        taken = b.claim()
    after = b.claim()
    print(
        f"late renewal before any claim: renewed {renewed}; claims meanwhile {len(taken)}, "
        f"after {len(after)}"
    )
    assert renewed and taken == [] and after == [] and a.owned() == 5


def release_at_sigterm(pg: PostgresServer) -> None:
    a, b = Node(pg.url, "a", lease=timedelta(seconds=60)), Node(pg.url, "b")
    a.add(4)
    b.conn.execute("LISTEN rawbg_released")
    a.one(execute("rawbg_release"), a.token)
    notice = next(b.conn.notifies(timeout=2.0, stop_after=1))
    claimed = b.claim()
    print(
        f"release: notified with token {notice.payload}; b claimed {len(claimed)} at once "
        "(a's lease had 60 s left)"
    )
    assert notice.payload == str(a.token) and len(claimed) == 4


def database_restart(pg: PostgresServer) -> None:
    a, b = Node(pg.url, "a"), Node(pg.url, "b")
    a.add(2)
    b.conn.close()
    a.conn.close()
    pg.stop()
    time.sleep(LEASE.total_seconds() + 0.2)  # every lease runs out while it is down
    pg.start()
    b.conn = psycopg.connect(pg.url, autocommit=True, cursor_factory=psycopg.ClientCursor)
    for statement in statements():
        if statement.startswith(("SET", "PREPARE")):
            b.conn.execute(statement)
    b.renew()
    early = b.claim()
    wait_out_the_startup_lease(pg)
    later = b.claim()
    print(
        f"database restart: b's claim in the first lease after it took {len(early)}, "
        f"a lease later {len(later)}"
    )
    assert early == [] and len(later) == 2


def housekeeping(pg: PostgresServer) -> None:
    a = Node(pg.url, "a")
    ids = a.add(3)
    a.commit(failed=ids[:1])
    a.conn.execute(
        "UPDATE rawbg_tasks SET kept_since = now() - interval '8 days' WHERE id = %s", (ids[0],)
    )
    assert a.commit(done=ids[1:]) == ids[1:]
    empty, holder = Node(pg.url, "empty"), Node(pg.url, "holder")
    holder.add(1)
    for node in (empty, holder):  # both stop gracefully, an hour and more ago
        node.one(execute("rawbg_release"), node.token)
    a.conn.execute(
        "UPDATE rawbg_nodes SET fenced_at = now() - interval '2 hours' "
        "WHERE lease_until = '-infinity'"
    )
    a.conn.execute(execute("rawbg_housekeeping"), (timedelta(days=7), timedelta(hours=1)))
    tasks = a.all("SELECT id FROM rawbg_tasks")
    nodes = sorted(row[0] for row in a.all("SELECT name FROM rawbg_nodes"))
    print(f"housekeeping: rawbg_tasks keeps {len(tasks)} row(s); rawbg_nodes keeps {nodes}")
    # the failed entry past its retention and the done ones are gone; holder's pending one
    # stays, and so does holder's row until its entry is claimed
    assert len(tasks) == 1 and nodes == ["a", "holder"]


def many_pending(pg: PostgresServer) -> None:
    live = Node(pg.url, "live", lease=timedelta(seconds=60))
    dead = Node(pg.url, "dead")
    for node in (live, dead):
        for _ in range(100):
            node.add(1000)
    time.sleep(LEASE.total_seconds() + 0.1)
    claimer = Node(pg.url, "claimer", lease=timedelta(seconds=60))
    began = time.perf_counter()
    claimer.renew()
    renew = time.perf_counter() - began
    total, rounds = 0, 0
    began = time.perf_counter()
    while batch := claimer.claim(batch=1000):
        total += len(batch)
        rounds += 1
    took = time.perf_counter() - began
    began = time.perf_counter()
    nothing = claimer.claim(batch=1000)
    idle = time.perf_counter() - began
    print(
        f"100k + 100k pending: renewal {renew * 1000:.2f} ms; taking over 100 000 entries: "
        f"{took:.2f} s in {rounds} claims; a claim with nothing dead {idle * 1000:.2f} ms"
    )
    assert total == 100_000 and nothing == []


def main() -> None:
    with postgres_server() as pg:
        setup = psycopg.connect(pg.url, autocommit=True)
        for statement in statements():
            setup.execute(statement)
        setup.close()
        wait_out_the_startup_lease(pg)
        for scenario in (
            two_claimers,
            paused_node,
            renewal_first,
            release_at_sigterm,
            housekeeping,
            many_pending,
            database_restart,
        ):
            with psycopg.connect(pg.url, autocommit=True) as conn:  # each on empty tables
                conn.execute("TRUNCATE rawbg_tasks, rawbg_nodes")
            scenario(pg)


if __name__ == "__main__":
    main()
