"""Proxies: the environment's proxy variables are never applied; an explicit
``GatewayConfig.proxy`` is used only for remote ``wss://`` gateways (docs/configuration.md).

A real recording HTTP CONNECT proxy on loopback tells whether any traffic went through it.
No test sends anything to a non-loopback address: the one test that names a remote host
sends it only to the loopback proxy, which refuses to connect anywhere.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gwclient import ConfigError, GatewayConfig, GatewayConnection
from gwclient._config.proxy import parse_proxy, proxy_kwargs, redact_proxy
from gwclient._engine.transport import OpenGuard, TransportOptions, open_transport
from gwclient.testing import DevGateway

TOKEN = "proxy-test-token"
_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")


class RecordingProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that records every request line.  It tunnels
    only to loopback targets (so traffic that wrongly goes through it still works, and the
    test sees it); any other target gets ``403`` and no connection."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept_loop, name="test-proxy-accept")

    def __enter__(self) -> RecordingProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        except OSError:
            pass
        self._acceptor.join(5)
        self._server.close()
        for t in list(self._threads):
            t.join(5)
        for s in socks:
            s.close()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            self._track(conn)
            t = threading.Thread(target=self._handle, args=(conn,), name="test-proxy-conn")
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self.lines.append(line)
        parts = line.split()
        target = parts[1] if len(parts) == 3 and parts[0] == "CONNECT" else ""
        host, _, port = target.rpartition(":")
        try:
            loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self._track(upstream)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        back = threading.Thread(target=_pump, args=(upstream, conn), name="test-proxy-pump")
        self._threads.append(back)
        back.start()
        _pump(conn, upstream)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    src.settimeout(None)
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy() as p:
        yield p


@pytest.fixture
def env_proxy(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> RecordingProxy:
    for name in _PROXY_VARS:
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return proxy


def test_recording_proxy_sees_what_websocket_client_sends_through_the_environment(
    env_proxy: RecordingProxy,
) -> None:
    """The hazard itself: websocket-client alone sends loopback traffic to the
    environment's proxy (this is what gwclient must prevent)."""
    with DevGateway(token=TOKEN) as gw:
        ws = websocket.create_connection(gw.url, timeout=5, suppress_origin=True)
        try:
            assert '"connect.challenge"' in ws.recv()
        finally:
            ws.close()
    assert env_proxy.lines == [f"CONNECT 127.0.0.1:{gw.port} HTTP/1.1"]


def test_environment_proxy_is_never_applied_to_a_loopback_gateway(
    env_proxy: RecordingProxy, shutdown_all_after: None
) -> None:
    with DevGateway(token=TOKEN) as gw:
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN))
        assert conn.request("echo", {"x": 1}) == {"x": 1}
        conn.shutdown()
    assert env_proxy.lines == [] and env_proxy.accepted == 0


def _self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gwclient-proxy-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    ctx.gwclient_fingerprint = fingerprint  # type: ignore[attr-defined]
    return ctx


def test_configured_proxy_and_https_proxy_are_not_used_for_a_loopback_wss_gateway(
    env_proxy: RecordingProxy, tmp_path: Path, shutdown_all_after: None
) -> None:
    ctx = _self_signed(tmp_path)
    with RecordingProxy() as configured, DevGateway(token=TOKEN, ssl_context=ctx) as gw:
        config = GatewayConfig(url=gw.url, token=TOKEN, proxy=configured.url,
                               tls_fingerprint=ctx.gwclient_fingerprint)  # type: ignore[attr-defined]
        conn = GatewayConnection.shared(config)
        assert conn.request("echo", "tls") == "tls"
        conn.shutdown()
        assert configured.lines == [] and configured.accepted == 0
    assert env_proxy.lines == [] and env_proxy.accepted == 0


def test_explicit_proxy_is_used_for_a_remote_wss_gateway_and_the_environment_is_not(
    env_proxy: RecordingProxy,
) -> None:
    """The remote host is only named to the loopback proxy (which refuses it): no traffic
    leaves loopback."""
    with RecordingProxy() as configured:
        options = TransportOptions(url="wss://gateway.invalid:8443", open_timeout=5, proxy=configured.url)
        with pytest.raises(websocket.WebSocketProxyException):
            open_transport(options, OpenGuard())
        assert configured.lines == ["CONNECT gateway.invalid:8443 HTTP/1.1"]
    assert env_proxy.lines == []


