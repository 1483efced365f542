"""Where rawbg's time per request goes at peak load: ``python -m benchmarks.profile``.

Serves the benchmark app (one ``async def`` task per request, 0 s), loads it
with ``wrk -t1 -c32``, samples the server with ``py-spy record --format raw``
while the load runs, and sorts every sample into one layer by the innermost
frame that belongs to a layer we know. Prints each layer's share of the
samples and what that share is in microseconds of one request (at the rate
wrk saw while py-spy was sampling, which slows the server a little).

Needs ``wrk`` and ``py-spy`` on PATH (``pip install -e '.[bench]'``); py-spy
must be allowed to ptrace the server (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .peak import run_wrk
from .servers import running_server

# (layer, test on one frame "function (file:line)"), tried from the innermost
# frame outwards; the first frame that matches decides the sample's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("socket send (kernel, via transport.write)", ("_SelectorSocketTransport.write ",)),
    ("socket receive + data_received", ("_read_ready",)),
    ("JSON encoding", ("(json/", "encode_json")),
    ("routing", ("rawbg/app/paths.py",)),
    ("dependency resolution + parameters", ("rawbg/app/dependencies.py", "rawbg/params.py")),
    (
        "app: handler call, request and response objects",
        ("rawbg/app/application.py", "rawbg/requests.py", "rawbg/responses.py", "rawbg_app.py"),
    ),
    ("background task: start, run, release", ("rawbg/background.py",)),
    (
        "rawbg connection + protocol (the cycle, flow control)",
        ("rawbg/server/connection.py", "rawbg/wire/protocol.py"),
    ),
    ("asyncio timers and timeouts", ("asyncio/timeouts.py",)),
]
H11_SEND = ("Connection.send ", "Connection.send_with_data_passthrough ")


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        if "(h11/" in frame:
            sending = any(f.startswith(H11_SEND) for f in frames)
            return "h11: serialize the response" if sending else "h11: parse the request"
        for layer, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return layer
    return "asyncio event loop: scheduling, tasks, futures, epoll"


def stacks(raw: Path) -> Iterator[tuple[list[str], int]]:
    """(frames, outermost first; samples) per line of py-spy's raw format (``f;f;... count``)."""
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            yield stack.split(";"), int(count)


def breakdown(raw: Path) -> tuple[collections.Counter[str], int]:
    """Samples per layer from py-spy's raw format."""
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks(raw):
        layers[layer_of(frames)] += count
        total += count
    return layers, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time (default 10)")
    parser.add_argument("--rate", type=int, default=500, help="samples per second (default 500)")
    args = parser.parse_args(argv)
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH")
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "rawbg.txt"
        with running_server("rawbg", 0.0, Path(scratch) / "logs") as server:
            load: dict[str, object] = {}
            # wrk runs a second longer on each side, so every sample is under load
            wrk = threading.Thread(
                target=lambda: load.update(run_wrk(server.port, args.seconds + 2, 32))
            )
            wrk.start()
            threading.Event().wait(1.0)
            subprocess.run(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(round(args.seconds)),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                ],
                check=True,
                capture_output=True,
            )
            wrk.join()
        layers, total = breakdown(raw)
    rps = float(load["throughput_rps"])  # type: ignore[arg-type]
    print(
        f"rawbg under wrk -t1 -c32 while sampled: {rps:.0f} req/s, "
        f"{1e6 / rps:.0f} µs of loop time per request, {total} samples\n"
    )
    print(f"{'share':>6}  {'µs/req':>6}  layer")
    for layer, samples in layers.most_common():
        share = samples / total
        print(f"{100 * share:5.1f}%  {share * 1e6 / rps:6.1f}  {layer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
