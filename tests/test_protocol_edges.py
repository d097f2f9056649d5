"""Edges of the pure protocol helpers that mutation testing showed were unchecked
(scripts/mutation, tests/MUTATION.md).  Plain asserts, no sockets, no threads."""

from __future__ import annotations

import pytest

from gwclient import (
    AuthRejected,
    ConnectError,
    DeviceIdentity,
    GatewayConfig,
    GatewayUnavailable,
    PairingRequired,
    RequestError,
    RetryPolicy,
    SeqGap,
    StoredDeviceToken,
)
from gwclient._frames import (
    ConnectChallenge,
    ErrorShape,
    EventFrame,
    ResponseFrame,
    StateVersion,
    decode_frame,
)
from gwclient._handshake import Credentials, build_connect_params
from gwclient._protocol import TWO_STAGE_METHODS, PendingTable, SeqTracker, error_from_shape, new_request_id
from gwclient.testing._devgw_proto import verify_device_proof

CHALLENGE = ConnectChallenge(nonce="nonce-edge", ts=1_700_000_000_000)


# ------------------------------------------------------------- connect params as sent


@pytest.mark.parametrize(
    "changes",
    [
        {"role": "node", "client_id": "node-host", "client_mode": "node"},
        {"device_family": "Phone", "platform": "  iOS 18 "},
        {"role": "node", "device_family": "ÄBC Desk", "display_name": "d", "instance_id": "i-1"},
        {"scopes": ("operator.write", "operator.read"), "caps": ("tool-events",)},
        {"scopes": ()},
        {"token": "shared-T"},
        {"password": "P"},
    ],
)
def test_the_gateway_verifies_the_signature_from_what_was_sent(changes: dict[str, object]) -> None:
    """The gateway rebuilds the signed payload from the SENT params (role, scopes, client
    id/mode/platform/deviceFamily, the auth token), not from our config: the dev gateway's
    independent verifier (written from PROTOCOL.md) must accept it as v3."""
    identity = DeviceIdentity.generate()
    for stored in (None, StoredDeviceToken("dev-tok", "operator", (), None)):
        config = GatewayConfig(**changes)  # type: ignore[arg-type]
        wire = build_connect_params(config, CHALLENGE, Credentials(identity, stored)).to_wire()
        role = wire.get("role", "operator")
        _, version = verify_device_proof(wire, role, CHALLENGE.nonce, CHALLENGE.ts)
        assert version == "v3"
        # What is sent is what was configured (and nothing is dropped).
        assert role == config.role and wire["scopes"] == list(config.scopes)
        assert wire["caps"] == list(config.caps)
        client = wire["client"]
        assert (client["id"], client["mode"], client["platform"]) == (config.client_id, config.client_mode,
                                                                     config.platform)
        assert client.get("deviceFamily") == config.device_family
        assert client.get("displayName") == config.display_name
        assert client.get("instanceId") == config.instance_id
        assert client["version"] == config.client_version
        assert (wire["minProtocol"], wire["maxProtocol"]) == (4, 4)
        if config.token or config.password:
            assert wire["auth"] == {k: v for k, v in (("token", config.token), ("password", config.password)) if v}
        elif stored is not None:
            assert wire["auth"] == {"deviceToken": "dev-tok"}
        else:
            assert "auth" not in wire


def test_a_tampered_sent_field_breaks_the_signature() -> None:
    """The verifier above is not a rubber stamp: change one sent field and it refuses."""
    identity = DeviceIdentity.generate()
    config = GatewayConfig(role="node", client_id="node-host", client_mode="node", device_family="Phone")
    wire = build_connect_params(config, CHALLENGE, Credentials(identity, None)).to_wire()
    for key, value in (("role", "operator"), ("scopes", []), ("client", {**wire["client"], "deviceFamily": "x"}),
                       ("client", {**wire["client"], "platform": "other"}),
                       ("client", {**wire["client"], "mode": "cli"})):
        with pytest.raises(Exception, match="signature invalid"):
            verify_device_proof({**wire, key: value}, value if key == "role" else "node", CHALLENGE.nonce,
                                CHALLENGE.ts)
    no_family = dict(wire["client"])
    del no_family["deviceFamily"]
    with pytest.raises(Exception, match="signature invalid"):
        verify_device_proof({**wire, "client": no_family}, "node", CHALLENGE.nonce, CHALLENGE.ts)


# --------------------------------------------------------------------------- seq gaps


