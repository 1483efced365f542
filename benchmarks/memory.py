"""Memory per pending background task: what a server holds while its tasks wait.

On a fresh server whose tasks sleep `TASK_SECONDS` (longer than the whole
measurement, so none finishes): send a warm-up of a few hundred requests,
settle, read VmRSS; send N more requests (closed loop, 32 at a time) and wait
for all their responses, settle, read VmRSS again. ``(after - before) / N``
(N: the responses received) is the memory each pending task costs, including
whatever its connection keeps alive for it: in ``close`` mode every task
outlives its connection, in ``keepalive`` mode the connections are shared.

RSS moves in pages and allocators keep freed memory for reuse, so this is an
estimate that needs a large N (10 000 in the full run), not an exact count.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .loadgen import run_loadgen
from .servers import running_server

TASK_SECONDS = 60.0
CONNECTIONS = 32


def pending_task_memory(
    server: str, mode: str, tasks: int, warmup: int, settle: float, log_dir: Path
) -> dict[str, Any]:
    """Bytes of RSS per pending task on a fresh `server`, `mode` keepalive or close."""
    with running_server(server, TASK_SECONDS, log_dir) as running:
        started = time.monotonic()

        def send(count: int) -> dict[str, Any]:
            return run_loadgen(
                "closed",
                TASK_SECONDS / 2,
                port=running.port,
                mode=mode,
                connections=CONNECTIONS,
                requests=count,
            )

        send(warmup)
        time.sleep(settle)
        before = running.rss_bytes()
        load = send(tasks)
        time.sleep(settle)
        after = running.rss_bytes()
        elapsed = time.monotonic() - started
    if elapsed >= TASK_SECONDS:
        raise RuntimeError(f"memory run took {elapsed:.0f} s: tasks finished before measured")
    return {
        "server": server,
        "mode": mode,
        "tasks": tasks,
        "ok": load["ok"],
        "errors": load["errors"],
        "error_count": load["error_count"],
        "rss_before": before,
        "rss_after": after,
        "bytes_per_task": round((after - before) / max(load["ok"], 1)),
    }
