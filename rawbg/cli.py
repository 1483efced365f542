"""``python -m rawbg [MODULE:ATTR] [options]``: serve an app from the command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence

from rawbg.app.application import App
from rawbg.server import config as defaults
from rawbg.server.config import ServerConfig
from rawbg.server.loops import LOOPS, loop_factory
from rawbg.server.tls_context import tls_context
from rawbg.server.worker import WorkerLink

DEMO_APP = "rawbg.demo:app"


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """A flag that sets the number `ServerConfig.<field>`: ``max_head_size`` is ``--max-head-size``.

    Its default is the field's, so ``--help`` shows the value config.py chose
    (and gives the reason for).
    """

    field: str
    type: type[int] | type[float]
    metavar: str
    help: str

    def add_to(self, group: argparse._ActionsContainer) -> None:
        group.add_argument(
            flag_name(self.field),
            type=self.type,
            default=CONFIG_DEFAULTS[self.field],
            metavar=self.metavar,
            help=f"{self.help} (default: %(default)s)",
        )


CONFIG_DEFAULTS = {field.name: field.default for field in dataclasses.fields(ServerConfig)}

#: the "limits and timeouts" group of ``--help``
LIMIT_FLAGS = (
    ConfigFlag("max_head_size", int, "BYTES", "largest request line + headers; larger gets 431"),
    ConfigFlag(
        "max_body_size",
        int,
        "BYTES",
        "largest request body unless its route sets max_body_size=; larger gets 413",
    ),
    ConfigFlag(
        "timeout_keep_alive",
        float,
        "SECONDS",
        "close a connection idle this long; a request head must arrive "
        "within this time of its first byte, else 408",
    ),
    ConfigFlag(
        "min_body_rate",
        float,
        "BYTES_PER_SECOND",
        "a request body must arrive at least this fast on average, after a "
        "grace of --timeout-keep-alive, else 408; 0 turns the rule off",
    ),
    ConfigFlag("limit_concurrency", int, "N", "open connections served at once; more get 503"),
    ConfigFlag(
        "max_pending_tasks",
        int,
        "N",
        "pending background tasks process-wide; at this many the server "
        "stops reading new requests until some finish",
    ),
    ConfigFlag(
        "timeout_graceful_shutdown",
        float,
        "SECONDS",
        "on SIGINT/SIGTERM, wait this long for pending background work before cancelling it",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rawbg",
        description="Serve a rawbg app over HTTP/1.1. Background tasks run after each "
        "response has been flushed, owned by the connection that queued them.",
    )
    parser.add_argument(
        "app",
        nargs="?",
        default=DEMO_APP,
        help=f"the app to serve, as MODULE:ATTR (default: {DEMO_APP}, the "
        "FastAPI background-tasks tutorial)",
    )
    parser.add_argument(
        "--app-dir",
        default=".",
        help="directory put first on sys.path to import MODULE (default: .)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    parser.add_argument(
        "--loop",
        default=defaults.DEFAULT_LOOP,
        choices=LOOPS,
        help="event loop: uvloop (pip install 'rawbg[speed]') or asyncio's own; "
        "auto takes uvloop when installed (default: %(default)s)",
    )
    parser.add_argument(
        "--uds", metavar="PATH", help="listen on this Unix socket instead of host:port"
    )
    parser.add_argument(
        "--fd",
        type=int,
        metavar="N",
        help="serve on this already listening socket (systemd socket activation)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default: info)",
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="do not log a line per request",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="log every lifecycle event of every connection and request",
    )
    parser.add_argument(
        "--trace-file",
        metavar="FILE",
        help="write the same events to FILE as Chrome trace-event JSON (open it in Perfetto);"
        " with --workers, each worker writes its own, FILE.<pid> (trace.json: trace.<pid>.json)",
    )
    ConfigFlag(
        "loop_block_warning",
        float,
        "SECONDS",
        "warn when the event loop is blocked this long, naming the handler, "
        "dependency or background task that blocked it; 0 turns it off",
    ).add_to(parser)
    ConfigFlag(
        "gc_interval",
        float,
        "SECONDS",
        "while background tasks are pending, run the cyclic GC's young and middle collections "
        "this often, so that it never pauses for all of them at once; 0 leaves the GC to CPython",
    ).add_to(parser)
    parser.add_argument(
        "--no-serve-on-arrival",
        dest="serve_on_arrival",
        action="store_false",
        help="serve every request from its connection task's wake-up, never from the "
        "callback that received its bytes (for study and side-by-side benchmarks; "
        "docs/ARCHITECTURE.md, 'Serving a request as it arrives')",
    )
    parser.add_argument(
        "--routes",
        action="store_true",
        help="print the routes and their dependency trees, then exit",
    )
    parser.add_argument(
        "--openapi",
        action="store_true",
        help="write the app's OpenAPI document (JSON) to stdout, then exit; exit status 1 "
        "if a route's types cannot be described",
    )
    processes = parser.add_argument_group("processes")
    processes.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N worker processes on the address under a supervisor, which restarts "
        "a worker that dies and does a rolling restart on SIGHUP (default: one "
        "process, no supervisor)",
    )
    processes.add_argument(
        "--reload",
        action="store_true",
        help="development: restart the worker when a .py file under --app-dir changes",
    )
    proxy = parser.add_argument_group("behind a proxy")
    proxy.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take the client address and scheme from X-Forwarded-For and "
        "X-Forwarded-Proto, from --forwarded-allow-ips peers only (default: on)",
    )
    proxy.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="comma-separated addresses or networks whose proxy headers are trusted, '*' "
        f"for any (default: ${defaults.FORWARDED_ALLOW_IPS_ENV} or "
        f"{defaults.DEFAULT_FORWARDED_ALLOW_IPS})",
    )
    proxy.add_argument(
        "--root-path",
        default="",
        metavar="PATH",
        help="the path prefix the proxy strips before forwarding (request.root_path)",
    )
    tls = parser.add_argument_group("HTTPS (uvicorn's flags)")
    tls.add_argument(
        "--ssl-certfile",
        metavar="FILE",
        help="serve HTTPS with this certificate (PEM, its chain after it)",
    )
    tls.add_argument(
        "--ssl-keyfile",
        metavar="FILE",
        help="the certificate's private key (PEM) (default: in --ssl-certfile)",
    )
    tls.add_argument(
        "--ssl-keyfile-password", metavar="PASSWORD", help="the password of an encrypted key"
    )
    tls.add_argument(
        "--ssl-ca-certs",
        metavar="FILE",
        help="CA certificates (PEM) that client certificates are checked against",
    )
    tls.add_argument(
        "--ssl-cert-reqs",
        type=int,
        default=defaults.DEFAULT_SSL_CERT_REQS,
        choices=defaults.SSL_CERT_REQS,
        metavar="N",
        help="client certificates: 0 not asked for, 1 optional, 2 required (default: %(default)s)",
    )
    tls.add_argument(
        "--ssl-ciphers",
        metavar="LIST",
        help="OpenSSL cipher list for TLS 1.2 (default: the system's OpenSSL default)",
    )
    limits = parser.add_argument_group("limits and timeouts")
    for flag in LIMIT_FLAGS:
        flag.add_to(limits)
    journal = parser.add_argument_group("task journal (durable background tasks)")
    journal.add_argument(
        "--task-journal",
        metavar="PATH|URL",
        help="journal durable background tasks before each response, and run the "
        "unfinished ones again at start-up: in this SQLite file, or in the PostgreSQL "
        "database of a postgresql://user@host:port/db URL, which several machines share "
        "(the postgres extra) (default: no journal)",
    )
    journal.add_argument(
        "--task-journal-sync",
        choices=defaults.TASK_JOURNAL_SYNC_MODES,
        default=defaults.DEFAULT_TASK_JOURNAL_SYNC,
        help="normal: entries survive a process crash; full: also a power loss, "
        "with an fsync per group commit (default: %(default)s)",
    )
    journal.add_argument(
        "--task-journal-lease",
        type=float,
        metavar="SECONDS",
        help="another process takes over this one's journaled tasks once it has not "
        f"renewed its lease for this long (default: {defaults.DEFAULT_TASK_JOURNAL_LEASE:g} "
        f"for a SQLite file, {defaults.DEFAULT_SHARED_JOURNAL_LEASE:g} for PostgreSQL)",
    )
    ConfigFlag(
        "task_journal_busy_timeout",
        float,
        "SECONDS",
        "how long a commit may take (SQLite: waiting for a locked file; PostgreSQL: the "
        "round trip) before the request gets 503",
    ).add_to(journal)
    journal.add_argument(
        "--task-journal-commit",
        choices=("group", "request"),
        default="group",
        help="group: one commit for all requests of the same moment; request: one "
        "commit each, to measure what grouping saves (default: %(default)s)",
    )
    return parser


def load_app(spec: str, app_dir: str) -> App:
    """Import ``MODULE:ATTR`` with `app_dir` first on sys.path; explain what went wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"error: app must be given as MODULE:ATTR, e.g. main:app (got {spec!r})")
    sys.path.insert(0, os.path.abspath(app_dir))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SystemExit(
                f"error: cannot import module {module_name!r} from "
                f"{os.path.abspath(app_dir)} ({exc})"
            ) from None
        raise
    except Exception as exc:
        where = registration_site(exc)
        if where is None:  # the app's own code failed: its traceback is what helps
            raise
        raise SystemExit(f"error: {where}: {exc}") from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"error: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise SystemExit(f"error: {spec} is a {type(app).__name__}, not a rawbg.App")
    return app


