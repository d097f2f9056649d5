"""wss:// with certificate fingerprint pinning, against the dev gateway serving TLS."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gwclient import ConfigError, ConnectError, GatewayConfig, GatewayConnection
from gwclient.testing import DevGateway

TOKEN = "tls-token"


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gwclient-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture
def tls_gw(tmp_path: Path) -> Iterator[tuple[DevGateway, str]]:
    ctx, fingerprint = _self_signed(tmp_path)
    with DevGateway(token=TOKEN, ssl_context=ctx) as gw:
        yield gw, fingerprint
    GatewayConnection.shutdown_all()


def test_pinned_certificate_connects(tls_gw: tuple[DevGateway, str]) -> None:
    gw, fingerprint = tls_gw
    assert gw.url.startswith("wss://127.0.0.1:")
    pin = ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()  # tolerated spelling
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, tls_fingerprint=pin))
    assert conn.request("echo", "over tls") == "over tls"
    assert gw.sockets_accepted == 1 and gw.handshakes_completed == 1


def test_fingerprint_mismatch_is_clear_and_sends_no_secret(tls_gw: tuple[DevGateway, str]) -> None:
    gw, fingerprint = tls_gw
    wrong = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, tls_fingerprint=wrong))
    for _ in range(3):
        with pytest.raises(ConnectError) as info:
            conn.request("health")
        assert info.value.code == "TLS_FINGERPRINT_MISMATCH"
        assert wrong in str(info.value) and fingerprint in str(info.value)
    assert gw.sockets_accepted == 1  # paused after one attempt
    assert gw.connect_attempts == 0  # the token never left the client


def test_untrusted_certificate_without_pin_pauses(tls_gw: tuple[DevGateway, str]) -> None:
    gw, _ = tls_gw
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN))
    for _ in range(2):
        with pytest.raises(ConnectError) as info:
            conn.request("health")
        assert info.value.code == "TLS_CERT_UNTRUSTED" and "tls_fingerprint" in str(info.value)
    assert gw.connect_attempts == 0


def test_pin_requires_wss() -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(url="ws://127.0.0.1:1", tls_fingerprint="ab" * 32)