# ---------------------------------------------------------------- the decision, plain asserts


def test_no_proxy_kwargs_make_websocket_client_ignore_the_environment() -> None:
    for url in ("ws://127.0.0.1:1", "wss://127.0.0.1:1", "wss://[::1]:1", "wss://localhost",
                "wss://gateway.example.com"):
        kw = proxy_kwargs(url, None)
        assert kw["http_no_proxy"] == ["*"] and kw["http_proxy_host"].endswith(".invalid")
        assert websocket._url.get_proxy_info(  # what websocket-client then decides
            "gateway.example.com", True, kw["http_proxy_host"], kw["http_proxy_port"], None,
            kw["http_no_proxy"],
        ) == (None, 0, None)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "[::1]", "localhost", "LOCALHOST."])
def test_a_configured_proxy_is_never_used_for_loopback(host: str) -> None:
    assert proxy_kwargs(f"wss://{host}:9443", "http://proxy.example:3128")["http_no_proxy"] == ["*"]


def test_a_configured_proxy_is_used_for_a_remote_wss_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")  # the environment cannot exempt it either
    kw = proxy_kwargs("wss://gw.example.com", "http://us%40er:p%3Ass@proxy.example:3128")
    assert kw["http_proxy_host"] == "proxy.example" and kw["http_proxy_port"] == 3128
    assert kw["http_proxy_auth"] == ("us@er", "p:ss") and kw["proxy_type"] == "http"
    assert websocket._url.get_proxy_info(
        "gw.example.com", True, kw["http_proxy_host"], kw["http_proxy_port"], kw["http_proxy_auth"],
        kw["http_no_proxy"],
    ) == ("proxy.example", 3128, ("us@er", "p:ss"))
    assert proxy_kwargs("wss://gw.example.com", "http://proxy.example:8080")["http_proxy_auth"] is None


def test_plaintext_ws_never_goes_through_a_proxy() -> None:
    for url in ("ws://127.0.0.1:18000", "ws://10.1.2.3:18789"):
        with pytest.raises(ConfigError, match="plaintext ws:// never goes through a proxy"):
            GatewayConfig(url=url, proxy="http://proxy.example:3128", allow_insecure_remote=True)
    with pytest.raises(ConfigError, match="plaintext"):
        proxy_kwargs("ws://10.1.2.3:18789", "http://proxy.example:3128")


@pytest.mark.parametrize("bad", ["", "  ", "proxy.example:3128", "ftp://proxy.example:21",
                                 "http://proxy.example", "http://:3128", "http://proxy.example:0",
                                 "http://proxy.example:3128/path", "http://proxy.example:99999", 3128])
def test_malformed_proxies_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="proxy"):
        GatewayConfig(url="wss://gw.example.com", proxy=bad)  # type: ignore[arg-type]


def test_socks_proxy_needs_python_socks() -> None:
    import importlib.util

    if importlib.util.find_spec("python_socks") is None:
        with pytest.raises(ConfigError, match="python-socks"):
            GatewayConfig(url="wss://gw.example.com", proxy="socks5h://127.0.0.1:1080")
    else:
        config = GatewayConfig(url="wss://gw.example.com", proxy="socks5h://127.0.0.1:1080")
        assert proxy_kwargs(config.url, config.proxy)["proxy_type"] == "socks5h"


def test_proxy_credentials_never_in_repr_or_errors() -> None:
    config = GatewayConfig(url="wss://gw.example.com", proxy=" http://alice:s3cret@proxy.example:3128 ")
    assert config.proxy == "http://alice:s3cret@proxy.example:3128"
    assert "s3cret" not in repr(config) and "alice" not in repr(config)
    assert "proxy='http://proxy.example:3128'" in repr(config)
    with pytest.raises(ConfigError) as info:
        GatewayConfig(url="wss://gw.example.com", proxy="ftp://alice:s3cret@proxy.example:21")
    assert "s3cret" not in str(info.value)
    assert redact_proxy("http://a:b@h:1") == "http://h:1"
    assert parse_proxy("http://h:1", "wss://gw.example.com") == "http://h:1"
    # Different proxies are different effective configs (one socket each).
    assert config != config.with_changes(proxy="http://proxy.example:3129")
