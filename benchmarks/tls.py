"""HTTPS side by side: rawbg's own TLS against uvicorn's, keep-alive req/s and handshakes/s.

``python -m benchmarks.tls [--rounds 3] [--seconds 5] [--servers rawbg,fastapi,...]``

Each server of `benchmarks/servers.py` is started with the same certificate
(an EC P-256 key, made here by the ``openssl`` CLI) through the same flags,
``--ssl-certfile``/``--ssl-keyfile``, which rawbg took from uvicorn. Two loads,
in alternating rounds (every server once per round, so that a change of the
machine's load falls on all of them):

* **keep-alive**: ``wrk -t1 -c32`` over HTTPS, the benchmark's POST, on 32
  connections that stay open: what encrypting and decrypting each request and
  response costs (the handshakes are 32 in all);
* **handshakes**: ``openssl s_time -new -www /``, four processes at once,
  each a new TLS connection (a full handshake: no session is resumed) and one
  ``GET /`` over HTTP/1.0 (a 404 or 405 on every server): what accepting a
  TLS client costs. s_time counts connections per second.

It prints each round's figures, the median per server, its ratio to the
first server, and ``/proc/loadavg`` before each round. Run it under
``flock /tmp/rawbg-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.peak import LUA_SCRIPT, parse_wrk
from benchmarks.servers import HOST, NEEDS_PORT, ROOT, child_env, command, free_port, stop

DEFAULT_SERVERS = ("rawbg", "fastapi", "rawbg-uvloop", "fastapi-std")
PATH = "/send-notification/bench@example.com"
CONNECTIONS = 32
HANDSHAKE_CLIENTS = 4  # s_time processes at once: the server, not one client's latency, limits
START_TIMEOUT = 20.0


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def https_server(name: str, cert: Path, key: Path, log: Path) -> Iterator[int]:
    """Server `name` serving HTTPS with `cert`; yields its port once a handshake succeeds."""
    port = free_port()  # every server is given one: rawbg's banner says https, not http
    argv = [*command(name, port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        client = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: see {log}")
            try:
                with (
                    socket.create_connection((HOST, port), timeout=2) as raw,
                    client.wrap_socket(raw, server_hostname=HOST),
                ):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not answer HTTPS on {port}: see {log}"
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        stop(process)


def keep_alive_rps(port: int, seconds: int) -> float:
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(LUA_SCRIPT)]
    output = subprocess.run(
        [*argv, f"https://{HOST}:{port}{PATH}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    result = parse_wrk(output)
    if result["error_count"]:
        raise RuntimeError(f"wrk saw errors: {result['errors']}\n{output}")
    return float(result["throughput_rps"])


def handshakes_per_second(port: int, seconds: int) -> float:
    argv = ["openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-www", "/"]
    clients = [
        subprocess.Popen(
            [*argv, "-time", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(HANDSHAKE_CLIENTS)
    ]
    total = 0.0
    for client in clients:
        output = client.communicate(timeout=seconds + 30)[0].decode()
        match = re.search(r"([\d.]+) connections/user sec", output)
        counted = re.search(r"(\d+) connections in ([\d.]+)s", output)
        if match is None or counted is None:
            raise RuntimeError(f"openssl s_time printed no rate:\n{output}")
        total += int(counted.group(1)) / seconds  # per wall second, not per client CPU second
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args(argv)
    for program in ("wrk", "openssl"):
        if shutil.which(program) is None:
            raise SystemExit(f"error: {program} is not installed (apt-get install {program})")
    names = args.servers.split(",")
    unknown = [n for n in names if n not in (*DEFAULT_SERVERS, *NEEDS_PORT, "ceiling")]
    if unknown:
        raise SystemExit(f"error: unknown server(s) {', '.join(unknown)}")
    folder = Path(tempfile.mkdtemp(prefix="rawbg-tls-bench-"))
    cert, key = make_certificate(folder)
    figures: dict[str, dict[str, list[float]]] = {
        n: {"keep-alive": [], "handshakes": []} for n in names
    }
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}: loadavg {loadavg()}", flush=True)
        order = names if round_number % 2 else list(reversed(names))
        for name in order:
            with https_server(name, cert, key, folder / f"{name}.log") as port:
                rps = keep_alive_rps(port, args.seconds)
                rate = handshakes_per_second(port, args.seconds)
            figures[name]["keep-alive"].append(rps)
            figures[name]["handshakes"].append(rate)
            print(f"  {name:14} keep-alive {rps:8.0f} req/s   handshakes {rate:7.0f}/s", flush=True)
    print(f"after: loadavg {loadavg()}")
    first = names[0]
    print(
        f"\n| server | keep-alive req/s (median; rounds) | vs {first} | handshakes/s | vs {first} |"
    )
    print("|---|---|---|---|---|")
    base = {m: statistics.median(figures[first][m]) for m in ("keep-alive", "handshakes")}
    for name in names:
        cells = []
        for measure in ("keep-alive", "handshakes"):
            values = figures[name][measure]
            median = statistics.median(values)
            rounds = ", ".join(f"{v:.0f}" for v in values)
            cells += [f"{median:.0f} ({rounds})", f"{median / base[measure]:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
