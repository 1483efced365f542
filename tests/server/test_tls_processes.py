"""HTTPS from ``python -m rawbg`` with uvicorn's flags, with curl as the client.

docs/server-behavior.md, "HTTPS": the ``--ssl-*`` flags work with
``--workers``, ``--uds`` and ``--reload`` (each worker builds the context the
supervisor checked), and a certificate or key error at start-up is one line
naming the flag. The certificates are made by the test
(tests/support/certificates.py); curl is a real client from Debian's packages.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from rawbg.server.config import EXIT_OK
from tests.server.test_cli import run_to_exit
from tests.support.certificates import KEY_PASSWORD, Certificates, make_certificates
from tests.support.processes import WAIT, rawbg_process
from tests.support.services import require_program

pytestmark = pytest.mark.slow

TLS_APP = """
from rawbg import App, Request

app = App()


@app.get("/who")
async def who(request: Request):
    return {"scheme": request.url.scheme, "client": request.client is not None}
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(Path(tmp_path_factory.mktemp("certs")))


def curl() -> str:
    return require_program("curl", install="apt-get install curl")


async def curl_https(certs: Certificates, url: str, *extra: str) -> dict[str, object]:
    """GET `url` with curl, trusting the test CA, offering h2 then http/1.1 (ALPN)."""
    proc = await asyncio.create_subprocess_exec(
        curl(),
        "--silent",
        "--show-error",
        "--http2",
        "--cacert",
        str(certs.ca),
        "--write-out",
        "\\n%{http_code} %{http_version} %{scheme}",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body, _, status_line = out.decode().rpartition("\n")
    status, version, scheme = status_line.split()
    return {"status": status, "version": version, "scheme": scheme.lower(), "app": json.loads(body)}


@pytest.mark.service
@pytest.mark.parametrize("mode", ["workers on a unix socket", "reload on a port"])
async def test_curl_gets_https_over_http_1_1_from_workers_on_a_unix_socket_and_under_reload(
    tmp_path, certs, mode
):
    curl()
    (tmp_path / "tls_app.py").write_text(TLS_APP)
    sock = tmp_path / "rawbg.sock"
    tls = ("--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.encrypted_key))
    tls += ("--ssl-keyfile-password", KEY_PASSWORD)
    on_uds = mode == "workers on a unix socket"
    where = ("--workers", "2", "--uds", str(sock)) if on_uds else ("--port", "0", "--reload")
    async with rawbg_process(
        tmp_path, "tls_app:app", "--app-dir", str(tmp_path), *where, *tls
    ) as server:
        if on_uds:
            assert server.url == f"unix:{sock}"  # followed by " (https)"
            answer = await curl_https(certs, "https://localhost/who", "--unix-socket", str(sock))
        else:
            assert server.url == f"https://127.0.0.1:{server.port}"
            answer = await curl_https(certs, f"https://127.0.0.1:{server.port}/who")
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log
    # curl offered h2 first: ALPN chose http/1.1
    assert answer == {
        "status": "200",
        "version": "1.1",
        "scheme": "https",
        "app": {"scheme": "https", "client": not on_uds},
    }


async def test_a_wrong_key_password_is_one_line_naming_the_flag_even_with_workers(tmp_path, certs):
    # checked once by the supervisor before any worker starts (not one error per worker)
    args = ("--port", "0", "--workers", "2", "--ssl-certfile", str(certs.cert))
    args += ("--ssl-keyfile", str(certs.encrypted_key), "--ssl-keyfile-password", "wrong")
    status, _, err = await run_to_exit(tmp_path, *args)
    assert status != 0
    assert err.strip() == (
        f"error: --ssl-keyfile-password: wrong password for the key in {certs.encrypted_key}"
    )
