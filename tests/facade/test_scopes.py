"""Missing scopes and scope upgrades (issue 18, point 2) against the dev gateway; the
real gateway's side is in test_real_gateway_2026_9.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _util import DEV_TOKEN

from gwclient import (
    GatewayConfig,
    GatewayConnection,
    MissingScope,
    RequestError,
    RetryPolicy,
    ScopeUpgrade,
    UnsupportedMethod,
)
from gwclient._core.frames import ErrorShape
from gwclient._core.protocol import error_from_shape
from gwclient.device import DeviceTokenStore
from gwclient.testing import DevGateway, DevGatewayError

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
READ = ("operator.read",)


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": DEV_TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def test_missing_scope_from_details_and_from_the_legacy_message() -> None:
    modern = error_from_shape(ErrorShape(code="FORBIDDEN", message="missing scope: operator.write", details={
        "code": "MISSING_SCOPE", "missingScope": "operator.write",
        "requiredScopes": ["operator.write", "operator.admin"]}), method="chat.send")
    assert isinstance(modern, MissingScope) and isinstance(modern, RequestError)
    assert modern.missing_scope == "operator.write"
    assert modern.required_scopes == ("operator.write", "operator.admin") and modern.method == "chat.send"
    legacy = error_from_shape(ErrorShape(code="FORBIDDEN", message="missing scope: operator.admin"))
    assert isinstance(legacy, MissingScope) and legacy.missing_scope == "operator.admin"
    assert legacy.required_scopes == ("operator.admin",)
    old = error_from_shape(ErrorShape(code="INVALID_REQUEST", message="missing scope: operator.write"))
    assert isinstance(old, MissingScope) and old.missing_scope == "operator.write"  # 2026.7.1's form
    other = error_from_shape(ErrorShape(code="FORBIDDEN", message="not yours"))
    assert type(other) is RequestError


def test_missing_scope_is_raised_and_never_retried() -> None:
    with DevGateway(token=DEV_TOKEN, enforce_scopes=True) as gw:
        calls = {"n": 0}

        def write(params: Any) -> Any:
            calls["n"] += 1
            return {"ok": True}

        gw.set_handler("dev.write", write, scope="operator.write")
        conn = GatewayConnection.shared(config(gw, scopes=READ))
        with pytest.raises(MissingScope) as info:
            conn.request("dev.write")
        assert info.value.missing_scope == "operator.write" and info.value.attempts == 1
        assert gw.requests_by_method["dev.write"] == 1 and calls["n"] == 0
        GatewayConnection.shutdown_all()


class _UpgradeGateway:
    """The scope-upgrade methods of openclaw >= 2026.8, served by dev gateway handlers."""

    def __init__(self, gw: DevGateway) -> None:
        self.gw = gw
        self.requests: list[Any] = []
        self.decided = threading.Event()
        self.decision: dict[str, Any] = {}
        gw.set_handler("device.scopes.requestUpgrade", self.request_upgrade)
        gw.set_handler("device.scopes.waitUpgrade", self.wait_upgrade)

    def request_upgrade(self, params: Any) -> Any:
        self.requests.append(params)
        return {"requestId": f"req-{len(self.requests)}"}

    def wait_upgrade(self, params: Any) -> Any:
        if not self.decided.wait(5):
            raise DevGatewayError("INVALID_REQUEST", "scope upgrade expired or not found")
        return {"requestId": params["requestId"], **self.decision}


def test_request_scopes_pending_then_approved_takes_effect_without_restart(gw: DevGateway) -> None:
    up = _UpgradeGateway(gw)
    cfg = config(gw, scopes=READ)
    conn = GatewayConnection.shared(cfg)
    hello = conn.connect()
    assert hello.auth is not None and hello.auth.scopes == ["operator.read"]
    pending = conn.request_scopes(["operator.write"])
    assert pending == ScopeUpgrade("pending", "req-1", ("operator.read", "operator.write"))
    assert pending.approve_command == "openclaw devices approve req-1"
    assert up.requests == [{"scopes": ["operator.read", "operator.write"]}]  # current scopes included

    up.decision = {"status": "approved", "deviceToken": "rotated-device-token-5e6f",
                   "scopes": ["operator.read", "operator.write"]}
    up.decided.set()
    approved = conn.request_scopes(["operator.write"], wait=True, timeout=10)
    assert approved.status == "approved" and approved.approved
    assert approved.scopes == ("operator.read", "operator.write")
    # Reconnected, asking for the new scopes: the connection has them now.
    assert gw.connect_requests[-1]["scopes"] == ["operator.read", "operator.write"]
    assert conn.last_snapshot is not None
    assert conn.last_snapshot.hello.auth is not None
    assert "operator.write" in conn.last_snapshot.hello.auth.scopes
    assert conn.request("health")["ok"] is True
    identity = gw.connections()[-1]["deviceId"]
    stored = DeviceTokenStore(cfg.effective_state_dir).load(cfg.gateway_key, identity, "operator")
    assert stored is not None and stored.scopes == ("operator.read", "operator.write")


@pytest.mark.parametrize("status", ["rejected", "expired"])
def test_request_scopes_rejected_or_expired(gw: DevGateway, status: str) -> None:
    up = _UpgradeGateway(gw)
    up.decision = {"status": status}
    up.decided.set()
    conn = GatewayConnection.shared(config(gw, scopes=READ))
    outcome = conn.request_scopes("operator.write", wait=True, timeout=10)
    assert outcome.status == status and outcome.request_id == "req-1"
    assert gw.connect_requests[-1]["scopes"] == ["operator.read"]


def test_request_scopes_still_pending_when_the_wait_times_out(gw: DevGateway) -> None:
    _UpgradeGateway(gw)
    gw.never_answer("device.scopes.waitUpgrade")
    conn = GatewayConnection.shared(config(gw, scopes=READ))
    outcome = conn.request_scopes(["operator.write"], wait=True, timeout=0.3)
    assert outcome.status == "pending" and outcome.request_id == "req-1"


def test_request_scopes_on_a_gateway_without_the_methods(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, scopes=READ))
    with pytest.raises(UnsupportedMethod, match=r"device\.scopes\.requestUpgrade"):
        conn.request_scopes(["operator.write"])


def test_already_granted_scopes_are_not_asked_for(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, scopes=("operator.read", "operator.write")))
    outcome = conn.request_scopes(["operator.write"])
    assert outcome.status == "approved" and gw.requests_by_method.get("device.scopes.requestUpgrade", 0) == 0


@pytest.mark.parametrize("scopes", [[], ["", " "], [1], ["operator.write", None], b"operator.write"])
def test_bad_scopes_are_a_usage_error_before_anything_is_sent(scopes: Any) -> None:
    from gwclient import UsageError
    from gwclient._scopes import _check_scopes

    with pytest.raises(UsageError, match="scopes must be a non-empty list"):
        _check_scopes(scopes)
    assert _check_scopes(" operator.read, operator.write") == ["operator.read", "operator.write"]
