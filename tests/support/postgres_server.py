"""A throwaway PostgreSQL server for tests: a cluster of its own in a temporary directory.

``with postgres_server() as pg:`` gives a running server that no other test
or process shares, reachable at ``pg.url`` (TCP on 127.0.0.1, a free port)
and through a Unix socket in its directory (``pg.socket_url``); on exit the
server is stopped and its directory removed. The tests that need it get it
from the ``postgres`` fixture (tests/conftest.py) and are marked ``service``.

How it is made fast (about 0.5 s a cluster; the first of a test run also
pays for ``initdb``, about 2 s):

* ``initdb`` runs once per test process, into a *template* directory
  (removed when the process exits); each cluster is a copy of it
  (``cp -a``: 0.13 s for its 39 MiB on tmpfs, against 2 s for ``initdb``);
* the directories live on tmpfs (``/dev/shm``) where there is one: on this
  machine's disk the same copy took 1.9 s and ``initdb`` 5.8 s;
* ``fsync = off``: a commit still reaches the kernel before it returns
  (``synchronous_commit`` stays on), so it survives the server being killed
  (`PostgresServer.stop` with ``mode="immediate"``, a crash), not the
  machine. The tests kill servers, never the machine.

PostgreSQL refuses to run as root. As root (CI), every command runs as the
``postgres`` user that Debian's package creates, and the directory is made
theirs; as anyone else, as that user.

The binaries are Debian's (``apt-get install postgresql``; .ci/run installs
it), found in ``$RAWBG_PG_BINDIR``, on ``PATH``, or in
``/usr/lib/postgresql/VERSION/bin`` (the newest); without them,
`PostgresMissing` says how to install them, and the fixture skips the test
with that message, or fails it under ``CI=true`` (tests/support/services.py).

Faults, for the tests of what rawbg does when the database misbehaves:

* `PostgresServer.stop` / `start` / `restart`: a graceful stop (``fast``:
  sessions are ended, connections refused until `start`) or a crash
  (``immediate``: every server process quits at once, and the next start
  recovers from the write-ahead log); the port stays the same;
* `PostgresServer.pause` / `resume` (or ``with pg.paused():``): every server
  process is SIGSTOPped, so that connections are accepted by the kernel but
  nothing answers, as with a server that hangs or a network that drops.

The methods block (they wait for ``pg_ctl``); from a coroutine, call them
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

#: where Debian's packages put each major version's server binaries (not on PATH)
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
#: the superuser that the clusters are made with; it connects without a password
USER = "rawbg"
#: the database every cluster has (initdb makes it)
DATABASE = "postgres"
#: bound on one pg_ctl start or stop; the slowest seen here was under 1 s
PG_CTL_SECONDS = 30
#: the settings that every cluster gets, beyond the connection ones
SETTINGS = {
    "fsync": "off",  # see the module docstring: crashes of the server, not of the machine
    "full_page_writes": "off",  # only matters for a torn page, which needs a crash of the machine
    "shared_buffers": "32MB",
    "max_connections": "100",
    "log_line_prefix": "'%m [%p] '",
}


class PostgresMissing(RuntimeError):
    """Raised when PostgreSQL's server binaries (``initdb``, ``pg_ctl``) cannot be found."""


class PostgresFailed(RuntimeError):
    """Raised when ``initdb`` or ``pg_ctl`` fails; the message ends with its output and log."""


