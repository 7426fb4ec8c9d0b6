"""The throwaway PKI: keys, chains, names, file modes, and a real TLS handshake on the issued certs."""
from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from dxlmisp_devstack.fabric.pki import Pki, make_pki, make_server_cert

ROLES = ("service", "requester")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), ROLES)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _all_pairs(pki: Pki) -> list[tuple[Path, Path]]:
    return [(pki.broker_cert, pki.broker_key), *(pki.client(role) for role in ROLES)]


def test_every_leaf_chains_to_the_ca(pki: Pki) -> None:
    """The broker and client certificates are signed by the CA, which is a CA certificate."""
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for cert_path, _ in _all_pairs(pki):
        leaf = _cert(cert_path)
        leaf.verify_directly_issued_by(ca)
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_keys_are_rsa_2048_and_match_their_certificates(pki: Pki) -> None:
    """Each key is RSA (dxlclient's AES128-SHA256 needs an RSA key exchange) and loads with its certificate."""
    for cert_path, key_path in _all_pairs(pki):
        public = _cert(cert_path).public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == 2048
        ssl.create_default_context().load_cert_chain(cert_path, key_path)  # raises if key and cert differ


def test_private_keys_are_owner_only(pki: Pki) -> None:
    """Every private key file, the CA's included, has mode 0600."""
    for key_path in [pki.ca_key, *(key for _, key in _all_pairs(pki))]:
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_broker_cert_names_loopback_ip_and_localhost(pki: Pki) -> None:
    """The broker certificate carries 127.0.0.1 as an IP SAN and localhost as a DNS SAN, for server auth."""
    cert = _cert(pki.broker_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages


def test_one_client_cert_per_role_named_after_it(pki: Pki) -> None:
    """Each role gets its own client-auth certificate whose common name is the role."""
    serials = set()
    for role in ROLES:
        cert = _cert(pki.client(role)[0])
        assert cert.subject.rfc4514_string() == f"CN={role}"
        assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        serials.add(cert.serial_number)
    assert len(serials) == len(ROLES)


def test_unknown_role_is_refused(pki: Pki) -> None:
    """Asking for a role that got no certificate raises KeyError naming the roles that exist."""
    with pytest.raises(KeyError, match="service"):
        pki.client("nobody")


def test_bad_role_name_is_refused(tmp_path: Path) -> None:
    """A role name that is not a plain file-name token is refused before anything is written."""
    with pytest.raises(ValueError):
        make_pki(tmp_path, ["../escape"])


def _client_handshake(pki: Pki, cert_path: Path, key_path: Path, hostname: str) -> bytes:
    """Serve one TLS connection with cert/key on 127.0.0.1; connect as a hostname-checking client."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (OSError, ssl.SSLError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                    return tls.recv(2)
        finally:
            thread.join(10)


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_server_cert_passes_hostname_checked_tls(pki: Pki, hostname: str) -> None:
    """make_server_cert issues a certificate that a hostname-checking TLS client accepts for its hosts."""
    cert_path, key_path = make_server_cert(pki, "misp")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert _client_handshake(pki, cert_path, key_path, hostname) == b"ok"


def test_server_cert_for_another_host_fails_hostname_check(pki: Pki) -> None:
    """A certificate issued for other hosts is refused for 127.0.0.1 by a hostname-checking client."""
    cert_path, key_path = make_server_cert(pki, "elsewhere", hosts=["misp.example"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _client_handshake(pki, cert_path, key_path, "127.0.0.1")
