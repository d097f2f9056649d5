"""The pure protocol core: frames, pending table, seq gaps, error mapping, device payload.
Plain asserts, no sockets, no threads (frames as shown in PROTOCOL.md)."""

from __future__ import annotations

import json

import pytest

from gwclient import (
    AuthRejected,
    ConnectError,
    GatewayUnavailable,
    MissingScope,
    PairingRequired,
    ProtocolError,
    ProtocolMismatch,
    RetryPolicy,
    SeqGap,
    UnsupportedMethod,
)
from gwclient._core.frames import (
    AuthParams,
    ClientInfo,
    ConnectChallenge,
    ConnectParams,
    DeviceProof,
    ErrorShape,
    EventFrame,
    HelloOk,
    RequestFrame,
    ResponseFrame,
    decode_frame,
    encode_frame,
)
from gwclient._core.protocol import (
    PendingTable,
    SeqTracker,
    connect_error_from_close,
    device_auth_payload_v3,
    error_from_shape,
    new_request_id,
)
from gwclient._errors import openclaw_command

HELLO = {
    "type": "hello-ok",
    "protocol": 4,
    "server": {"version": "2026.9.6", "connId": "c1", "bootId": "b"},
    "features": {"methods": ["health", "status"], "events": ["tick"], "capabilities": ["x"]},
    "snapshot": {"presence": [], "health": {}, "stateVersion": {"presence": 3, "health": 2},
                 "uptimeMs": 10},
    "policy": {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 30000},
    "auth": {"method": "token", "role": "operator", "scopes": ["operator.read"],
             "deviceToken": "dt-secret", "issuedAtMs": 5},
    "futureField": {"ignored": True},
}


# ------------------------------------------------------------------------ frames


def test_decode_response_ok_and_error() -> None:
    ok = decode_frame('{"type":"res","id":"1:a","ok":true,"payload":{"x":1},"extra":1}')
    assert isinstance(ok, ResponseFrame) and ok.ok and ok.payload == {"x": 1}
    bad = decode_frame(json.dumps({
        "type": "res", "id": "2", "ok": False,
        "error": {"code": "FORBIDDEN", "message": "missing scope: operator.read",
                  "details": {"code": "MISSING_SCOPE", "missingScope": "operator.read"},
                  "retryable": False, "retryAfterMs": 0},
    }))
    assert isinstance(bad, ResponseFrame) and not bad.ok
    assert bad.error == ErrorShape("FORBIDDEN", "missing scope: operator.read",
                                   {"code": "MISSING_SCOPE", "missingScope": "operator.read"}, False, 0)


def test_decode_event_with_seq_and_state_version() -> None:
    frame = decode_frame(b'{"type":"event","event":"presence","payload":{"presence":[]},'
                         b'"seq":7,"stateVersion":{"presence":4,"health":2}}')
    assert isinstance(frame, EventFrame)
    assert (frame.event, frame.seq) == ("presence", 7)
    assert frame.state_version is not None and frame.state_version.presence == 4


