"""Certificates made by the tests: a CA of their own, a server certificate, a client's.

`make_certificates(folder)` writes PEM files (made with the `cryptography`
package, the test extra) and returns their paths, and client contexts that
trust the CA. EC P-256 keys: fast to make, and what most sites serve.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_PASSWORD = "correct horse"


@dataclass(frozen=True)
class Certificates:
    folder: Path
    ca: Path  # the CA's certificate: what clients trust
    cert: Path  # the server's certificate (127.0.0.1, ::1, localhost)
    key: Path  # its key
    encrypted_key: Path  # the same key, encrypted with KEY_PASSWORD
    combined: Path  # certificate and key in one file
    client_cert: Path  # a client certificate signed by the CA
    client_key: Path
    other_key: Path  # a key that belongs to no certificate here

    def client_context(self, *, with_certificate: bool = False) -> ssl.SSLContext:
        """A client context that trusts the test CA (and shows the client certificate)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_certificate:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password.encode())
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def _signed(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/::1/localhost and a client's, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("rawbg test CA")
    ca_cert = _signed("rawbg test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _signed(
        "localhost",
        server_key,
        ca_name,
        ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _signed(
        "rawbg test client",
        client_key,
        ca_name,
        ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pem = serialization.Encoding.PEM
    paths = Certificates(
        folder=folder,
        ca=folder / "ca.pem",
        cert=folder / "cert.pem",
        key=folder / "key.pem",
        encrypted_key=folder / "key-encrypted.pem",
        combined=folder / "cert-and-key.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem",
        other_key=folder / "other-key.pem",
    )
    paths.ca.write_bytes(ca_cert.public_bytes(pem))
    paths.cert.write_bytes(server_cert.public_bytes(pem))
    _write_key(paths.key, server_key)
    _write_key(paths.encrypted_key, server_key, KEY_PASSWORD)
    paths.combined.write_bytes(paths.cert.read_bytes() + paths.key.read_bytes())
    paths.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_key(paths.client_key, client_key)
    _write_key(paths.other_key, ec.generate_private_key(ec.SECP256R1()))
    return paths