def test_exactly_one_skipped_event_is_a_gap() -> None:
    tracker = SeqTracker()
    assert tracker.observe(1) is None
    assert tracker.observe(2) is None
    assert tracker.observe(4) == SeqGap(expected=3, received=4)
    assert tracker.observe(5) is None
    assert tracker.observe(5) is None and tracker.observe(3) is None  # duplicate, late
    assert tracker.last == 5
    assert tracker.observe(None) is None and tracker.last == 5
    tracker.reset()
    assert tracker.last is None
    assert tracker.observe(7) is None  # a new socket may start anywhere
    assert tracker.observe(9) == SeqGap(expected=8, received=9)


def test_first_seq_zero_then_two_is_a_gap() -> None:
    tracker = SeqTracker()
    assert tracker.observe(0) is None
    assert tracker.observe(2) == SeqGap(expected=1, received=2)


# --------------------------------------------------------------- connect refusals


def _shape(code: str, details: dict[str, object] | None = None, *, retryable: bool | None = None,
           message: str = "m", retry_after_ms: int | None = None) -> ErrorShape:
    return ErrorShape(code=code, message=message, details=details, retryable=retryable,
                      retry_after_ms=retry_after_ms)


@pytest.mark.parametrize(("code", "retryable"), [("UNAVAILABLE", None), ("UNAVAILABLE", False),
                                                  ("INVALID_REQUEST", True), ("UNAVAILABLE", True)])
def test_unavailable_or_retryable_alone_keeps_reconnecting(code: str, retryable: bool | None) -> None:
    err = error_from_shape(_shape(code, retryable=retryable), connect=True)
    assert type(err) is ConnectError and not err.pauses_reconnect
    assert err.retryable is bool(retryable)


def test_neither_unavailable_nor_retryable_pauses() -> None:
    err = error_from_shape(_shape("INVALID_REQUEST", retryable=False), connect=True)
    assert type(err) is ConnectError and err.pauses_reconnect
    assert error_from_shape(_shape("FORBIDDEN"), method="connect").pauses_reconnect  # type: ignore[attr-defined]


def test_not_paired_alone_is_pairing_required() -> None:
    err = error_from_shape(_shape("NOT_PAIRED", message="device pairing required"), connect=True)
    assert type(err) is PairingRequired and err.pauses_reconnect
    assert err.request_id is None and err.device_id is None
    assert str(err).startswith("device pairing required")


def test_pairing_required_detail_code_alone_is_pairing_required() -> None:
    details = {"code": "PAIRING_REQUIRED", "requestId": "req-9", "deviceId": "dev-9"}
    err = error_from_shape(_shape("INVALID_REQUEST", details), connect=True)
    assert type(err) is PairingRequired and err.pauses_reconnect
    assert (err.request_id, err.device_id) == ("req-9", "dev-9")
    assert err.approve_command == "openclaw devices approve req-9"
    only_device = error_from_shape(_shape("INVALID_REQUEST", {"code": "PAIRING_REQUIRED", "deviceId": "dev-9",
                                                              "requestId": ""}), connect=True)
    assert isinstance(only_device, PairingRequired) and only_device.request_id is None
    assert "(device dev-9)" in str(only_device) and only_device.approve_command is None


@pytest.mark.parametrize(("details", "pauses"), [
    ({"pauseReconnect": False}, False),
    ({"pauseReconnect": True}, True),
    ({"pauseReconnect": None}, True),
    ({"pauseReconnect": 0}, True),  # only a real false counts
    ({"recommendedNextStep": "wait_then_retry"}, False),
    ({"recommendedNextStep": "update_auth_credentials"}, True),
    ({}, True),
])
def test_pause_reconnect_false_keeps_retrying_a_pairing_refusal(details: dict[str, object], pauses: bool) -> None:
    err = error_from_shape(_shape("NOT_PAIRED", {"code": "PAIRING_REQUIRED", **details}), connect=True)
    assert isinstance(err, PairingRequired) and err.pauses_reconnect is pauses


def test_device_identity_required_is_auth_not_pairing() -> None:
    err = error_from_shape(_shape("NOT_PAIRED", {"code": "DEVICE_IDENTITY_REQUIRED"}), connect=True)
    assert type(err) is AuthRejected and err.pauses_reconnect
    for detail in ("AUTH_TOKEN_MISMATCH", "DEVICE_AUTH_SIGNATURE_INVALID", "CONTROL_UI_ORIGIN_NOT_ALLOWED",
                   "AUTHENTICATED_PROFILE_UNAVAILABLE"):
        assert type(error_from_shape(_shape("INVALID_REQUEST", {"code": detail}), connect=True)) is AuthRejected
    assert type(error_from_shape(_shape("INVALID_REQUEST", {"code": "XAUTH_"}), connect=True)) is ConnectError