def binaries() -> Path:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``; `PostgresMissing` if none.

    ``$RAWBG_PG_BINDIR`` when it is set (and then only it: a wrong one is an
    error, not a silent fall-back), else ``pg_ctl``'s on ``PATH``, else the
    newest of Debian's ``/usr/lib/postgresql/VERSION/bin``.
    """
    if configured := os.environ.get("RAWBG_PG_BINDIR"):
        if _has_binaries(Path(configured)):
            return Path(configured)
        raise PostgresMissing(
            f"RAWBG_PG_BINDIR={configured} does not hold initdb, pg_ctl and postgres"
        )
    candidates = []
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).resolve().parent)
    if DEBIAN_BINARIES.is_dir():
        versions = [d for d in DEBIAN_BINARIES.iterdir() if d.name.isdigit()]
        candidates.extend(d / "bin" for d in sorted(versions, key=lambda d: -int(d.name)))
    for directory in candidates:
        if _has_binaries(directory):
            return directory
    raise PostgresMissing(
        "PostgreSQL's server is not installed, and these tests need a real one: "
        "apt-get update && apt-get install -y postgresql (.ci/run does this), "
        "or set RAWBG_PG_BINDIR to the directory that holds initdb and pg_ctl"
    )


def _has_binaries(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as when we are root (PostgreSQL refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing(
            "running as root, and there is no 'postgres' user to run PostgreSQL as: "
            "install Debian's postgresql package, which creates it"
        ) from None


def _base_directory() -> str:
    """Where clusters are made: ``$RAWBG_PG_TMPDIR``, else tmpfs, else the usual temp dir."""
    if configured := os.environ.get("RAWBG_PG_TMPDIR"):
        return configured
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Template:
    """One ``initdb`` per test process; each cluster starts as a copy of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directory: Path | None = None

    def data(self, bindir: Path, user: pwd.struct_passwd | None) -> Path:
        with self._lock:
            if self._directory is None:
                home = _own_directory("rawbg-pg-template-", user)
                data = home / "data"
                _run(
                    [
                        str(bindir / "initdb"),
                        "--pgdata",
                        str(data),
                        "--username",
                        USER,
                        "--auth",
                        "trust",
                        "--encoding",
                        "UTF8",
                        "--locale",
                        "C",
                        "--no-sync",  # a template on tmpfs: nothing to sync for
                    ],
                    user=user,
                    cwd=home,
                    what="initdb",
                )
                self._directory = data
                atexit.register(self.remove)
            return self._directory

    def remove(self) -> None:
        with self._lock:
            if self._directory is not None:
                shutil.rmtree(self._directory.parent, ignore_errors=True)
                self._directory = None


_template = _Template()


