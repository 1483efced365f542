"""rawbg behind a real nginx (the Debian package), on loopback ports.

Each test starts two rawbg processes and an nginx with a generated config in
a temporary directory (``-p`` prefix, ``daemon off``, its pid file and logs in
the temporary directory: no root-owned path). Linux routes all of 127/8 to
loopback, so the actors have addresses of their own:

* nginx connects to rawbg from 127.0.0.3 (``proxy_bind``), the only address
  rawbg trusts (``--forwarded-allow-ips 127.0.0.3``); location ``/untrusted/``
  connects from 127.0.0.4 instead;
* the test's client connects from 127.0.0.5.

Without nginx these tests are skipped, saying how to install it; under
``CI=true`` (``.ci/run`` installs nginx) they fail instead
(tests/support/services.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rawbg.server.config import EXIT_OK
from tests.support.processes import WAIT, RawbgProcess, rawbg_process
from tests.support.services import require_program
from tests.support.wire import RawClient, request_bytes

pytestmark = [pytest.mark.slow, pytest.mark.service]

PROXY = "127.0.0.3"  # nginx's address towards rawbg: trusted
UNTRUSTED_PROXY = "127.0.0.4"
CLIENT = "127.0.0.5"

APP = """
import asyncio
import os

from rawbg import App, Request

app = App()


@app.get("/{kind}/who")
async def who(kind: str, request: Request, sleep: float = 0.0):
    if sleep:
        await asyncio.sleep(sleep)
    return {
        "client": list(request.client) if request.client else None,
        "scheme": request.scheme,
        "pid": os.getpid(),
    }
"""

NGINX_CONF = """
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream rawbg {{
        server 127.0.0.1:{port_a};
        server 127.0.0.1:{port_b};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_bind {proxy};
        location /forwarded/ {{
            proxy_pass http://rawbg;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
        location /untrusted/ {{
            proxy_pass http://rawbg;
            proxy_bind {untrusted};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
        location /plain/ {{
            proxy_pass http://rawbg;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    return require_program(
        "nginx",
        install="apt-get update && apt-get install -y nginx",
        also_look_in=("/usr/sbin/nginx", "/usr/local/sbin/nginx"),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            if process.poll() is not None:
                error_log = log.read_text() if log.exists() else ""
                pytest.fail(f"nginx exited with {process.returncode}:\n{error_log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@contextlib.asynccontextmanager
async def nginx_in_front_of(tmp_path: Path, port_a: int, port_b: int) -> AsyncIterator[int]:
    """nginx proxying 127.0.0.1:PORT to both rawbg instances; yields PORT."""
    binary = nginx_binary()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            tmp=prefix,
            port=port,
            port_a=port_a,
            port_b=port_b,
            proxy=PROXY,
            untrusted=UNTRUSTED_PROXY,
        )
    )
    argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_listening(port, process, prefix / "error.log")
        yield port
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def two_instances(tmp_path: Path) -> AsyncIterator[tuple[RawbgProcess, RawbgProcess]]:
    (tmp_path / "proxied_app.py").write_text(APP)
    args = ("proxied_app:app", "--app-dir", str(tmp_path), "--port", "0", "--no-access-log")
    trust = ("--forwarded-allow-ips", PROXY)
    async with (
        rawbg_process(tmp_path, *args, *trust) as a,
        rawbg_process(tmp_path, *args, *trust) as b,
    ):
        yield a, b


async def fetch(port: int, target: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    """GET from the client's address (127.0.0.5) on a new connection; the JSON answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(CLIENT, 0))
    client = RawClient(reader, writer)
    try:
        await client.send(request_bytes("GET", target, headers=headers))
        response = await client.read_response(timeout=WAIT)
    finally:
        await client.close()
    assert response.status_code == 200, response
    answer: dict[str, object] = json.loads(response.body)
    return answer


async def test_nginx_keeps_its_upstream_connections_alive(tmp_path):
    async with (
        two_instances(tmp_path) as (a, b),
        nginx_in_front_of(tmp_path, a.port, b.port) as port,
    ):
        answers = [await fetch(port, "/plain/who") for _ in range(40)]
    # without proxy headers the client is nginx's own upstream socket
    connections = Counter(tuple(answer["client"]) for answer in answers)  # type: ignore[arg-type]
    assert {host for host, _ in connections} == {PROXY}
    assert {answer["pid"] for answer in answers} == {a.proc.pid, b.proc.pid}
    # 40 requests (each from a new client connection) over a few upstream connections
    assert len(connections) <= 10, connections
    assert max(connections.values()) >= 4, connections


async def test_x_forwarded_for_is_honoured_only_from_the_trusted_address(tmp_path):
    spoofed = {"x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https"}
    async with (
        two_instances(tmp_path) as (a, b),
        nginx_in_front_of(tmp_path, a.port, b.port) as port,
    ):
        # through nginx from the trusted address: the client nginx saw, not what it wrote
        via_trusted = await fetch(port, "/forwarded/who", spoofed)
        # through nginx from an address rawbg does not trust: the headers are ignored
        via_untrusted = await fetch(port, "/untrusted/who", spoofed)
        # straight to rawbg, claiming to be forwarded: ignored
        direct = await fetch(a.port, "/plain/who", spoofed)
    assert via_trusted["client"] == [CLIENT, 0]
    assert via_trusted["scheme"] == "https"
    assert via_untrusted["client"][0] == UNTRUSTED_PROXY  # type: ignore[index]
    assert via_untrusted["scheme"] == "http"
    assert direct["client"][0] == CLIENT  # type: ignore[index]
    assert direct["scheme"] == "http"


async def test_sigterm_of_one_instance_loses_no_request_nginx_had_sent_it(tmp_path):
    async with (
        two_instances(tmp_path) as (a, b),
        nginx_in_front_of(tmp_path, a.port, b.port) as port,
    ):
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        answered: list[tuple[float, float, int]] = []  # (sent, answered, pid)
        failures: list[BaseException] = []

        async def client_loop() -> None:
            while not stop.is_set():
                sent = loop.time()
                try:
                    answer = await fetch(port, "/plain/who?sleep=0.2")
                except (AssertionError, OSError, TimeoutError) as exc:
                    failures.append(exc)
                    continue
                answered.append((sent, loop.time(), int(answer["pid"])))  # type: ignore[call-overload]

        clients = [asyncio.create_task(client_loop()) for _ in range(8)]
        try:
            async with asyncio.timeout(WAIT):  # both instances are in use
                while {pid for *_, pid in answered} != {a.proc.pid, b.proc.pid}:
                    await asyncio.sleep(0.05)
            terminated_at = loop.time()
            a.signal(signal.SIGTERM)
            status = await a.exit_status()
            await asyncio.sleep(1.0)  # nginx goes on sending, to the other instance
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert failures == []
        assert status == EXIT_OK, a.log
        # requests instance A had received before the signal were answered after it
        drained = [r for r in answered if r[2] == a.proc.pid and r[0] < terminated_at < r[1]]
        assert drained, "no request was in flight at A when it got SIGTERM"
        # and the load went on, on instance B
        after = [pid for sent, _, pid in answered if sent > terminated_at + 0.5]
        assert after and set(after) == {b.proc.pid}