def test_error_fields_are_carried() -> None:
    err = error_from_shape(_shape("UNAVAILABLE", {"code": "X"}, retryable=True, message="busy", retry_after_ms=750),
                           method="status")
    assert type(err) is GatewayUnavailable and str(err) == "busy"
    assert (err.code, err.detail_code, err.retryable, err.retry_after_ms, err.method) == (
        "UNAVAILABLE", "X", True, 750, "status")
    no_message = error_from_shape(_shape("FORBIDDEN", message=""), method="m")
    assert type(no_message) is RequestError and str(no_message) == "FORBIDDEN"
    assert error_from_shape(_shape("X", {"code": 5})).detail_code == ""
    connect = error_from_shape(_shape("X", {"recommendedNextStep": "review_auth_configuration"}), connect=True)
    assert connect.method == "" and connect.recommended_next_step == "review_auth_configuration"


# ------------------------------------------------------------------- two-stage answers


def test_expect_final_answered_in_one_stage_settles_at_once() -> None:
    table: PendingTable[str] = PendingTable()
    table.add("1", "agent", "w1", expect_final=True)
    done = table.resolve(ResponseFrame(id="1", ok=True, payload={"status": "ok", "text": "hi"}))
    assert done is not None and done[1] == {"status": "ok", "text": "hi"} and "1" not in table
    table.add("2", "agent", "w2", expect_final=True)
    failed = table.resolve(ResponseFrame(id="2", ok=False, error=ErrorShape(code="UNAVAILABLE", message="x")))
    assert failed is not None and isinstance(failed[1], GatewayUnavailable) and len(table) == 0
    table.add("3", "agent", "w3", expect_final=True)
    assert table.resolve(ResponseFrame(id="3", ok=True, payload={"status": "accepted", "runId": "r"})) is None
    assert "3" in table
    final = table.resolve(ResponseFrame(id="3", ok=True, payload={"status": "accepted", "again": 1}))
    assert final is not None and final[1] == {"status": "accepted", "again": 1}  # the second one is final
    assert final[0].accepted == {"status": "accepted", "runId": "r"}
    table.add("4", "status", "w4")
    plain = table.resolve(ResponseFrame(id="4", ok=True, payload={"status": "accepted"}))
    assert plain is not None and plain[1] == {"status": "accepted"}  # not a two-stage request
    assert "agent" in TWO_STAGE_METHODS


def test_request_ids_are_unique_non_empty_strings() -> None:
    a, b = new_request_id(), new_request_id()
    assert a != b and isinstance(a, str) and a and ":" in a
    assert int(b.split(":")[0]) == int(a.split(":")[0]) + 1


# ------------------------------------------------------------------------- state version


def test_state_version_health_and_presence_are_kept() -> None:
    frame = decode_frame('{"type":"event","event":"health","stateVersion":{"presence":3,"health":7}}')
    assert isinstance(frame, EventFrame) and frame.state_version == StateVersion(presence=3, health=7)
    only_health = decode_frame('{"type":"event","event":"health","stateVersion":{"health":9}}')
    assert isinstance(only_health, EventFrame) and only_health.state_version == StateVersion(0, 9)
    nulls = decode_frame('{"type":"event","event":"e","stateVersion":{"presence":null,"health":null}}')
    assert isinstance(nulls, EventFrame) and nulls.state_version == StateVersion(0, 0)


# ------------------------------------------------------------------------------ retry


def test_retry_policy_delays() -> None:
    fixed = RetryPolicy(initial=0.5, multiplier=2.0, maximum=30.0, jitter=0.0)
    assert [fixed.delay(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert fixed.delay(-3) == 0.5 and fixed.delay(2, floor=5.0) == 5.0 and fixed.delay(9, floor=60.0) == 60.0
    low = RetryPolicy(initial=1.0, maximum=10.0, jitter=0.5, rng=lambda: 0.0)
    high = RetryPolicy(initial=1.0, maximum=10.0, jitter=0.5, rng=lambda: 0.999999)
    assert low.delay(0) == 0.5 and high.delay(0) == pytest.approx(1.5, abs=1e-5)
    assert high.delay(10) == 10.0  # jitter never pushes past the cap
    assert RetryPolicy(initial=0.0, maximum=0.0, multiplier=1.0).delay(5) == 0.0
    assert RetryPolicy(initial=2.0, maximum=2.0, multiplier=1.0, jitter=0.0).delay(3) == 2.0
    for bad in ({"initial": -0.1}, {"initial": 5.0, "maximum": 1.0}, {"multiplier": 0.99}, {"jitter": 1.0},
                {"jitter": -0.01}):
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    RetryPolicy(jitter=0.0)
    RetryPolicy(multiplier=1.0)
