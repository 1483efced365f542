"""The tests' own PostgreSQL (tests/support/postgres_server.py): serves, restarts, crashes, hangs.

The database tests of the task journal lean on these faults, so each is
checked here against the server itself, through ``psql`` (PostgreSQL's own
client, from the same package), with no Python driver in between.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import tests.support.postgres_server as postgres_server_module
from tests.support.postgres_server import PostgresMissing, PostgresServer, binaries

pytestmark = pytest.mark.service


def psql(url: str, sql: str, *, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """``psql URL -c SQL``: one value per line in stdout, errors in stderr."""
    return subprocess.run(
        [
            str(binaries() / "psql"),
            url,
            "--no-psqlrc",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def value(url: str, sql: str) -> str:
    done = psql(url, sql)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_cluster_answers_on_tcp_and_on_its_unix_socket(postgres: PostgresServer) -> None:
    assert value(postgres.url, "SELECT inet_server_port()") == str(postgres.port)
    # over a Unix socket the server has no address of its own
    assert value(postgres.socket_url, "SELECT coalesce(inet_server_addr()::text, 'socket')") == (
        "socket"
    )


def test_two_clusters_are_separate_servers(postgres: PostgresServer) -> None:
    value(postgres.url, "CREATE TABLE only_here (n int)")
    with postgres_server_module.postgres_server() as other:
        assert other.port != postgres.port
        assert value(other.url, "SELECT to_regclass('only_here') IS NULL") == "t"


def test_a_commit_before_a_crash_is_there_after_the_restart(postgres: PostgresServer) -> None:
    value(postgres.url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
    postgres.stop("immediate")
    assert not postgres.running()
    postgres.start()
    assert value(postgres.url, "SELECT n FROM kept") == "7"


def test_a_stopped_server_refuses_connections_until_it_starts_again(
    postgres: PostgresServer,
) -> None:
    postgres.stop()
    refused = psql(postgres.url, "SELECT 1")
    assert refused.returncode != 0
    assert "refused" in refused.stderr
    postgres.start()
    assert value(postgres.url, "SELECT 1") == "1"


def test_a_paused_server_accepts_connections_but_answers_nothing_until_resumed(
    postgres: PostgresServer,
) -> None:
    with postgres.paused():
        began = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            psql(postgres.url, "SELECT 1", timeout=0.5)
        assert time.monotonic() - began >= 0.5
    assert value(postgres.url, "SELECT 1") == "1"


def test_a_wrong_rawbg_pg_bindir_is_an_error_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAWBG_PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresMissing, match="RAWBG_PG_BINDIR"):
        binaries()


def test_without_postgresql_the_message_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAWBG_PG_BINDIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres_server_module, "DEBIAN_BINARIES", tmp_path / "none")
    with pytest.raises(PostgresMissing, match=r"apt-get install -y postgresql"):
        binaries()
