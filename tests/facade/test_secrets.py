"""Secrets (tokens, passwords, device keys, device tokens) never appear in logs, reprs or
error messages, across a whole session: pairing, device tokens, auth failures, reconnects."""

from __future__ import annotations

import json
import logging

import pytest

from gwclient import (
    AuthRejected,
    GatewayConfig,
    GatewayConnection,
    ProtocolMismatch,
    RetryPolicy,
    Snapshot,
)
from gwclient.device import DeviceIdentity
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = "s3cret-shared-token-XYZ"
PASSWORD = "s3cret-password-ABC"


def test_no_secret_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gwclient")
    fast = RetryPolicy(initial=0.05, maximum=0.2)
    with DevGateway(token=TOKEN) as gw:
        cfg = GatewayConfig(url=gw.url, token=TOKEN, retry=fast)
        conn = GatewayConnection.shared(cfg)
        hello = conn.connect()
        device_token = hello.auth.device_token if hello.auth else None
        assert device_token
        conn.request("health")
        with conn.subscribe(include_state=False) as sub:
            assert isinstance(sub.get(timeout=5), Snapshot)
            gw.drop_connections()
            while not isinstance(sub.get(timeout=10), Snapshot):  # the reconnect's snapshot
                pass
        conn.request("health")  # after a reconnect
        # (No device identity: a paired device would be let in by the device-token retry.)
        bad = GatewayConnection.shared(cfg.with_changes(token="wrong-" + TOKEN, password=PASSWORD,
                                                        device_identity=False))
        with pytest.raises(AuthRejected) as info:
            bad.request("health")
        # The client's own log lines (the dev gateway's loggers are a test tool's, not ours).
        fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
        client_log = "\n".join(fmt.format(r) for r in caplog.records if not r.name.startswith("gwclient.testing"))
        assert "paused" in client_log and "channel" in client_log  # the logs were captured
        texts = [client_log, repr(cfg), str(cfg), repr(conn), repr(bad), str(info.value), repr(info.value),
                 repr(hello), repr(hello.auth)]
        identity = DeviceIdentity.load_or_create(cfg.effective_state_dir)
        texts.append(repr(identity))
        stored = json.loads((cfg.effective_state_dir / "device.json").read_text())
        secrets = [TOKEN, PASSWORD, device_token, stored["privateKey"]]
        for text in texts:
            for secret in secrets:
                assert secret not in text


def test_protocol_mismatch_is_typed_and_pauses() -> None:
    with DevGateway(token=TOKEN) as gw:
        gw.reject_next_connects(5, code="INVALID_REQUEST", message="protocol mismatch",
                                details={"code": "PROTOCOL_MISMATCH", "expectedProtocol": 5},
                                close_code=1002, close_reason="protocol mismatch")
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN))
        for _ in range(3):
            with pytest.raises(ProtocolMismatch):
                conn.request("health")
        assert gw.connect_attempts == 1
