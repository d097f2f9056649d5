"""Edges of the pure protocol helpers that mutation testing showed were unchecked
(scripts/mutation, tests/MUTATION.md).  Plain asserts, no sockets, no threads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import pytest

from gwclient import (
    AuthRejected,
    ConnectError,
    GatewayConfig,
    GatewayUnavailable,
    PairingRequired,
    ProtocolError,
    RequestError,
    RetryPolicy,
    SeqGap,
)
from gwclient._core.frames import (
    ConnectChallenge,
    ErrorShape,
    EventFrame,
    HelloOk,
    RequestFrame,
    ResponseFrame,
    StateVersion,
    decode_error_shape,
    decode_frame,
    encode_frame,
)
from gwclient._core.handshake import Credentials, build_connect_params
from gwclient._core.protocol import (
    TWO_STAGE_METHODS,
    PendingTable,
    SeqTracker,
    connect_error_from_close,
    error_from_shape,
    new_request_id,
)
from gwclient._errors import openclaw_command
from gwclient.device import DeviceIdentity, StoredDeviceToken
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
            verify_device_proof({**wire, key: value}, str(value) if key == "role" else "node", CHALLENGE.nonce,
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


def _shape(code: str, details: Mapping[str, object] | None = None, *, retryable: bool | None = None,
           message: str = "m", retry_after_ms: int | None = None) -> ErrorShape:
    return ErrorShape(code=code, message=message, details=dict(details) if details is not None else None,
                      retryable=retryable,
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
    assert err.approve_command == openclaw_command("devices", "approve", "req-9")
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
    assert cast(RequestError, error_from_shape(_shape("X", {"code": 5}))).detail_code == ""
    shape = _shape("X", {"recommendedNextStep": "review_auth_configuration"})
    connect = cast(ConnectError, error_from_shape(shape, connect=True))
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


# ------------------------------------------------------- the decoder's exact messages

_HELLO = '"type":"hello-ok","protocol":4'


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "frame is not a JSON object (got list)"),
    ('{"type":"ack"}', "unknown frame type 'ack'"),
    ('{"type":"res","ok":true}', "res frame: missing required field 'id'"),
    ('{"type":"res","id":1,"ok":true}', "res frame: field 'id' has the wrong type (int)"),
    ('{"type":"res","id":"1","ok":1}', "res frame: field 'ok' has the wrong type (int)"),
    ('{"type":"res","id":"1","ok":false}', "res frame with ok:false: missing required field 'error'"),
    ('{"type":"res","id":"1","ok":false,"error":[]}',
     "res frame with ok:false: field 'error' has the wrong type (list)"),
    ('{"type":"event","event":"e","seq":true}', "event frame: field 'seq' has the wrong type (bool)"),
    ('{"type":"event","event":"e","seq":-1}', "event frame: negative seq"),
    ('{"type":"event","event":"e","stateVersion":{"health":"1"}}',
     "event stateVersion: field 'health' has the wrong type (str)"),
    ('{"type":"event","event":"e","stateVersion":{"presence":1.5}}',
     "event stateVersion: field 'presence' has the wrong type (float)"),
    ('{"type":"event","event":"e","stateVersion":7}', "event frame: field 'stateVersion' has the wrong type (int)"),
    ('{"type":"req","id":"1"}', "req frame: missing required field 'method'"),
])
def test_decoder_messages(text: str, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(text)
    assert str(info.value) == message


@pytest.mark.parametrize(("error", "message"), [
    ("{}", "error shape: missing required field 'code'"),
    ('{"code":1}', "error shape: field 'code' has the wrong type (int)"),
    ('{"code":"X","message":5}', "error shape: field 'message' has the wrong type (int)"),
    ('{"code":"X","details":[]}', "error shape: field 'details' has the wrong type (list)"),
    ('{"code":"X","retryable":"yes"}', "error shape: field 'retryable' has the wrong type (str)"),
    ('{"code":"X","retryAfterMs":true}', "error shape: field 'retryAfterMs' has the wrong type (bool)"),
    ('{"code":"X","retryAfterMs":"5"}', "error shape: field 'retryAfterMs' has the wrong type (str)"),
])
def test_error_shape_messages(error: str, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame('{"type":"res","id":"1","ok":false,"error":' + error + "}")
    assert str(info.value) == message


def test_error_shape_not_an_object() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_error_shape(5)
    assert str(info.value) == "error shape is not an object"


def test_error_shape_optional_fields() -> None:
    frame = decode_frame('{"type":"res","id":"1","ok":false,"error":{"code":"X"}}')
    assert isinstance(frame, ResponseFrame) and frame.error == ErrorShape(code="X", message="")
    nulls = decode_frame('{"type":"res","id":"1","ok":false,"error":{"code":"X","message":null,"details":null,'
                         '"retryable":null,"retryAfterMs":null}}')
    assert isinstance(nulls, ResponseFrame) and nulls.error == ErrorShape(code="X", message="")
    full = decode_frame('{"type":"req","id":"7","method":"m","params":[1]}')
    assert full == RequestFrame(id="7", method="m", params=[1])


@pytest.mark.parametrize(("payload", "message"), [
    ([], "hello-ok payload is not an object"),
    ({"type": "hello"}, "connect answered with 'hello', not hello-ok"),
    ({}, "connect answered with None, not hello-ok"),
    ({"type": "hello-ok"}, "hello-ok: missing required field 'protocol'"),
    ({"type": "hello-ok", "protocol": 4, "policy": []}, "hello-ok: field 'policy' has the wrong type (list)"),
    ({"type": "hello-ok", "protocol": 4, "server": {"connId": 1}},
     "hello-ok.server: field 'connId' has the wrong type (int)"),
    ({"type": "hello-ok", "protocol": 4, "server": {"buildId": 1}},
     "hello-ok.server: field 'buildId' has the wrong type (int)"),
    ({"type": "hello-ok", "protocol": 4, "server": {"bootId": []}},
     "hello-ok.server: field 'bootId' has the wrong type (list)"),
    ({"type": "hello-ok", "protocol": 4, "features": {"events": "e"}},
     "hello-ok.features: field 'events' must be a list of strings"),
    ({"type": "hello-ok", "protocol": 4, "features": {"capabilities": [None]}},
     "hello-ok.features: field 'capabilities' must be a list of strings"),
    ({"type": "hello-ok", "protocol": 4, "policy": {"maxBufferedBytes": 1.5}},
     "hello-ok.policy: field 'maxBufferedBytes' has the wrong type (float)"),
    ({"type": "hello-ok", "protocol": 4, "auth": {"method": 1}},
     "hello-ok.auth: field 'method' has the wrong type (int)"),
    ({"type": "hello-ok", "protocol": 4, "auth": {"issuedAtMs": "1"}},
     "hello-ok.auth: field 'issuedAtMs' has the wrong type (str)"),
    ({"type": "hello-ok", "protocol": 4, "auth": {"scopes": [1]}},
     "hello-ok.auth: field 'scopes' must be a list of strings"),
])
def test_hello_ok_messages(payload: object, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        HelloOk.from_payload(payload)
    assert str(info.value) == message


def test_hello_ok_values_are_kept() -> None:
    hello = HelloOk.from_payload({
        "type": "hello-ok", "protocol": 4,
        "server": {"version": "2026.9.6", "connId": "c1", "buildId": "b", "bootId": "boot"},
        "features": {"methods": ["health"], "events": ["tick"], "capabilities": ["x"]},
        "snapshot": {"presence": []},
        "policy": {"maxPayload": 1, "maxBufferedBytes": 2, "tickIntervalMs": 3},
        "auth": {"role": "node", "scopes": ["operator.read"], "method": "token", "deviceToken": "dt",
                 "issuedAtMs": 5},
    })
    assert (hello.server.version, hello.server.conn_id, hello.server.build_id, hello.server.boot_id) == (
        "2026.9.6", "c1", "b", "boot")
    assert (hello.features.methods, hello.features.events, hello.features.capabilities) == (
        ["health"], ["tick"], ["x"])
    assert hello.snapshot == {"presence": []}
    assert (hello.policy.max_payload, hello.policy.max_buffered_bytes, hello.policy.tick_interval_ms) == (1, 2, 3)
    assert hello.auth is not None
    assert (hello.auth.role, hello.auth.scopes, hello.auth.method, hello.auth.device_token,
            hello.auth.issued_at_ms) == ("node", ["operator.read"], "token", "dt", 5)
    bare = HelloOk.from_payload({"type": "hello-ok", "protocol": 4, "auth": {}})
    assert bare.auth is not None and (bare.auth.role, bare.auth.scopes, bare.auth.method) == ("operator", [], None)
    assert (bare.server.version, bare.server.build_id, bare.policy.tick_interval_ms) == ("", None, 30_000)
    assert bare.policy.max_buffered_bytes == 52_428_800 and bare.features.capabilities == []


@pytest.mark.parametrize(("event", "payload", "message"), [
    ("tick", {"nonce": "n", "ts": 1}, "expected a connect.challenge event with an object payload"),
    ("connect.challenge", "x", "expected a connect.challenge event with an object payload"),
    ("connect.challenge", {"ts": 1}, "connect.challenge: missing required field 'nonce'"),
    ("connect.challenge", {"nonce": "n", "ts": "1"}, "connect.challenge: field 'ts' has the wrong type (str)"),
    ("connect.challenge", {"nonce": "n", "ts": -1}, "connect.challenge has an empty nonce or a negative ts"),
    ("connect.challenge", {"nonce": "", "ts": 1}, "connect.challenge has an empty nonce or a negative ts"),
    ("connect.challenge", {"nonce": "n", "ts": 1, "capabilities": "abc"},
     "connect.challenge: field 'capabilities' must be a list of strings"),
])
def test_challenge_messages(event: str, payload: object, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        ConnectChallenge.from_event(EventFrame(event=event, payload=payload))
    assert str(info.value) == message


def test_challenge_ts_zero_is_valid() -> None:
    challenge = ConnectChallenge.from_event(EventFrame(event="connect.challenge",
                                                       payload={"nonce": "n", "ts": 0, "capabilities": ["c"]}))
    assert challenge == ConnectChallenge(nonce="n", ts=0, capabilities=["c"])


def test_encode_frame_is_compact_utf8_and_drops_absent_params() -> None:
    assert encode_frame(RequestFrame(id="1", method="m", params={"a": "é", "b": [1, 2]})) == (
        '{"type":"req","id":"1","method":"m","params":{"a":"é","b":[1,2]}}')
    assert encode_frame(RequestFrame(id="2", method="m")) == '{"type":"req","id":"2","method":"m"}'
    with pytest.raises(ValueError, match=r"^request id must be a non-empty string$"):
        encode_frame(RequestFrame(id="", method="m"))


def test_connect_params_wire_drops_empty_auth_and_nulls() -> None:
    config = GatewayConfig(device_identity=False)
    wire = build_connect_params(config, CHALLENGE, Credentials(None, None)).to_wire()
    assert "auth" not in wire and "device" not in wire and None not in wire.values()
    assert "displayName" not in wire["client"]


# ------------------------------------------------------- refusal messages and codes


def test_refusal_messages_are_the_gateways() -> None:
    for details in ({"code": "AUTH_TOKEN_MISMATCH"}, {"code": "PROTOCOL_MISMATCH"}, {}):
        err = error_from_shape(_shape("INVALID_REQUEST", details, message="unauthorized: token mismatch"),
                               connect=True)
        assert str(err).startswith("unauthorized: token mismatch")
    plain = error_from_shape(_shape("INVALID_REQUEST", message="invalid connect params: x"), connect=True)
    assert str(plain) == "invalid connect params: x"


def test_close_during_handshake_messages_and_codes() -> None:
    no_reason = connect_error_from_close(1006, "")
    assert str(no_reason) == "gateway closed the connection during the handshake (1006)"
    assert no_reason.code == "CLOSED" and not no_reason.pauses_reconnect
    policy = connect_error_from_close(1008, "origin not allowed")
    assert str(policy) == "gateway closed the connection during the handshake (1008: origin not allowed)"
    assert policy.code == "CLOSED" and policy.pauses_reconnect
    mismatch = connect_error_from_close(1002, "")
    assert mismatch.code == "INVALID_REQUEST"
    assert str(mismatch).startswith("gateway closed the connection during the handshake (1002): ")


def test_retry_policy_messages() -> None:
    with pytest.raises(ValueError, match=r"^RetryPolicy needs 0 <= initial <= maximum and multiplier >= 1$"):
        RetryPolicy(initial=-1)
    with pytest.raises(ValueError, match=r"^RetryPolicy.jitter must be in \[0, 1\)$"):
        RetryPolicy(jitter=2)


@pytest.mark.parametrize(("text", "message"), [
    ('{"type":"req","id":5,"method":"m"}', "req frame: field 'id' has the wrong type (int)"),
    ('{"type":"event","event":5}', "event frame: field 'event' has the wrong type (int)"),
    ('{"type":"event"}', "event frame: missing required field 'event'"),
    ("[" * 50_000 + "]" * 50_000, "frame is nested too deeply"),
])
def test_more_decoder_messages(text: str, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(text)
    assert str(info.value) == message


def test_an_ok_response_has_no_error() -> None:
    frame = decode_frame('{"type":"res","id":"1","ok":true,"payload":{"a":1}}')
    assert isinstance(frame, ResponseFrame) and frame.error is None and frame.payload == {"a": 1}
    assert frame == ResponseFrame(id="1", ok=True, payload={"a": 1})


@pytest.mark.parametrize("key", ["server", "features", "snapshot", "policy", "auth"])
@pytest.mark.parametrize("bad", [[], "x", 1])
def test_hello_ok_sections_must_be_objects(key: str, bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        HelloOk.from_payload({"type": "hello-ok", "protocol": 4, key: bad})
    assert str(info.value) == f"hello-ok: field {key!r} has the wrong type ({type(bad).__name__})"


@pytest.mark.parametrize(("section", "key", "bad", "message"), [
    ("server", "version", 5, "hello-ok.server: field 'version' has the wrong type (int)"),
    ("features", "methods", "m", "hello-ok.features: field 'methods' must be a list of strings"),
    ("policy", "maxPayload", "1", "hello-ok.policy: field 'maxPayload' has the wrong type (str)"),
    ("policy", "tickIntervalMs", False, "hello-ok.policy: field 'tickIntervalMs' has the wrong type (bool)"),
    ("auth", "role", 1, "hello-ok.auth: field 'role' has the wrong type (int)"),
    ("auth", "deviceToken", 1, "hello-ok.auth: field 'deviceToken' has the wrong type (int)"),
])
def test_hello_ok_field_messages(section: str, key: str, bad: object, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        HelloOk.from_payload({"type": "hello-ok", "protocol": 4, section: {key: bad}})
    assert str(info.value) == message


def test_seq_zero_is_a_valid_seq() -> None:
    frame = decode_frame('{"type":"event","event":"e","seq":0}')
    assert isinstance(frame, EventFrame) and frame.seq == 0
