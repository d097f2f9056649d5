"""The device-token retry on AUTH_TOKEN_MISMATCH, the deviceTokens[] handoff and the
bootstrap token (issue 18, point 3) against the dev gateway; the real gateway's rotated
token is in test_real_gateway_2026_9.py."""

from __future__ import annotations

import logging
import socket

import pytest
from _util import DEV_TOKEN

from gwclient import (
    AuthRejected,
    ConnectionState,
    GatewayConfig,
    GatewayConnection,
    RetryPolicy,
    Snapshot,
    SshTunnelConfig,
    StateChange,
)
from gwclient._config.device import StoredDeviceToken
from gwclient._engine.auth_retry import DeviceTokenRetry, is_trusted_endpoint
from gwclient._errors import AuthRejected as _AuthRejected
from gwclient.device import DeviceIdentity, DeviceTokenStore
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
HANDOFF = [{"deviceToken": "handoff-node-token-3c4d", "role": "node", "scopes": [], "issuedAtMs": 1}]


def rotate_and_reconnect(gw: DevGateway, conn: GatewayConnection, token: str) -> None:
    """Rotate the gateway's token (it closes the sockets 4001) and wait for the client's
    next connection (its Snapshot), or its pause."""
    with conn.subscribe(events=[], include_state=True) as sub:
        first = sub.get(timeout=5)
        while not isinstance(first, Snapshot):
            first = sub.get(timeout=5)
        gw.set_token(token, close_existing=True)
        while True:
            item = sub.get(timeout=10)
            if isinstance(item, Snapshot) or (isinstance(item, StateChange) and item.state == ConnectionState.PAUSED):
                return


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": DEV_TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def test_a_rotated_shared_token_is_retried_once_with_the_device_token(
        gw: DevGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gwclient")
    conn = GatewayConnection.shared(config(gw))
    assert conn.connect().auth is not None  # paired; a device token is stored
    before = len(gw.connect_requests)
    rotate_and_reconnect(gw, conn, "rotated-token-7a8b")
    assert conn.request("health")["ok"] is True
    tries = gw.connect_requests[before:]
    assert [sorted(t["auth"]) for t in tries] == [["token"], ["deviceToken", "token"]]
    assert tries[1]["auth"]["token"] == DEV_TOKEN  # the configured one, as the official client
    assert gw.connections()[-1]["authMethod"] == "device-token"
    # Every later reconnect does the same (the budget comes back on success); warned once.
    before = len(gw.connect_requests)
    handshakes = gw.handshakes_completed
    gw.drop_connections()
    # (a request sent before the client saw the drop fails with Disconnected, never
    # replayed: wait for the reconnect, which is what is tested here)
    assert gw.wait_for(lambda g: g.handshakes_completed > handshakes, 10)
    assert conn.request("health")["ok"] is True
    assert [sorted(t["auth"]) for t in gw.connect_requests[before:]] == [["token"], ["deviceToken", "token"]]
    warnings = [r for r in caplog.records if "refused the configured shared token" in r.getMessage()]
    assert len(warnings) == 1 and DEV_TOKEN not in caplog.text and "rotated-token" not in caplog.text


