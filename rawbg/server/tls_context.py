"""The TLS context of an HTTPS server, from `ServerConfig`'s ``ssl_*`` options.

Built once per process before it listens (and once by the supervisor of
``--workers``, before any worker starts), so that a bad certificate, key or
option is one line at start-up naming the option, not a traceback, and not one
error per worker. Each check names the option it is about:

* ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``: the file must be there
  and readable, and hold what it should (a PEM certificate, a PEM key);
* ``ssl_keyfile_password``: an encrypted key needs it, and it must be right.
  OpenSSL asks on the terminal when a key is encrypted and no password was
  given; a server must not wait there, so the question is answered with an
  error instead;
* the key must belong to the certificate;
* ``ssl_ciphers`` must select at least one cipher.

What the context offers: TLS 1.2 and 1.3 (the floor set here: python.org's
builds set it themselves, Debian's leave it to OpenSSL's configuration), ALPN
``http/1.1`` (the only protocol rawbg speaks: a client that asks for h2 is
told so in the handshake, rather than finding out from a parse error), and
client certificates as ``ssl_cert_reqs`` says.
"""

from __future__ import annotations

import ssl

from rawbg.server.config import ServerConfig

#: ALPN: what rawbg speaks
ALPN_PROTOCOLS = ["http/1.1"]


class TlsSetupError(ValueError):
    """Raised when the ``ssl_*`` options cannot make a TLS context; the message
    names the option (the CLI spells it as its flag)."""


class _NoPasswordGiven(Exception):
    """The key is encrypted and no ``ssl_keyfile_password`` was given."""


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None when it serves plain HTTP.

    Raises `TlsSetupError`, whose message names the option at fault.
    """
    certfile = config.ssl_certfile
    if certfile is None:
        return None
    keyfile = config.ssl_keyfile
    _check_file("ssl_certfile", certfile, must_hold=b"-----BEGIN CERTIFICATE-----")
    if keyfile is not None:
        _check_file("ssl_keyfile", keyfile, must_hold=b"PRIVATE KEY-----")
    key_in = "ssl_keyfile" if keyfile is not None else "ssl_certfile"
    key_path = keyfile if keyfile is not None else certfile
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    password = config.ssl_keyfile_password

    def give_password() -> str:
        if password is None:
            raise _NoPasswordGiven
        return password

    try:
        context.load_cert_chain(certfile, keyfile, password=give_password)
    except _NoPasswordGiven:
        raise TlsSetupError(
            f"{key_in} {key_path}: the key is encrypted; give its password "
            "with ssl_keyfile_password"
        ) from None
    except ssl.SSLError as exc:
        raise TlsSetupError(_key_error(exc, certfile, key_in, key_path, password)) from None
    if config.ssl_ca_certs is not None:
        _check_file("ssl_ca_certs", config.ssl_ca_certs, must_hold=b"-----BEGIN CERTIFICATE-----")
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except ssl.SSLError as exc:
            raise TlsSetupError(f"ssl_ca_certs {config.ssl_ca_certs}: {_reason(exc)}") from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TlsSetupError(
                f"ssl_ciphers {config.ssl_ciphers!r}: OpenSSL knows no cipher by that list"
            ) from None
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context


def _check_file(option: str, path: str, *, must_hold: bytes) -> None:
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as exc:
        raise TlsSetupError(f"{option} {path}: {exc.strerror or exc}") from None
    if must_hold not in content:
        what = "a PEM certificate" if b"CERTIFICATE" in must_hold else "a PEM private key"
        raise TlsSetupError(f"{option} {path}: not {what} (no {must_hold.decode()!r} line)")


def _key_error(
    exc: ssl.SSLError, certfile: str, key_in: str, key_path: str, password: str | None
) -> str:
    # OpenSSL 3 says only "PEM lib" (no reason) both for a wrong password and
    # for a file with no key in it: what the file holds tells them apart
    if exc.reason == "KEY_VALUES_MISMATCH":
        return f"{key_in} {key_path}: the key does not belong to the certificate in {certfile}"
    if password is not None and _holds(key_path, b"ENCRYPTED"):
        return f"ssl_keyfile_password: wrong password for the key in {key_path}"
    if not _holds(key_path, b"PRIVATE KEY-----"):
        return f"ssl_certfile {certfile}: no private key in it; give ssl_keyfile"
    return f"{key_in} {key_path}: OpenSSL cannot load the key ({_reason(exc)})"


def _holds(path: str, marker: bytes) -> bool:
    try:
        with open(path, "rb") as file:
            return marker in file.read()
    except OSError:
        return False


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words: ``KEY_VALUES_MISMATCH`` -> ``key values mismatch``."""
    if exc.reason:
        return exc.reason.replace("_", " ").lower()
    return str(exc.strerror or exc)