def registration_site(exc: BaseException) -> str | None:
    """``file:line`` of the app's line that rawbg refused (a route, a router), else None.

    The error must have been raised inside rawbg (so it is about how the app
    uses it); the line named is the last one of the app's own code on the way,
    or, for a route an ``APIRouter`` declared, the route's own definition
    (`RouteDefinitionError.site`), not the ``include_router`` line.
    """
    frames = list(traceback.walk_tb(exc.__traceback__))
    package = os.path.dirname(os.path.abspath(__file__))

    def in_rawbg(filename: str) -> bool:
        return os.path.abspath(filename).startswith(package + os.sep)

    if not frames or not in_rawbg(frames[-1][0].f_code.co_filename):
        return None
    site = getattr(exc, "site", None)
    if isinstance(site, str):
        site_file, _, site_line = site.rpartition(":")
        return f"{os.path.relpath(site_file)}:{site_line}"
    for frame, line in reversed(frames):
        filename = frame.f_code.co_filename
        if not in_rawbg(filename) and not filename.startswith("<frozen"):
            return f"{os.path.relpath(filename)}:{line}"
    return None


def config_error(exc: ValueError) -> str:
    """A `ServerConfig` error, with its field names spelled as the command-line flags."""
    message = str(exc)
    for field in dataclasses.fields(ServerConfig):
        # not inside a flag already written (`loop` in --loop-block-warning)
        message = re.sub(rf"(?<![\w-]){field.name}(?![\w-])", flag_name(field.name), message)
    return message


