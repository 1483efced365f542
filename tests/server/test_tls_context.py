"""The TLS context from the ``ssl_*`` options: each start-up error is one line naming the flag.

rawbg/server/tls_context.py builds the context once before listening; the CLI
spells each option as its flag (`rawbg.cli.config_error`). The certificates
are made by the test (tests/support/certificates.py).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from rawbg.cli import config_error
from rawbg.server.config import ServerConfig
from rawbg.server.tls_context import tls_context
from tests.support.certificates import KEY_PASSWORD, Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(Path(tmp_path_factory.mktemp("certs")))


def start_up_error(**options: object) -> str:
    """What ``python -m rawbg`` would print for these options."""
    with pytest.raises(ValueError) as raised:
        tls_context(ServerConfig(**options))  # type: ignore[arg-type]
    return config_error(raised.value)


def test_without_a_certificate_the_server_speaks_plain_http():
    assert tls_context(ServerConfig()) is None


def test_the_context_asks_for_client_certificates_as_told_and_refuses_tls_below_1_2(certs):
    context = tls_context(
        ServerConfig(ssl_certfile=str(certs.combined), ssl_cert_reqs=2, ssl_ca_certs=str(certs.ca))
    )
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    # set by rawbg: Debian's Python leaves it at MINIMUM_SUPPORTED (OpenSSL's configuration)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_an_encrypted_key_with_its_password_loads(certs):
    options = {"ssl_keyfile": str(certs.encrypted_key), "ssl_keyfile_password": KEY_PASSWORD}
    assert tls_context(ServerConfig(ssl_certfile=str(certs.cert), **options)) is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"ssl_certfile": "{folder}/missing.pem"},
            "--ssl-certfile {folder}/missing.pem: No such file or directory",
        ),
        (
            {"ssl_certfile": "{key}", "ssl_keyfile": "{key}"},
            "--ssl-certfile {key}: not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line)",
        ),
        (
            {"ssl_certfile": "{cert}", "ssl_keyfile": "{cert}"},
            "--ssl-keyfile {cert}: not a PEM private key (no 'PRIVATE KEY-----' line)",
        ),
        (
            {"ssl_certfile": "{cert}"},
            "--ssl-certfile {cert}: no private key in it; give --ssl-keyfile",
        ),
        (
            {"ssl_certfile": "{cert}", "ssl_keyfile": "{encrypted_key}"},
            "--ssl-keyfile {encrypted_key}: the key is encrypted; give its password with"
            " --ssl-keyfile-password",
        ),
        (
            {
                "ssl_certfile": "{cert}",
                "ssl_keyfile": "{encrypted_key}",
                "ssl_keyfile_password": "wrong",
            },
            "--ssl-keyfile-password: wrong password for the key in {encrypted_key}",
        ),
        (
            {"ssl_certfile": "{cert}", "ssl_keyfile": "{other_key}"},
            "--ssl-keyfile {other_key}: the key does not belong to the certificate in {cert}",
        ),
        (
            {"ssl_certfile": "{combined}", "ssl_ca_certs": "{folder}/no-ca.pem"},
            "--ssl-ca-certs {folder}/no-ca.pem: No such file or directory",
        ),
        (
            {"ssl_certfile": "{combined}", "ssl_ciphers": "NO-SUCH-CIPHER"},
            "--ssl-ciphers 'NO-SUCH-CIPHER': OpenSSL knows no cipher by that list",
        ),
        (
            {"ssl_keyfile": "{key}"},
            "--ssl-keyfile needs --ssl-certfile: HTTPS is on only with a certificate",
        ),
    ],
    ids=[
        "missing certificate",
        "certificate file holds a key",
        "key file holds a certificate",
        "no key anywhere",
        "encrypted key without password",
        "wrong password",
        "key of another certificate",
        "missing CA file",
        "unknown cipher",
        "key without certificate",
    ],
)
def test_each_certificate_or_key_error_is_one_line_naming_its_flag(certs, options, message):
    paths = {name: str(getattr(certs, name)) for name in Certificates.__dataclass_fields__}
    filled = {name: value.format(**paths) for name, value in options.items()}
    error = start_up_error(**filled)
    assert error == message.format(**paths)
    assert "\n" not in error