def _own_directory(prefix: str, user: pwd.struct_passwd | None, base: str | None = None) -> Path:
    """A new temporary directory (in `base`, else `_base_directory`) that the server's user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base or _base_directory()))
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _run(
    command: list[str], *, user: pwd.struct_passwd | None, cwd: Path, what: str
) -> subprocess.CompletedProcess[str]:
    """Run `command` as `user` (None: ourselves); `PostgresFailed` with its output if it fails."""
    env = dict(os.environ, LC_ALL="C", PGTZ="UTC")
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PG_CTL_SECONDS + 5,
        check=False,
        # None: as ourselves; else as `user`, without root's supplementary groups
        user=None if user is None else user.pw_uid,
        group=None if user is None else user.pw_gid,
        extra_groups=None if user is None else [],
    )
    if done.returncode != 0:
        raise PostgresFailed(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


class PostgresServer:
    """One cluster in its own directory: its address, and what a test does to it.

    Made by `postgres_server`; ``directory`` holds ``data/`` (the cluster),
    ``server.log`` (its log, which a failure's message quotes) and the Unix
    socket ``.s.PGSQL.PORT``.
    """

    def __init__(
        self, directory: Path, *, bindir: Path, user: pwd.struct_passwd | None, host: str
    ) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.host = host
        self.also_listen: list[str] = []  # addresses beyond `host` (`listen_also`)
        self.settings = dict(SETTINGS)
        self.port = 0
        self._bindir = bindir
        self._user = user
        self._paused: list[int] = []

    # -- addresses --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``postgresql://rawbg@HOST:PORT/postgres``: TCP, no password."""
        return f"postgresql://{USER}@{self.host}:{self.port}/{DATABASE}"

    @property
    def socket_url(self) -> str:
        """The same database through the Unix socket in `directory`."""
        return f"postgresql://{USER}@/{DATABASE}?host={self.directory}&port={self.port}"

    # -- life --------------------------------------------------------------------------

    def configure(self, port: int) -> None:
        """Write the connection settings (and `SETTINGS`) for a server on `port`."""
        self.port = port
        settings = {
            **self.settings,
            "port": str(port),
            "listen_addresses": f"'{','.join([self.host, *self.also_listen])}'",
            "unix_socket_directories": f"'{self.directory}'",
        }
        # postgresql.auto.conf is read after postgresql.conf, and holds only ours
        (self.data / "postgresql.auto.conf").write_text(
            "".join(f"{name} = {value}\n" for name, value in settings.items())
        )

    def listen_also(self, addresses: list[str], network: str) -> None:
        """Listen on `addresses` too, trust clients from `network` (CIDR), and restart.

        For clients in other network namespaces (tests/support/netns.py): they
        reach the server at the host's side of their veth pair.
        """
        self.also_listen = list(addresses)
        self.configure(self.port)
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {network} trust\n")
        self.restart()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start", "--log", str(self.log))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (graceful: sessions ended) or ``immediate`` (a crash)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, got {mode!r}")
        self.resume()  # a stopped process would never act on pg_ctl's signal
        self._pg_ctl("stop", "--mode", mode)

    def restart(self, mode: str = "fast") -> None:
        """`stop` then `start`, on the same port."""
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        """Whether the server's postmaster runs (``pg_ctl status``)."""
        try:
            self._pg_ctl("status")
        except PostgresFailed:
            return False
        return True

    def _pg_ctl(self, action: str, *options: str) -> None:
        command = [
            str(self._bindir / "pg_ctl"),
            action,
            "--pgdata",
            str(self.data),
            *options,
        ]
        if action != "status":
            command += ["--wait", "--timeout", str(PG_CTL_SECONDS)]
        try:
            _run(command, user=self._user, cwd=self.directory, what=f"pg_ctl {action}")
        except PostgresFailed as exc:
            if action == "status":
                raise
            raise PostgresFailed(f"{exc}\n--- {self.log}:\n{self._log_tail()}") from None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- pause -------------------------------------------------------------------------

    def pid(self) -> int:
        """The postmaster's pid, from ``postmaster.pid``; `PostgresFailed` if it is not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            raise PostgresFailed(f"the server in {self.data} is not running") from None

    def pause(self) -> None:
        """SIGSTOP the postmaster, then every process it started: nothing answers until `resume`.

        The postmaster first, so that it starts no new process meanwhile.
        Connections still complete (the kernel accepts them), and their
        queries wait: a hung server, as a client sees one.
        """
        if self._paused:
            return
        postmaster = self.pid()
        os.kill(postmaster, signal.SIGSTOP)
        self._paused = [postmaster]
        for child in _children(postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
                self._paused.append(child)

    def resume(self) -> None:
        """SIGCONT what `pause` stopped (the postmaster last)."""
        for pid in reversed(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused = []

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """``with pg.paused():`` the server hangs inside the block."""
        self.pause()
        try:
            yield
        finally:
            self.resume()


def _children(parent: int) -> list[int]:
    """The pids whose parent is `parent` (Linux's ``/proc``)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # "pid (command) state ppid ...": the command may hold spaces and ")"
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


_BIND_FAILED = re.compile(r"could not (bind|create any TCP/IP sockets)|Address already in use")


@contextlib.contextmanager
def postgres_server(
    *, host: str = "127.0.0.1", settings: dict[str, str] | None = None, base: str | None = None
) -> Iterator[PostgresServer]:
    """A new cluster, started, listening on `host` at a free port; stopped and removed on exit.

    `host` is the address it listens on (one address, or ``*``; the Unix
    socket is always there). `settings` change `SETTINGS` (the benchmarks
    turn ``fsync`` back on); `base` is the directory the cluster is made in
    (default: tmpfs, `_base_directory`). Raises `PostgresMissing` without the
    binaries.
    """
    bindir = binaries()
    user = _server_user()
    template = _template.data(bindir, user)
    directory = _own_directory("rawbg-pg-", user, base)
    try:
        server = PostgresServer(directory, bindir=bindir, user=user, host=host)
        server.settings.update(settings or {})
        _run(
            ["cp", "-a", str(template), str(server.data)],
            user=user,
            cwd=directory,
            what="copying the template cluster",
        )
        for attempt in range(3):  # the free port may be taken before the server binds it
            server.configure(_free_port())
            try:
                server.start()
                break
            except PostgresFailed as exc:
                if attempt == 2 or not _BIND_FAILED.search(str(exc)):
                    raise
        try:
            yield server
        finally:
            server.resume()
            if server.running():
                server.stop("immediate")  # its data is thrown away: no need to write it out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    """``python -m tests.support.postgres_server``: time making, restarting, pausing, removing."""
    began = time.perf_counter()
    _template.data(binaries(), _server_user())
    print(f"template (initdb): {time.perf_counter() - began:.2f} s")
    for _ in range(5):
        began = time.perf_counter()
        with postgres_server() as pg:
            up = time.perf_counter()
            pg.restart()
            restarted = time.perf_counter()
            with pg.paused():
                paused = time.perf_counter()
            resumed = time.perf_counter()
        gone = time.perf_counter()
        print(
            f"up {up - began:.3f} s, restart {restarted - up:.3f} s, "
            f"pause {paused - restarted:.4f} s, resume {resumed - paused:.4f} s, "
            f"stop and remove {gone - resumed:.3f} s"
        )


if __name__ == "__main__":
    main()
