"""Draw a ``--trace-file`` as a PNG timeline: rawbg's promise, as a picture.

    python -m benchmarks.timeline TRACE.json -o timeline.png
    python -m benchmarks.timeline --record TRACE.json -o timeline.png

Each connection is a row: its life in grey, each request on it (head parsed
to response flushed) in blue. Under it, one row per background task, in
orange, from its start to its end. What to look for: every task starts after
its request's response was flushed, and the next request on the same
connection does not wait for the previous request's task.

``--record`` first makes such a trace: it serves the tutorial's endpoint
(as benchmarks/apps/rawbg_app.py does, its task a sleep of ``--task-seconds``) in this
process with ``trace_file=TRACE.json``, and sends it a little load (a few
keep-alive clients, a few requests each, a new connection for the last).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from rawbg import App, BackgroundTasks
from rawbg.server.server import serving

CONNECTION_COLOUR = "#d9d9d9"
REQUEST_COLOUR = "#1f77b4"
TASK_COLOUR = "#ff7f0e"


def read_spans(path: Path) -> tuple[dict[int, str], list[tuple[int, str, float, float]]]:
    """Track names, and the spans (track, name, start µs, end µs) of a trace file."""
    text = path.read_text().rstrip()
    if not text.endswith("]"):  # a server killed before it closed the array
        text = text.rstrip(",") + "]"
    events: list[dict[str, Any]] = json.loads(text)
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    open_spans: dict[int, list[tuple[str, float]]] = {}
    spans = []
    for event in events:
        if event.get("ph") == "B":
            open_spans.setdefault(event["tid"], []).append((event["name"], event["ts"]))
        elif event.get("ph") == "E" and open_spans.get(event["tid"]):
            name, start = open_spans[event["tid"]].pop()
            spans.append((event["tid"], name, start, event["ts"]))
    return names, spans


def draw(trace: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, spans = read_spans(trace)
    if not spans:
        raise SystemExit(f"no spans in {trace}")
    origin = min(start for _, _, start, _ in spans)
    # a connection's row, then its tasks' rows, in the order they began
    connections = sorted(
        (t for t, n in names.items() if " req " not in n), key=lambda t: _first(t, spans)
    )
    rows: list[int] = []
    for connection in connections:
        rows.append(connection)
        label = names[connection] + " req "
        tasks = [t for t, n in names.items() if n.startswith(label)]
        rows.extend(sorted(tasks, key=lambda t: _first(t, spans)))
    height = 0.35 * len(rows) + 1.2
    figure, axes = plt.subplots(figsize=(11, height))
    # a request takes well under a millisecond: draw it at least this wide
    narrowest = (max(end for *_, end in spans) - origin) / 1000 / 250
    ordered = sorted(spans, key=lambda span: span[1] != "connection")  # requests on top
    for tid, name, start, end in ordered:
        if tid not in rows:
            continue
        y = rows.index(tid)
        left, width = (start - origin) / 1000, max((end - start) / 1000, narrowest)
        if name == "connection":
            colour, bar = CONNECTION_COLOUR, 0.7
        elif " req " in names[tid]:
            colour, bar = TASK_COLOUR, 0.5
        else:
            colour, bar = REQUEST_COLOUR, 0.5
        axes.barh(y, width, left=left, height=bar, color=colour)
    legend = [
        plt.Rectangle((0, 0), 1, 1, color=CONNECTION_COLOUR, label="socket open"),
        plt.Rectangle((0, 0), 1, 1, color=REQUEST_COLOUR, label="request: head to flush"),
        plt.Rectangle((0, 0), 1, 1, color=TASK_COLOUR, label="background task"),
    ]
    axes.legend(handles=legend, loc="upper right", fontsize=8)
    axes.set_yticks(range(len(rows)), [_short(names[t]) for t in rows], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("ms since the first event")
    axes.set_title("rawbg: requests (blue) flushed, then their background tasks (orange) run")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


def _first(track: int, spans: list[tuple[int, str, float, float]]) -> float:
    return min((start for tid, _, start, _ in spans if tid == track), default=0.0)


def _short(name: str) -> str:
    """``conn 3 req 2 send_email`` -> ``  req 2 task``; a connection keeps its name."""
    if " req " not in name:
        return name
    request = name.split(" req ", 1)[1].split(" ", 1)[0]
    return f"  req {request} task"


def tutorial_app(task_seconds: float) -> App:
    """The tutorial's endpoint, its task a sleep (as in benchmarks/apps/rawbg_app.py)."""
    app = App()

    async def send_email(email: str) -> None:
        await asyncio.sleep(task_seconds)

    @app.post("/send-notification/{email}")
    async def send_notification(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(send_email, email)
        return {"message": "Notification sent in the background"}

    return app


async def record(trace: Path, *, task_seconds: float, clients: int, requests: int) -> None:
    app = tutorial_app(task_seconds)
    async with serving(app, port=0, access_log=False, trace_file=str(trace)) as server:

        async def client(number: int) -> None:
            await asyncio.sleep(number * task_seconds / (2 * clients))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for index in range(requests):
                last = index == requests - 1
                head = (
                    f"POST /send-notification/user{number}@example.com HTTP/1.1\r\n"
                    f"host: localhost\r\ncontent-length: 0\r\n"
                    f"{'connection: close' if last else 'connection: keep-alive'}\r\n\r\n"
                )
                writer.write(head.encode())
                await reader.readuntil(b"}")
                await asyncio.sleep(task_seconds / 3)
            writer.close()

        await asyncio.gather(*(client(n) for n in range(clients)))
        await server.wait_background_idle()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path, help="a --trace-file JSON file")
    parser.add_argument("-o", "--out", type=Path, default=Path("timeline.png"))
    parser.add_argument("--record", action="store_true", help="first record TRACE (see above)")
    parser.add_argument("--task-seconds", type=float, default=0.06)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args(argv)
    if args.record:
        asyncio.run(
            record(
                args.trace,
                task_seconds=args.task_seconds,
                clients=args.clients,
                requests=args.requests,
            )
        )
    draw(args.trace, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