def flag_name(field: str) -> str:
    """The command-line flag of a `ServerConfig` field: ``max_head_size`` -> ``--max-head-size``."""
    return "--" + field.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    link = WorkerLink.take_from_environ()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        # the pid tells the supervisor's and each worker's lines apart
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    if args.trace:
        logging.getLogger("rawbg.trace").setLevel(logging.INFO)
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            uds=args.uds if link is None else None,  # a worker gets the socket as fd
            fd=link.listen_fd if link is not None else args.fd,
            max_head_size=args.max_head_size,
            max_body_size=args.max_body_size,
            timeout_keep_alive=args.timeout_keep_alive,
            min_body_rate=args.min_body_rate,
            limit_concurrency=args.limit_concurrency,
            max_pending_tasks=args.max_pending_tasks,
            timeout_graceful_shutdown=args.timeout_graceful_shutdown,
            loop_block_warning=args.loop_block_warning,
            gc_interval=args.gc_interval,
            access_log=args.access_log,
            serve_on_arrival=args.serve_on_arrival,
            trace=args.trace,
            task_journal=args.task_journal,
            task_journal_sync=args.task_journal_sync,
            task_journal_lease=args.task_journal_lease,
            task_journal_busy_timeout=args.task_journal_busy_timeout,
            task_journal_group_commit=args.task_journal_commit == "group",
            trace_file=worker_file(args.trace_file) if link is not None else args.trace_file,
            loop=args.loop,
            proxy_headers=args.proxy_headers,
            forwarded_allow_ips=(
                args.forwarded_allow_ips
                if args.forwarded_allow_ips is not None
                else defaults.default_forwarded_allow_ips()
            ),
            root_path=args.root_path,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            ssl_keyfile_password=args.ssl_keyfile_password,
            ssl_ca_certs=args.ssl_ca_certs,
            ssl_cert_reqs=args.ssl_cert_reqs,
            ssl_ciphers=args.ssl_ciphers,
        )
        tls_context(config)  # a bad certificate or key: one line now, not one per worker
        make_loop = loop_factory(config.loop)
    except ValueError as exc:
        raise SystemExit(f"error: {config_error(exc)}") from None
    except RuntimeError as exc:
        raise SystemExit(f"error: {exc}") from None
    if (
        link is None
        and not (args.routes or args.openapi)
        and (args.workers is not None or args.reload)
    ):
        return supervise(argv, args, config)
    app = load_app(args.app, args.app_dir)
    if args.routes:
        from rawbg.app.route_listing import describe_routes

        print(describe_routes(app), end="")
        return 0
    if args.openapi:
        return write_openapi(app)
    from rawbg.server.server import serve
    from rawbg.tasks.journal.store import JournalError

    try:
        with asyncio.Runner(loop_factory=make_loop) as runner:
            if link is None:
                return runner.run(serve(app, config))
            # a worker: serve on the inherited socket, tell the supervisor when listening
            return runner.run(
                serve(app, config, on_listening=link.announce, parent_pid=link.supervisor_pid)
            )
    except JournalError as exc:
        print(journal_error(config, exc), file=sys.stderr)
        return defaults.EXIT_ERROR
    except OSError as exc:
        print(f"error: cannot listen on {where(config)}: {exc.strerror or exc}", file=sys.stderr)
        return defaults.EXIT_ERROR


