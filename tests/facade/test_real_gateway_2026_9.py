"""Issue 18 against the real gateway (``RealGateway``, the pinned openclaw 2026.9.6 unless
``GWCLIENT_OPENCLAW_VERSION`` names another): busy retries when a pipelined burst fills
the gateway's request start queue, a read-only scope calling a write method, a scope
upgrade approved with the real ``openclaw devices approve``, and a device that stays
connected after the gateway restarts with a new shared token.

One gateway serves the module (local devices pair silently with the scopes they first
ask for; a scope upgrade needs an approval).  The token test restarts it and comes last.
Every test gets a fresh device identity (conftest sets a per-test ``GWCLIENT_STATE_DIR``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from gwclient import (
    AuthRejected,
    ConnectError,
    GatewayConfig,
    GatewayConnection,
    MissingScope,
    RetryPolicy,
    ScopeUpgrade,
    UnsupportedMethod,
)
from gwclient._config.setup_code import SETUP_CODE_SCOPES
from gwclient._engine.busy import RetryingFuture
from gwclient.testing._realgateway import RealGateway

pytestmark = [pytest.mark.realgateway, pytest.mark.usefixtures("shutdown_all_after")]

RETRY = RetryPolicy(initial=0.2, maximum=2.0)
READ = ("operator.read",)


@pytest.fixture(scope="module")
def gateway() -> Iterator[RealGateway]:
    with RealGateway() as gw:
        yield gw


def config(gw: RealGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": gw.token, "retry": RETRY, "connect_timeout": 10.0,
                               "request_timeout": 30.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


@pytest.mark.timeout(240)
def test_a_pipelined_burst_is_retried_through_the_busy_start_queue(gateway: RealGateway) -> None:
    """600 pipelined requests overflow the gateway's request start queue (256 pending):
    it refuses the rest with UNAVAILABLE "The server is busy" (retryable); every request
    is answered all the same.  Observed on 2026.9.6: ~570 refusals for a burst of 500."""
    conn = GatewayConnection.shared(config(gateway, request_timeout=180.0))
    conn.connect()
    futures = [conn.submit("health") for _ in range(600)]
    answers = [f.result(timeout=200) for f in futures]
    assert all(isinstance(a, dict) and a.get("ok") is True for a in answers)
    assert all(isinstance(f, RetryingFuture) for f in futures)
    sent = sum(f.attempts for f in futures)  # type: ignore[attr-defined]
    print(f"\nbusy: 600 pipelined health requests answered after {sent} sends "
          f"({sent - 600} busy refusals retried)")
    if gateway.version_info >= (2026, 9, 6):
        assert sent > 600  # the start queue overflowed and was retried through


@pytest.mark.timeout(120)
def test_a_read_only_connection_gets_missing_scope_for_a_write_method(gateway: RealGateway) -> None:
    conn = GatewayConnection.shared(config(gateway, scopes=READ))
    hello = conn.connect()
    assert hello.auth is not None and hello.auth.scopes == ["operator.read"]
    with pytest.raises(MissingScope) as info:
        conn.request("chat.abort", {"sessionKey": "agent:main:main", "runId": "no-such-run"})
    error = info.value
    assert error.missing_scope == "operator.write"
    assert "operator.write" in error.required_scopes and error.attempts == 1
    # 2026.9 sends FORBIDDEN with details; 2026.7.1 and before INVALID_REQUEST "missing scope: X".
    assert error.code == ("FORBIDDEN" if gateway.version_info >= (2026, 9) else "INVALID_REQUEST")
    assert gateway.token not in str(error)


@pytest.mark.timeout(180)
def test_a_scope_upgrade_approved_with_openclaw_devices_approve(gateway: RealGateway) -> None:
    cfg = config(gateway, scopes=READ)
    conn = GatewayConnection.shared(cfg)
    conn.connect()
    if gateway.version_info < (2026, 8):
        with pytest.raises(UnsupportedMethod):
            conn.request_scopes(["operator.write"])
        return
    pending = conn.request_scopes(["operator.write"])
    assert pending.status == "pending" and pending.request_id
    assert pending.scopes == ("operator.read", "operator.write")
    listed = gateway.devices_list()["pending"]
    assert pending.request_id in [p.get("requestId") for p in listed], listed

    result: Future[ScopeUpgrade] = Future()

    def waiter() -> None:
        try:
            result.set_result(conn.request_scopes(["operator.write"], wait=True, timeout=90,
                                                  on_pending=lambda p: filed.set_result(p.request_id)))
        except BaseException as exc:
            result.set_exception(exc)

    # The waiter files the request again (the same one, or one superseding it) and says
    # which before it waits: that is the one to approve.
    filed: Future[str] = Future()
    thread = threading.Thread(target=waiter, name="test-scope-wait")
    thread.start()
    request_id = filed.result(timeout=60)
    assert request_id in [p.get("requestId") for p in gateway.devices_list()["pending"]]
    gateway.devices_approve(request_id)
    outcome = result.result(timeout=120)
    thread.join()
    assert outcome.status == "approved"
    assert "operator.write" in outcome.scopes
    # The same connection object, no restart: the write method is allowed now.
    snapshot = conn.last_snapshot
    assert snapshot is not None and snapshot.hello.auth is not None
    assert "operator.write" in snapshot.hello.auth.scopes
    answer = conn.request("chat.abort", {"sessionKey": "agent:main:main", "runId": "no-such-run"})
    assert isinstance(answer, dict)


@pytest.mark.timeout(120)
def test_a_setup_code_from_openclaw_qr_pairs_a_fresh_device(gateway: RealGateway, tmp_path: Path) -> None:
    """``openclaw qr --setup-code-only`` prints a setup code (endpoint + single-use
    bootstrap token); ``GatewayConfig.from_setup_code`` connects with it alone (no shared
    token), the gateway pairs the device and hands over its device token, which is stored:
    the next connect needs neither code nor token.  The code is spent after that."""
    code = gateway.run_cli("qr", "--url", gateway.url, "--setup-code-only").stdout.strip().splitlines()[-1]
    config = GatewayConfig.from_setup_code(code, state_dir=str(tmp_path / "device"), retry=RETRY)
    assert config.url == gateway.url and config.token is None and config.bootstrap_token is not None
    assert config.bootstrap_token not in repr(config)
    conn = GatewayConnection.shared(config)
    hello = conn.connect(timeout=30)
    assert hello.auth is not None
    # (2026.9 names the method; 2026.7.1 and 2026.5.12 send none)
    assert hello.auth.method in ("bootstrap-token", None)
    assert hello.auth.method == "bootstrap-token" or gateway.version_info < (2026, 9, 0)
    assert set(hello.auth.scopes) <= set(SETUP_CODE_SCOPES) and "operator.write" in hello.auth.scopes
    assert conn.request("health")["ok"] is True
    conn.shutdown()
    later = GatewayConnection.shared(GatewayConfig(url=gateway.url, state_dir=str(tmp_path / "device"), retry=RETRY,
                                                   scopes=SETUP_CODE_SCOPES))
    assert later.connect(timeout=30).auth.method != "bootstrap-token"  # type: ignore[union-attr]
    assert later.request("health")["ok"] is True
    later.shutdown()
    # single use: another fresh device cannot pair with the same code
    again = GatewayConnection.shared(GatewayConfig.from_setup_code(code, state_dir=str(tmp_path / "other"),
                                                                   retry=RETRY))
    with pytest.raises(ConnectError):
        again.connect(timeout=30)


@pytest.mark.timeout(240)
def test_a_paired_device_survives_a_rotated_shared_token(gateway: RealGateway,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The gateway restarts with a new shared token; the script still has the old one. Its
    device is paired (a device token is stored): one retry with it gets back in (loopback
    is a trusted endpoint), with one warning that the configured token was refused."""
    caplog.set_level(logging.WARNING, logger="gwclient")
    old = gateway.token
    conn = GatewayConnection.shared(config(gateway))
    hello = conn.connect()
    assert hello.auth is not None and hello.auth.device_token
    gateway.stop()
    gateway.set_token("rotated-" + old[:12])
    gateway.start()
    assert conn.request("health", timeout=120)["ok"] is True
    assert conn.request("status")["runtimeVersion"] == gateway.version
    warnings = [r for r in caplog.records if "refused the configured shared token" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert old not in caplog.text and gateway.token not in caplog.text
    # Without a paired device the stale token is simply refused.
    stranger = GatewayConnection.shared(config(gateway, token=old, device_identity=False))
    with pytest.raises(AuthRejected):
        stranger.request("health")
