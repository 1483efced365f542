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
        "--trace-file",
        metavar="FILE",
        help="write the same events to FILE as Chrome trace-event JSON (open it in Perfetto)",
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
            trace_file=args.trace_file,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    from .server import serve

    try:
        return asyncio.run(serve(app, config))
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