def write_openapi(app: App) -> int:
    """``--openapi``: the document on stdout, or the one error line and status 1."""
    import json

    from rawbg.errors import OpenAPIError

    try:
        document = app.openapi()
    except OpenAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return defaults.EXIT_ERROR
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def journal_error(config: ServerConfig, exc: Exception) -> str:
    """The one line that says why the task journal cannot be used."""
    return f"error: --task-journal {config.journal_name}: {exc}"


def supervise(argv: list[str], args: argparse.Namespace, config: ServerConfig) -> int:
    """``--workers N`` / ``--reload``: the supervisor runs the workers; it never imports the app."""
    from rawbg.server.supervisor import Supervisor

    if args.fd is not None:
        raise SystemExit("error: --fd serves one process; the supervisor binds its own socket")
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit(f"error: --workers must be at least 1, got {workers}")
    from rawbg.tasks.journal.store import JournalError

    supervisor = Supervisor(
        argv=argv,
        config=config,
        workers=workers,
        reload_dir=os.path.abspath(args.app_dir) if args.reload else None,
    )
    try:
        return asyncio.run(supervisor.run())
    except JournalError as exc:  # checked once here, not by each worker
        print(journal_error(config, exc), file=sys.stderr)
        return defaults.EXIT_ERROR
    except OSError as exc:
        print(f"error: cannot listen on {where(config)}: {exc.strerror or exc}", file=sys.stderr)
        return defaults.EXIT_ERROR


def worker_file(path: str | None) -> str | None:
    """A file each worker writes for itself: ``trace.json`` -> ``trace.<pid>.json``."""
    if path is None:
        return None
    stem, ext = os.path.splitext(path)
    return f"{stem}.{os.getpid()}{ext}"


def where(config: ServerConfig) -> str:
    if config.uds is not None:
        return f"unix:{config.uds}"
    if config.fd is not None:
        return f"fd {config.fd}"
    return f"{config.host}:{config.port}"