def test_decode_request_frame() -> None:
    frame = decode_frame('{"type":"req","id":"x","method":"node.invoke","params":{}}')
    assert isinstance(frame, RequestFrame) and frame.method == "node.invoke"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not json", "not valid JSON"),
        ("[1,2]", "not a JSON object"),
        ('"str"', "not a JSON object"),
        ('{"type":"bogus"}', "unknown frame type"),
        ("{}", "unknown frame type"),
        ('{"type":"res","ok":true}', "'id'"),
        ('{"type":"res","id":"1"}', "'ok'"),
        ('{"type":"res","id":1,"ok":true}', "'id' has the wrong type"),
        ('{"type":"res","id":"1","ok":"yes"}', "'ok' has the wrong type"),
        ('{"type":"res","id":"1","ok":false}', "'error'"),
        ('{"type":"res","id":"1","ok":false,"error":{"message":"m"}}', "'code'"),
        ('{"type":"event"}', "'event'"),
        ('{"type":"event","event":"tick","seq":-1}', "negative seq"),
        ('{"type":"event","event":"tick","seq":true}', "'seq' has the wrong type"),
        ('{"type":"event","event":"tick","seq":"3"}', "'seq' has the wrong type"),
        ('{"type":"req","id":"1"}', "'method'"),
    ],
)
def test_decode_rejects_malformed_frames(text: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(text)
    assert fragment in str(info.value)


def test_encode_request_emits_only_schema_keys() -> None:
    assert json.loads(encode_frame(RequestFrame("1:a", "health"))) == {
        "type": "req", "id": "1:a", "method": "health"}
    assert json.loads(encode_frame(RequestFrame("2", "echo", {"a": [1]}))) == {
        "type": "req", "id": "2", "method": "echo", "params": {"a": [1]}}
    with pytest.raises(ValueError):
        encode_frame(RequestFrame("", "health"))


def test_connect_params_wire_shape() -> None:
    params = ConnectParams(
        client=ClientInfo(id="cli", version="0.1.0", platform="linux", mode="cli"),
        scopes=["operator.read"],
        auth=AuthParams(token="T"),
        device=DeviceProof(id="d", public_key="pk", signature="sig", signed_at=5, nonce="n"),
    )
    assert params.to_wire() == {
        "minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": ["operator.read"],
        "caps": [], "auth": {"token": "T"},
        "client": {"id": "cli", "version": "0.1.0", "platform": "linux", "mode": "cli"},
        "device": {"id": "d", "publicKey": "pk", "signature": "sig", "signedAt": 5, "nonce": "n"},
    }
    bare = ConnectParams(client=ClientInfo(id="cli", version="1", platform="p", mode="cli"),
                         auth=AuthParams())
    assert "auth" not in bare.to_wire() and "device" not in bare.to_wire()
    assert "T" not in repr(AuthParams(token="T", password="P"))


def test_auth_signing_token_precedence() -> None:
    assert AuthParams(token="a", device_token="b").signing_token == "a"
    assert AuthParams(device_token="b", bootstrap_token="c").signing_token == "b"
    assert AuthParams(bootstrap_token="c").signing_token == "c"
    assert AuthParams(password="p").signing_token == ""


def test_connect_challenge() -> None:
    frame = decode_frame('{"type":"event","event":"connect.challenge",'
                         '"payload":{"nonce":"abc","ts":1700000000000,"capabilities":["m"]}}')
    assert isinstance(frame, EventFrame)
    challenge = ConnectChallenge.from_event(frame)
    assert (challenge.nonce, challenge.ts, challenge.capabilities) == ("abc", 1700000000000, ["m"])
    for payload in ({"nonce": "a"}, {"nonce": "a", "ts": -1}, {"nonce": "", "ts": 1}, {"ts": 1}):
        with pytest.raises(ProtocolError):
            ConnectChallenge.from_event(EventFrame("connect.challenge", payload))
    with pytest.raises(ProtocolError):
        ConnectChallenge.from_event(EventFrame("tick", {"nonce": "a", "ts": 1}))


def test_hello_ok_decoding() -> None:
    hello = HelloOk.from_payload(HELLO)
    assert hello.protocol == 4 and hello.server.conn_id == "c1"
    assert hello.policy.tick_interval_ms == 30000 and hello.features.methods == ["health", "status"]
    assert hello.auth is not None and hello.auth.device_token == "dt-secret"
    assert "dt-secret" not in repr(hello)
    assert hello.snapshot["stateVersion"] == {"presence": 3, "health": 2}
    minimal = HelloOk.from_payload({"type": "hello-ok", "protocol": 4})
    assert minimal.auth is None and minimal.policy.max_payload == 26214400
    with pytest.raises(ProtocolError):
        HelloOk.from_payload({"type": "hello-ok"})
    with pytest.raises(ProtocolError):
        HelloOk.from_payload({"type": "other", "protocol": 4})
    with pytest.raises(ProtocolError):
        HelloOk.from_payload({"type": "hello-ok", "protocol": 4, "policy": {"tickIntervalMs": "x"}})
    with pytest.raises(ProtocolError):
        HelloOk.from_payload([])


# ----------------------------------------------------------------------- pending


def test_request_ids_are_unique_strings() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(isinstance(i, str) and i for i in ids)


def _res(rid: str, ok: bool = True, payload: object = None, error: dict[str, object] | None = None) -> ResponseFrame:
    frame = decode_frame(json.dumps({"type": "res", "id": rid, "ok": ok, "payload": payload,
                                     **({"error": error} if error else {})}))
    assert isinstance(frame, ResponseFrame)
    return frame


def test_pending_table_resolves_and_ignores_unknown_ids() -> None:
    table: PendingTable[str] = PendingTable()
    table.add("a", "health", "waiter-a")
    table.add("b", "status", "waiter-b")
    with pytest.raises(ValueError):
        table.add("a", "x", "dup")
    assert table.resolve(_res("catalog:conn")) is None
    done = table.resolve(_res("b", payload={"ok": True}))
    assert done is not None and done[0].waiter == "waiter-b" and done[1] == {"ok": True}
    failed = table.resolve(_res("a", ok=False, error={"code": "UNAVAILABLE", "message": "busy",
                                                      "retryable": True, "retryAfterMs": 250}))
    assert failed is not None and isinstance(failed[1], GatewayUnavailable)
    assert failed[1].retry_after_ms == 250 and failed[1].method == "health"
    assert len(table) == 0


def test_pending_table_two_stage() -> None:
    table: PendingTable[str] = PendingTable()
    table.add("r", "agent", "w", expect_final=True)
    table.add("s", "status", "w2")
    assert table.resolve(_res("r", payload={"status": "accepted", "runId": "1"})) is None
    assert "r" in table
    final = table.resolve(_res("r", payload={"status": "ok", "runId": "1"}))
    assert final is not None and final[1] == {"status": "ok", "runId": "1"}
    # Without expect_final the first answer is the answer.
    first = table.resolve(_res("s", payload={"status": "accepted"}))
    assert first is not None and first[1] == {"status": "accepted"}


def test_pending_table_remove_and_drain() -> None:
    table: PendingTable[int] = PendingTable()
    for i in range(3):
        table.add(str(i), "m", i)
    assert table.remove("1") is not None and table.remove("1") is None
    assert sorted(p.waiter for p in table.drain()) == [0, 2]
    assert len(table) == 0


# ---------------------------------------------------------------------------- seq


def test_seq_tracker_detects_gaps_and_resets() -> None:
    seq = SeqTracker()
    assert seq.observe(None) is None
    assert seq.observe(5) is None  # first event on a socket: no gap whatever its number
    assert seq.observe(6) is None
    assert seq.observe(9) == SeqGap(expected=7, received=9)
    assert SeqGap(7, 9).missed == 2
    assert seq.observe(9) is None and seq.observe(8) is None  # duplicates / reordering
    assert seq.observe(10) is None
    seq.reset()
    assert seq.observe(1) is None  # a new socket restarts at 1: no false gap


# ------------------------------------------------------------------ error mapping


def _shape(code: str, details: dict[str, object] | None = None, **kw: object) -> ErrorShape:
    return ErrorShape(code, kw.pop("message", "msg"), details, kw.get("retryable"),  # type: ignore[arg-type]
                      kw.get("retry_after_ms"))  # type: ignore[arg-type]


def test_connect_error_mapping() -> None:
    auth = error_from_shape(_shape("INVALID_REQUEST", {"code": "AUTH_TOKEN_MISMATCH",
                                                       "recommendedNextStep": "update_auth_credentials"}),
                            connect=True)
    assert isinstance(auth, AuthRejected) and auth.pauses_reconnect
    assert auth.detail_code == "AUTH_TOKEN_MISMATCH"
    assert auth.recommended_next_step == "update_auth_credentials"

    limited = error_from_shape(_shape("INVALID_REQUEST", {"code": "AUTH_RATE_LIMITED"},
                                      retryable=True, retry_after_ms=60000), connect=True)
    assert isinstance(limited, AuthRejected) and limited.pauses_reconnect

    pairing = error_from_shape(_shape("NOT_PAIRED", {"code": "PAIRING_REQUIRED", "requestId": "req-1",
                                                     "deviceId": "dev-1", "reason": "not-paired"},
                                      message="device pairing required"), connect=True)
    assert isinstance(pairing, PairingRequired) and pairing.pauses_reconnect
    assert (pairing.request_id, pairing.device_id) == ("req-1", "dev-1")
    assert "openclaw devices approve req-1" in str(pairing)
    assert pairing.approve_command == openclaw_command("devices", "approve", "req-1")

    waiting = error_from_shape(_shape("NOT_PAIRED", {"code": "PAIRING_REQUIRED",
                                                     "recommendedNextStep": "wait_then_retry"}),
                               connect=True)
    assert isinstance(waiting, PairingRequired) and not waiting.pauses_reconnect

    identity = error_from_shape(_shape("NOT_PAIRED", {"code": "DEVICE_IDENTITY_REQUIRED"}), connect=True)
    assert isinstance(identity, AuthRejected) and identity.pauses_reconnect

    mismatch = error_from_shape(_shape("INVALID_REQUEST", {"code": "PROTOCOL_MISMATCH"}), connect=True)
    assert isinstance(mismatch, ProtocolMismatch) and mismatch.pauses_reconnect

    starting = error_from_shape(_shape("UNAVAILABLE", {"reason": "startup-sidecars"}, retryable=True,
                                       retry_after_ms=500), connect=True)
    assert type(starting) is ConnectError and not starting.pauses_reconnect
    assert starting.retry_after_ms == 500

    invalid = error_from_shape(_shape("INVALID_REQUEST", message="invalid connect params"), connect=True)
    assert type(invalid) is ConnectError and invalid.pauses_reconnect


def test_request_error_mapping() -> None:
    forbidden = error_from_shape(_shape("FORBIDDEN", {"code": "MISSING_SCOPE"}), method="status")
    assert type(forbidden) is MissingScope and forbidden.detail_code == "MISSING_SCOPE"
    assert forbidden.code == "FORBIDDEN" and forbidden.method == "status"
    busy = error_from_shape(_shape("UNAVAILABLE", retryable=True), method="x")
    assert isinstance(busy, GatewayUnavailable) and busy.retryable
    unknown = error_from_shape(_shape("INVALID_REQUEST", message="unknown method: nope"))
    assert type(unknown) is UnsupportedMethod and str(unknown) == "unknown method: nope"


def test_close_during_handshake_mapping() -> None:
    assert isinstance(connect_error_from_close(1002, "protocol mismatch"), ProtocolMismatch)
    policy = connect_error_from_close(1008, "origin not allowed")
    assert policy.pauses_reconnect and "1008: origin not allowed" in str(policy)
    assert not connect_error_from_close(1013, "gateway starting").pauses_reconnect
    assert not connect_error_from_close(1012, "service restart").pauses_reconnect


# -------------------------------------------------------------- device payload v3


def test_device_auth_payload_v3() -> None:
    payload = device_auth_payload_v3(
        device_id="abc", client_id="cli", client_mode="cli", role="operator",
        scopes=["operator.admin", "operator.read"], signed_at_ms=1700000000123, token="tok",
        nonce="n-1", platform=" Linux ", device_family="ÄPhone",
    )
    assert payload == "v3|abc|cli|cli|operator|operator.admin,operator.read|1700000000123|tok|n-1|linux|Äphone"
    empty = device_auth_payload_v3(device_id="d", client_id="cli", client_mode="cli", role="operator",
                                   scopes=[], signed_at_ms=1, token="", nonce="n", platform=None,
                                   device_family=None)
    assert empty == "v3|d|cli|cli|operator||1||n||"


# -------------------------------------------------------------------- retry policy


def test_retry_policy_backoff_and_jitter() -> None:
    exact = RetryPolicy(initial=0.5, multiplier=2, maximum=30, jitter=0)
    assert [exact.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert exact.delay(0, floor=2.0) == 2.0
    low = RetryPolicy(jitter=0.2, rng=lambda: 0.0)
    high = RetryPolicy(jitter=0.2, rng=lambda: 0.999999)
    assert low.delay(1) == pytest.approx(0.8) and high.delay(1) == pytest.approx(1.2, rel=1e-3)
    assert high.delay(10) == 30.0
    with pytest.raises(ValueError):
        RetryPolicy(initial=2, maximum=1)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)
