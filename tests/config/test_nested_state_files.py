"""State files nested 200 000 deep (json's decoder recurses per level): a paused
ConfigError naming the file, or (a token file with a shared token configured) a warning and
nothing else; never a storm of reconnects and tracebacks (issue 16 point 3)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from _util import DEV_TOKEN

from gwclient import ConfigError, ConnectionState, GatewayConfig, GatewayConnection, RetryPolicy
from gwclient.device import DeviceIdentity, DeviceTokenStore
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
NESTED = b"[" * 200_000 + b"]" * 200_000


def state_dir() -> Path:
    return Path(os.environ["GWCLIENT_STATE_DIR"])


def plant(name: str, data: bytes) -> Path:
    path = state_dir() / name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def config(gw: DevGateway, token: str | None) -> GatewayConfig:
    return GatewayConfig(url=gw.url, token=token, retry=FAST, connect_timeout=5, request_timeout=10)


def test_a_nested_identity_file_is_a_paused_config_error_naming_it(gw: DevGateway,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = plant("device.json", NESTED)
    conn = GatewayConnection.shared(config(gw, DEV_TOKEN))
    with caplog.at_level(logging.WARNING):
        with pytest.raises(ConfigError) as info:
            conn.request("health")
        assert str(path) in str(info.value) and "nested too deeply" in str(info.value)
        assert "recursion" not in str(info.value)
        assert conn.state == ConnectionState.PAUSED  # not retried
    assert gw.sockets_accepted == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with pytest.raises(ConfigError):
        DeviceIdentity.load_or_create(state_dir())


def test_a_nested_token_file_with_a_shared_token_is_ignored_with_one_warning(
        gw: DevGateway, caplog: pytest.LogCaptureFixture) -> None:
    path = plant("device-tokens.json", NESTED)
    conn = GatewayConnection.shared(config(gw, DEV_TOKEN))
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            conn.request("health")
        gw.drop_connections()  # a reconnect reads the file again
        assert gw.wait_for(lambda g: g.handshakes_completed == 2, timeout=10)  # (not the dying socket)
        for _ in range(5):
            conn.request("health")
    assert gw.handshakes_completed == 2  # one connect, one reconnect: no storm
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.name == "gwclient.device"]
    assert len(warnings) == 1 and str(path) in warnings[0], warnings
    # The issued device token was saved over the broken file.
    identity = DeviceIdentity.load_or_create(state_dir())
    assert DeviceTokenStore(state_dir()).load(config(gw, DEV_TOKEN).gateway_key, identity.device_id, "operator")


def test_a_nested_token_file_without_a_shared_token_is_a_paused_config_error_naming_it(gw: DevGateway) -> None:
    DeviceIdentity.load_or_create(state_dir())
    path = plant("device-tokens.json", NESTED)
    conn = GatewayConnection.shared(config(gw, None))
    with pytest.raises(ConfigError) as info:
        conn.request("health")
    assert str(path) in str(info.value)
    assert conn.state == ConnectionState.PAUSED  # not retried
    assert gw.sockets_accepted == 0
