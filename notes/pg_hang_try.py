"""A commit to a hung PostgreSQL: ``python -m notes.pg_hang_try``.

The server is paused (tests/support/postgres_server.py: every server process
SIGSTOPped) while a thread commits, as the journal's writer thread would.
Shows that psycopg's blocking ``execute`` waits without end, that cutting
the socket from another thread ends the wait at once, and that the server
still commits the statement once it runs again (so a store that gave up on
a commit must delete what it sent, by its ids, after reconnecting). Then
asyncpg's ``timeout=`` for comparison.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import asyncpg
import psycopg

from tests.support.postgres_server import PostgresServer, postgres_server


def rows(pg: PostgresServer) -> list[int]:
    with psycopg.connect(pg.url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM t").fetchone()
    assert row is not None
    return list(row[0])


def psycopg_cut(pg: PostgresServer) -> None:
    conn = psycopg.connect(pg.url, autocommit=True)
    outcome: dict[str, object] = {}

    def commit() -> None:
        began = time.monotonic()
        try:
            conn.execute("INSERT INTO t VALUES (1), (2)")
            outcome["result"] = "committed"
        except psycopg.OperationalError as exc:
            outcome["result"] = str(exc).splitlines()[0]
        outcome["seconds"] = round(time.monotonic() - began, 3)

    with pg.paused():
        writer = threading.Thread(target=commit)
        writer.start()
        writer.join(1.0)
        print(f"psycopg: still waiting after 1 s: {writer.is_alive()}")
        assert writer.is_alive()
        cut = time.monotonic()
        sock = socket.socket(fileno=conn.fileno())  # the deadline passed: cut the connection
        sock.shutdown(socket.SHUT_RDWR)
        sock.detach()
        writer.join(5.0)
        print(f"psycopg: {outcome}, {1000 * (time.monotonic() - cut):.0f} ms after the cut")
        assert not writer.is_alive() and outcome["result"] != "committed"
    time.sleep(0.5)
    print(f"psycopg: rows once the server runs again: {rows(pg)}")


async def asyncpg_timeout(pg: PostgresServer) -> None:
    conn = await asyncpg.connect(pg.url)
    with pg.paused():
        began = time.monotonic()
        try:
            await conn.execute("INSERT INTO t VALUES (3)", timeout=1.0)
            result = "committed"
        except TimeoutError:
            result = "TimeoutError"
        print(f"asyncpg: {result} after {time.monotonic() - began:.2f} s")
    await asyncio.sleep(0.5)
    print(f"asyncpg: rows once the server runs again: {rows(pg)}")
    conn.terminate()


def main() -> None:
    with postgres_server() as pg:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigint PRIMARY KEY)")
        psycopg_cut(pg)
        asyncio.run(asyncpg_timeout(pg))


if __name__ == "__main__":
    main()