def test_the_retry_is_spent_once_per_connect(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    hello = conn.connect()
    assert hello.auth is not None
    gw.invalidate_device_tokens()
    rotate_and_reconnect(gw, conn, "rotated-token-9c0d")
    with pytest.raises(AuthRejected):
        conn.request("health")
    assert [sorted(t["auth"]) for t in gw.connect_requests[-2:]] == [["token"], ["deviceToken", "token"]]


def test_no_retry_without_a_stored_device_token(gw: DevGateway) -> None:
    gw.set_token("other-token")
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(AuthRejected):
        conn.request("health")
    assert [sorted(t["auth"]) for t in gw.connect_requests] == [["token"]]


def test_only_trusted_endpoints() -> None:
    assert is_trusted_endpoint(GatewayConfig(url="ws://127.0.0.1:18789"))
    assert is_trusted_endpoint(GatewayConfig(url="ws://127.0.0.1:18790", ssh=SshTunnelConfig(host="gw.example")))
    assert is_trusted_endpoint(GatewayConfig(url="wss://gw.example", tls_fingerprint="ab" * 32))
    assert not is_trusted_endpoint(GatewayConfig(url="wss://gw.example"))
    assert not is_trusted_endpoint(GatewayConfig(url="ws://10.1.2.3:18789"))
    stored = StoredDeviceToken("dt", "operator", ("operator.read",), None)
    mismatch = _AuthRejected("unauthorized", code="INVALID_REQUEST", details={"code": "AUTH_TOKEN_MISMATCH"})
    untrusted = DeviceTokenRetry(GatewayConfig(url="wss://gw.example", token="t"))
    assert not untrusted.should_retry(mismatch, stored)
    trusted = DeviceTokenRetry(GatewayConfig(url="wss://gw.example", token="t", tls_fingerprint="ab" * 32))
    other = _AuthRejected("rate limited", code="INVALID_REQUEST", details={"code": "AUTH_RATE_LIMITED"})
    assert not trusted.should_retry(other, stored)
    assert not trusted.should_retry(mismatch, None)
    assert trusted.should_retry(mismatch, stored) and trusted.take() and not trusted.take()
    assert not trusted.should_retry(mismatch, stored)  # spent until a connect succeeds
    trusted.connected()
    advised = _AuthRejected("x", code="INVALID_REQUEST", details={"recommendedNextStep": "retry_with_device_token"})
    assert trusted.should_retry(advised, stored)


def test_handed_over_device_tokens_are_stored_over_a_trusted_transport(gw: DevGateway) -> None:
    gw.auth_overrides["deviceTokens"] = HANDOFF
    cfg = config(gw)
    GatewayConnection.shared(cfg).connect()
    identity = DeviceIdentity.load_or_create(cfg.effective_state_dir)
    node = DeviceTokenStore(cfg.effective_state_dir).load(cfg.gateway_key, identity.device_id, "node")
    assert node is not None and node.token == "handoff-node-token-3c4d"


def test_handed_over_device_tokens_are_not_stored_over_plaintext_to_a_remote_name(
        gw: DevGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """ws:// to a non-loopback name (allowed explicitly) lands on the loopback dev gateway."""
    real = socket.create_connection

    def to_loopback(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        host, port = address
        return real(("127.0.0.1" if host == "plain.invalid" else host, port), *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", to_loopback)
    gw.auth_overrides["deviceTokens"] = HANDOFF
    cfg = config(gw, url=f"ws://plain.invalid:{gw.port}", allow_insecure_remote=True)
    GatewayConnection.shared(cfg).connect()
    identity = DeviceIdentity.load_or_create(cfg.effective_state_dir)
    store = DeviceTokenStore(cfg.effective_state_dir)
    assert store.load(cfg.gateway_key, identity.device_id, "operator") is not None
    assert store.load(cfg.gateway_key, identity.device_id, "node") is None
    assert "not storing the 1 handed-over device token" in caplog.text
    assert "handoff-node-token" not in caplog.text


def test_a_bootstrap_token_is_sent_only_without_other_credentials(gw: DevGateway) -> None:
    gw.set_token(None)  # an open gateway: any connect is accepted, and pairs the device
    boot = GatewayConnection.shared(config(gw, token=None, bootstrap_token="setup-bootstrap-1e2f"))
    boot.connect()
    assert gw.connect_requests[-1]["auth"] == {"bootstrapToken": "setup-bootstrap-1e2f"}
    boot.shutdown()
    # The device token it got is preferred from now on; the bootstrap token is not sent again.
    again = GatewayConnection.shared(config(gw, token=None, bootstrap_token="setup-bootstrap-1e2f",
                                            display_name="again"))
    again.connect()
    assert list(gw.connect_requests[-1]["auth"]) == ["deviceToken"]
    with_token = GatewayConnection.shared(config(gw, bootstrap_token="setup-bootstrap-1e2f", display_name="tok"))
    with_token.connect()
    assert list(gw.connect_requests[-1]["auth"]) == ["token"]
