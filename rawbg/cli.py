"""``python -m rawbg [MODULE:ATTR] [options]``: serve an app from the command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from . import config as defaults
from .app import App
from .config import ServerConfig

DEMO_APP = "rawbg.demo:app"


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
        "--routes",
        action="store_true",
        help="print the routes and their dependency trees, then exit",
    )
    limits = parser.add_argument_group("limits and timeouts")
    limits.add_argument(
        "--max-head-size",
        type=int,
        default=defaults.DEFAULT_MAX_HEAD_SIZE,
        metavar="BYTES",
        help="largest request line + headers; larger gets 431 (default: %(default)s)",
    )
    limits.add_argument(
        "--max-body-size",
        type=int,
        default=defaults.DEFAULT_MAX_BODY_SIZE,
        metavar="BYTES",
        help="largest request body; larger gets 413 (default: %(default)s)",
    )
    limits.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=defaults.DEFAULT_TIMEOUT_KEEP_ALIVE,
        metavar="SECONDS",
        help="close a connection idle this long; a request head must arrive "
        "within this time of its first byte, else 408 (default: %(default)s)",
    )
    limits.add_argument(
        "--limit-concurrency",
        type=int,
        default=defaults.DEFAULT_LIMIT_CONCURRENCY,
        metavar="N",
        help="open connections served at once; more get 503 (default: %(default)s)",
    )
    limits.add_argument(
        "--max-pending-tasks",
        type=int,
        default=defaults.DEFAULT_MAX_PENDING_TASKS,
        metavar="N",
        help="pending background tasks process-wide; at this many the server "
        "stops reading new requests until some finish (default: %(default)s)",
    )
    limits.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        default=defaults.DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, wait this long for pending background work "
        "before cancelling it (default: %(default)s)",
    )
    journal = parser.add_argument_group("task journal (durable background tasks)")
    journal.add_argument(
        "--task-journal",
        metavar="PATH",
        help="journal durable background tasks in this SQLite file before each response, "
        "and run the unfinished ones again at start-up (default: no journal)",
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
        default=defaults.DEFAULT_TASK_JOURNAL_LEASE,
        metavar="SECONDS",
        help="another process takes over this one's journaled tasks once it has not "
        "renewed its lease for this long (default: %(default)s)",
    )
    journal.add_argument(
        "--task-journal-busy-timeout",
        type=float,
        default=defaults.DEFAULT_TASK_JOURNAL_BUSY_TIMEOUT,
        metavar="SECONDS",
        help="how long a commit waits for a locked journal before the request "
        "gets 503 (default: %(default)s)",
    )
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
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"error: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise SystemExit(f"error: {spec} is a {type(app).__name__}, not a rawbg.App")
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.trace:
        logging.getLogger("rawbg.trace").setLevel(logging.INFO)
    app = load_app(args.app, args.app_dir)
    if args.routes:
        from .routes_view import describe_routes

        print(describe_routes(app), end="")
        return 0
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            max_head_size=args.max_head_size,
            max_body_size=args.max_body_size,
            timeout_keep_alive=args.timeout_keep_alive,
            limit_concurrency=args.limit_concurrency,
            max_pending_tasks=args.max_pending_tasks,
            timeout_graceful_shutdown=args.timeout_graceful_shutdown,
            access_log=args.access_log,
            trace=args.trace,
            task_journal=args.task_journal,
            task_journal_sync=args.task_journal_sync,
            task_journal_lease=args.task_journal_lease,
            task_journal_busy_timeout=args.task_journal_busy_timeout,
            task_journal_group_commit=args.task_journal_commit == "group",
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    from .journal import JournalError
    from .server import serve

    try:
        return asyncio.run(serve(app, config))
    except JournalError as exc:
        print(f"error: --task-journal {config.task_journal}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
