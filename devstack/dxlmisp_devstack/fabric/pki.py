"""A throwaway PKI for the dev fabric: a CA, a broker certificate and one client certificate per role.

Every key is RSA: dxlclient pins the TLS 1.2 cipher ``AES128-SHA256``, whose key exchange is RSA, so an EC
key would leave it no cipher to agree on. 2048 bits keeps start-up fast; nothing here outlives a dev run.
Private keys are written with mode 0600.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_BITS = 2048
VALIDITY = datetime.timedelta(days=30)
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

BROKER_NAME = "broker"


@dataclass(frozen=True)
class Pki:
    """The files of one throwaway PKI, all under ``directory``."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    broker_cert: Path
    broker_key: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def client(self, role: str) -> tuple[Path, Path]:
        """Return ``(cert_path, key_path)`` of the client certificate made for ``role``."""
        try:
            return self.clients[role]
        except KeyError:
            raise KeyError(f"no client certificate for role {role!r}; made: {sorted(self.clients)}") from None


def make_pki(directory: str | os.PathLike[str], roles: Iterable[str]) -> Pki:
    """Create a CA, a broker certificate (127.0.0.1 and localhost) and a client certificate per role."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_cert = _build_ca(ca_key)
    ca_cert_path, ca_key_path = _write_pair(base, "ca", ca_cert, ca_key)
    broker_cert, broker_key = _issue(ca_cert, ca_key, BROKER_NAME, hosts=DEFAULT_HOSTS, server=True)
    broker_cert_path, broker_key_path = _write_pair(base, BROKER_NAME, broker_cert, broker_key)
    clients: dict[str, tuple[Path, Path]] = {}
    for role in roles:
        _check_name(role)
        cert, key = _issue(ca_cert, ca_key, role, hosts=(), server=False)
        clients[role] = _write_pair(base, f"client-{role}", cert, key)
    return Pki(base, ca_cert_path, ca_key_path, broker_cert_path, broker_key_path, clients)


def make_server_cert(pki: Pki, name: str, hosts: Iterable[str] = DEFAULT_HOSTS) -> tuple[Path, Path]:
    """Issue a TLS server certificate from ``pki``'s CA (e.g. for the dev MISP server's HTTPS).

    Returns ``(cert_path, key_path)`` in ``pki.directory``. ``hosts`` become SAN entries: IP
    addresses as IP SANs, anything else as DNS SANs. Clients verify it with ``pki.ca_cert``.
    """
    _check_name(name)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise TypeError(f"{pki.ca_key} is not an RSA key")
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert, key = _issue(ca_cert, ca_key, name, hosts=tuple(hosts), server=True)
    return _write_pair(pki.directory, f"server-{name}", cert, key)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"certificate name must be non-empty [A-Za-z0-9._-]: {name!r}")


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(minutes=5), now + VALIDITY


def _build_ca(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack throwaway CA")])
    not_before, not_after = _validity()
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue(
    ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, common_name: str, *, hosts: tuple[str, ...], server: bool
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _new_key()
    not_before, not_after = _validity()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,  # the RSA key exchange of AES128-SHA256 encrypts to this key
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_pair(base: Path, stem: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> tuple[Path, Path]:
    cert_path = base / f"{stem}.crt"
    key_path = base / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    os.chmod(key_path, 0o600)  # the file may have existed with a wider mode
    return cert_path, key_path
