"""Edge-auth upgrade headers (issue 18, point 4): ``GatewayConfig.headers`` for a remote
``wss://`` gateway only, filled from ``gateway.cloudflareAccess`` (or ``CF_ACCESS_*``),
redacted like tokens, and on the wire in the websocket upgrade (a TLS dev gateway)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tls import _self_signed

from gwclient import ConfigError, GatewayConfig, GatewayConnection
from gwclient.testing import DevGateway

TOKEN = "edge-token"
CF = {"CF-Access-Client-Id": "cf-id-1a2b.access", "CF-Access-Client-Secret": "cf-secret-9f8e7d6c5b4a"}
PAIRS = tuple(CF.items())


def test_headers_need_a_remote_wss_gateway() -> None:
    with pytest.raises(ConfigError, match="wss://"):
        GatewayConfig(url="ws://10.0.0.5:18789", headers=PAIRS)
    with pytest.raises(ConfigError, match="loopback"):
        GatewayConfig(url="wss://127.0.0.1:18789", headers=PAIRS)
    with pytest.raises(ConfigError, match="loopback"):
        GatewayConfig(url="wss://localhost:443", headers=PAIRS)
    with pytest.raises(ConfigError, match="header name"):
        GatewayConfig(url="wss://gw.example", headers=(("Host", "evil"),))
    with pytest.raises(ConfigError, match="one line"):
        GatewayConfig(url="wss://gw.example", headers=(("X-A", "a\r\nX-B: b"),))
    cfg = GatewayConfig(url="wss://gw.example", headers=PAIRS)
    assert cfg.headers == (("CF-Access-Client-Id", CF["CF-Access-Client-Id"]),
                           ("CF-Access-Client-Secret", CF["CF-Access-Client-Secret"]))
    assert cfg == GatewayConfig(url="wss://gw.example", headers=CF)  # type: ignore[arg-type]  # (a mapping)
    assert hash(cfg) == hash(GatewayConfig(url="wss://gw.example", headers=PAIRS))
    assert cfg != GatewayConfig(url="wss://gw.example", headers=(PAIRS[0], ("CF-Access-Client-Secret", "other")))


def test_header_values_are_redacted_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    cfg = GatewayConfig(url="wss://gw.example", headers=PAIRS, bootstrap_token="boot-secret-77")
    text = repr(cfg) + str(cfg)
    assert "CF-Access-Client-Id" in text and "bootstrap_token=<set>" in text
    for secret in (*CF.values(), "boot-secret-77"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        GatewayConfig(url="ws://10.0.0.5:18789", headers=PAIRS)
    assert not any(v in str(info.value) for v in CF.values())


def test_from_environment_reads_cloudflare_access(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps({"gateway": {
        "mode": "remote",
        "remote": {"url": "wss://gw.example", "token": "t"},
        "cloudflareAccess": {"clientId": CF["CF-Access-Client-Id"],
                             "clientSecret": {"source": "env", "provider": "default", "id": "MY_CF_SECRET"}},
    }}))
    env = {"HOME": str(tmp_path), "MY_CF_SECRET": CF["CF-Access-Client-Secret"]}
    cfg = GatewayConfig.from_environment(env, config_path=path)
    assert dict(cfg.headers) == CF
    # The conventional environment fallback of the official node host.
    env2 = {"HOME": str(tmp_path), "OPENCLAW_GATEWAY_URL": "wss://other.example",
            "CF_ACCESS_CLIENT_ID": "id2", "CF_ACCESS_CLIENT_SECRET": "secret2"}
    assert dict(GatewayConfig.from_environment(env2, config_path=path).headers) == {
        "CF-Access-Client-Id": "id2", "CF-Access-Client-Secret": "secret2"}
    with pytest.raises(ConfigError, match="together"):
        GatewayConfig.from_environment({**env2, "CF_ACCESS_CLIENT_SECRET": ""}, config_path=path)
    # A loopback (local-mode) gateway gets none: there is no edge in front of it.
    local = tmp_path / "local.json"
    local.write_text(json.dumps({"gateway": {"cloudflareAccess": {"clientId": "a", "clientSecret": "b"}}}))
    assert GatewayConfig.from_environment({"HOME": str(tmp_path)}, config_path=local).headers == ()


@pytest.fixture
def tls_gw(tmp_path: Path) -> Iterator[tuple[DevGateway, str]]:
    ctx, fingerprint = _self_signed(tmp_path)
    with DevGateway(token=TOKEN, ssl_context=ctx) as gw:
        yield gw, fingerprint
    GatewayConnection.shutdown_all()


def test_upgrade_headers_on_the_wire(tls_gw: tuple[DevGateway, str], monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """The gateway is "edge.invalid" to the config (a remote name) and the TCP connection
    lands on the loopback TLS dev gateway, which records the upgrade request's headers."""
    gw, fingerprint = tls_gw
    real = socket.create_connection

    def to_loopback(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        host, port = address
        return real(("127.0.0.1" if host == "edge.invalid" else host, port), *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", to_loopback)
    caplog.set_level(logging.DEBUG, logger="gwclient")
    cfg = GatewayConfig(url=f"wss://edge.invalid:{gw.port}", token=TOKEN, tls_fingerprint=fingerprint,
                        headers=PAIRS)
    conn = GatewayConnection.shared(cfg)
    assert conn.request("echo", "through the edge") == "through the edge"
    seen = dict(gw.upgrade_headers[-1])
    assert seen["CF-Access-Client-Id"] == CF["CF-Access-Client-Id"]
    assert seen["CF-Access-Client-Secret"] == CF["CF-Access-Client-Secret"]
    assert "Origin" not in seen
    conn.shutdown()
    client_logs = "\n".join(r.getMessage() for r in caplog.records
                             if not r.name.startswith("gwclient.testing"))  # (the server logs what it got)
    assert "edge.invalid" in client_logs and not any(v in client_logs for v in CF.values())
    # Without headers, none are sent.
    plain = GatewayConnection.shared(cfg.with_changes(headers=()))
    plain.request("echo", 1)
    assert "CF-Access-Client-Secret" not in dict(gw.upgrade_headers[-1])
