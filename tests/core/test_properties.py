"""Property-based tests (hypothesis) for the frame decoder and the pure protocol helpers.

Whatever arrives (arbitrary text or bytes, wrong types, huge numbers and strings, deep
nesting, unknown frame types, answers for unknown ids, duplicates) the result is a typed
value that equals what was sent, or a :class:`ProtocolError` / a dropped answer: never
another exception, never a coerced or wrong value.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gwclient import (
    ConnectError,
    GatewayError,
    GatewayUnavailable,
    PairingRequired,
    ProtocolError,
    ProtocolMismatch,
    RequestError,
    SeqGap,
)
from gwclient._core.frames import (
    ConnectChallenge,
    ErrorShape,
    EventFrame,
    HelloOk,
    RequestFrame,
    ResponseFrame,
    decode_error_shape,
    decode_frame,
)
from gwclient._core.protocol import PendingTable, SeqTracker, error_from_shape

settings.register_profile(
    "gwclient", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# scripts/mutation runs these against every mutant: fewer examples keep it within minutes.
settings.register_profile(
    "mutation", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("GWCLIENT_HYPOTHESIS_PROFILE", "gwclient"))

# ------------------------------------------------------------------------ strategies

big_ints = st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
scalars = st.none() | st.booleans() | big_ints | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
# Values of the wrong type for almost any field (a dict key's value of any JSON type).
any_field = json_values
frame_types = st.sampled_from(["res", "event", "req", "hello-ok", "RES", "", "ack"]) | st.text(max_size=6)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode(data: str | bytes) -> Any:
    """decode_frame, with the only allowed failure turned into a marker."""
    try:
        return decode_frame(data)
    except ProtocolError:
        return None


# ------------------------------------------------------------------------ decode_frame


@given(st.text() | st.binary())
@example("")
@example("null")
@example("[]")
@example('"res"')
@example("1" * 5000)  # more digits than int() accepts by default
@example('{"type":"res","id":"1","ok":false}')
@example(b"\xff\xfe\x00")
def test_arbitrary_text_or_bytes_is_a_frame_or_a_protocol_error(data: str | bytes) -> None:
    frame = _decode(data)
    assert frame is None or isinstance(frame, (ResponseFrame, EventFrame, RequestFrame))


@given(st.dictionaries(st.sampled_from(["type", "id", "ok", "payload", "error", "event", "seq",
                                        "stateVersion", "method", "params", "extra"]), any_field),
       frame_types)
def test_arbitrary_fields_decode_to_exactly_what_was_sent_or_fail(obj: dict[str, Any], kind: str) -> None:
    obj = {**obj, "type": kind}
    frame = _decode(json.dumps(obj))
    if frame is None:
        return
    assert kind in ("res", "event", "req")
    if isinstance(frame, ResponseFrame):
        assert kind == "res" and frame.id == obj["id"] and isinstance(frame.id, str)
        assert frame.ok is obj["ok"] and frame.payload == obj.get("payload")
        if frame.ok:
            assert frame.error is None
        else:
            assert isinstance(frame.error, ErrorShape) and frame.error.code == obj["error"]["code"]
    elif isinstance(frame, EventFrame):
        assert kind == "event" and frame.event == obj["event"] and isinstance(frame.event, str)
        assert frame.payload == obj.get("payload") and frame.seq == obj.get("seq")
        assert frame.seq is None or (_is_int(frame.seq) and frame.seq >= 0)
        if frame.state_version is not None:
            assert _is_int(frame.state_version.presence) and _is_int(frame.state_version.health)
    else:
        assert kind == "req" and frame.id == obj["id"] and frame.method == obj["method"]


wire_errors = st.fixed_dictionaries({
    "code": st.text(min_size=1),
    "message": st.text(),
    "details": st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "retryable": st.none() | st.booleans(),
    "retryAfterMs": st.none() | st.integers(min_value=0, max_value=10**20),
})


@given(st.text(min_size=1), st.booleans(), json_values, wire_errors)
def test_valid_responses_round_trip(rid: str, ok: bool, payload: Any, error: dict[str, Any]) -> None:
    obj = {"type": "res", "id": rid, "ok": ok, "payload": payload, "error": error, "newField": [1]}
    frame = decode_frame(json.dumps(obj))
    assert isinstance(frame, ResponseFrame) and (frame.id, frame.ok, frame.payload) == (rid, ok, payload)
    if not ok:
        assert frame.error == ErrorShape(error["code"], error["message"], error["details"], error["retryable"],
                                         error["retryAfterMs"])


@given(st.text(), json_values, st.none() | big_ints.filter(lambda n: n >= 0),
       st.none() | st.tuples(st.integers(min_value=0), st.integers(min_value=0)))
def test_valid_events_round_trip(name: str, payload: Any, seq: int | None,
                                 sv: tuple[int, int] | None) -> None:
    obj: dict[str, Any] = {"type": "event", "event": name, "payload": payload, "seq": seq}
    if sv is not None:
        obj["stateVersion"] = {"presence": sv[0], "health": sv[1]}
    frame = decode_frame(json.dumps(obj))
    assert isinstance(frame, EventFrame)
    assert (frame.event, frame.payload, frame.seq) == (name, payload, seq)
    if sv is None:
        assert frame.state_version is None
    else:
        assert frame.state_version is not None
        assert (frame.state_version.presence, frame.state_version.health) == sv


@pytest.mark.parametrize("depth", [100_000, 5_000, 2_000])
@pytest.mark.parametrize("where", ["frame", "payload", "error details"])
def test_deep_nesting_is_a_protocol_error(depth: int, where: str) -> None:
    for open_, close in (("[", "]"), ('{"a":', "}")):
        nested = open_ * depth + "1" + close * depth
        text = {
            "frame": nested,
            "payload": '{"type":"event","event":"e","payload":' + nested + "}",
            "error details": '{"type":"res","id":"1","ok":false,"error":{"code":"X","details":{"a":'
            + nested + "}}}",
        }[where]
        with pytest.raises(ProtocolError, match="nested too deeply"):
            decode_frame(text)


def test_moderate_nesting_is_delivered_intact() -> None:
    payload: Any = 1
    for _ in range(200):
        payload = [payload]
    frame = decode_frame(json.dumps({"type": "event", "event": "e", "payload": payload}))
    assert isinstance(frame, EventFrame) and frame.payload == payload


def test_huge_strings_and_numbers_are_kept_exactly() -> None:
    big = "x" * 2_000_000
    frame = decode_frame(json.dumps({"type": "res", "id": "1", "ok": True, "payload": {"s": big, "n": 10**300}}))
    assert isinstance(frame, ResponseFrame) and frame.payload == {"s": big, "n": 10**300}
    event = decode_frame('{"type":"event","event":"e","seq":' + "9" * 400 + "}")
    assert isinstance(event, EventFrame) and event.seq == int("9" * 400)
    with pytest.raises(ProtocolError):
        decode_frame('{"type":"event","event":"e","seq":' + "9" * 5000 + "}")
    for bad_seq in ("1.0", "1e3", "-1", "true", '"1"', "NaN", "Infinity"):
        with pytest.raises(ProtocolError):
            decode_frame('{"type":"event","event":"e","seq":' + bad_seq + "}")


# ------------------------------------------------------------------- error shapes


@given(any_field | st.dictionaries(st.sampled_from(["code", "message", "details", "retryable", "retryAfterMs", "x"]),
                                   any_field))
def test_decode_error_shape_types_are_exact(obj: Any) -> None:
    try:
        shape = decode_error_shape(obj)
    except ProtocolError:
        return
    assert isinstance(shape.code, str) and shape.code == obj["code"]
    assert isinstance(shape.message, str)
    assert shape.details is None or isinstance(shape.details, dict)
    assert shape.retryable is None or isinstance(shape.retryable, bool)
    assert shape.retry_after_ms is None or _is_int(shape.retry_after_ms)


error_shapes = st.builds(
    ErrorShape,
    code=st.sampled_from(["INVALID_REQUEST", "NOT_PAIRED", "UNAVAILABLE", "FORBIDDEN", ""]) | st.text(max_size=12),
    message=st.text(max_size=20) | st.just("protocol mismatch"),
    details=st.none() | st.dictionaries(
        st.sampled_from(["code", "requestId", "deviceId", "expectedProtocol", "pauseReconnect",
                         "recommendedNextStep", "reason"]) | st.text(max_size=6),
        st.sampled_from(["PAIRING_REQUIRED", "PROTOCOL_MISMATCH", "AUTH_TOKEN_MISMATCH",
                         "DEVICE_IDENTITY_REQUIRED", "wait_then_retry"]) | json_values,
        max_size=4),
    retryable=st.none() | st.booleans(),
    retry_after_ms=st.none() | st.integers(min_value=0, max_value=10**15),
)


@given(error_shapes, st.sampled_from(["", "connect", "echo", "agent"]), st.booleans())
@example(ErrorShape(code="NOT_PAIRED", message="protocol mismatch", details={"code": "PROTOCOL_MISMATCH"}),
         "connect", False)
@example(ErrorShape(code="INVALID_REQUEST", message="protocol mismatch", details={"code": "PAIRING_REQUIRED"}),
         "connect", True)
def test_every_error_shape_maps_to_a_gateway_error_with_its_fields(shape: ErrorShape, method: str,
                                                                  connect: bool) -> None:
    err = error_from_shape(shape, method=method, connect=connect)
    assert isinstance(err, GatewayError) and isinstance(str(err), str)
    assert isinstance(err, (ConnectError, RequestError))
    assert err.code == shape.code and err.details == (shape.details or {})
    assert err.retry_after_ms == shape.retry_after_ms and err.retryable is bool(shape.retryable)
    assert err.method == method
    if connect or method == "connect":
        assert isinstance(err, ConnectError)
        detail_code = (shape.details or {}).get("code")
        if detail_code == "PROTOCOL_MISMATCH":
            assert isinstance(err, ProtocolMismatch)
        if detail_code == "PAIRING_REQUIRED":
            assert isinstance(err, PairingRequired)
        if isinstance(err, ProtocolMismatch):
            expected = (shape.details or {}).get("expectedProtocol")
            assert err.client_protocol == 4 and err.server_protocol in (None, expected)
    else:
        assert isinstance(err, RequestError)
        assert isinstance(err, GatewayUnavailable) == (shape.code == "UNAVAILABLE")


# --------------------------------------------------------------- handshake payloads


@given(st.dictionaries(st.sampled_from(["nonce", "ts", "capabilities", "x"]), any_field),
       st.sampled_from(["connect.challenge", "tick"]))
def test_connect_challenge_is_exact_or_a_protocol_error(payload: dict[str, Any], name: str) -> None:
    try:
        challenge = ConnectChallenge.from_event(EventFrame(event=name, payload=payload))
    except ProtocolError:
        return
    assert name == "connect.challenge"
    assert challenge.nonce == payload["nonce"] and isinstance(challenge.nonce, str) and challenge.nonce
    assert challenge.ts == payload["ts"] and _is_int(challenge.ts) and challenge.ts >= 0
    assert challenge.capabilities == (payload.get("capabilities") or [])
    assert all(isinstance(c, str) for c in challenge.capabilities)


hello_parts = {
    "server": st.dictionaries(st.sampled_from(["version", "connId", "buildId", "bootId", "new"]), any_field),
    "features": st.dictionaries(st.sampled_from(["methods", "events", "capabilities"]),
                                st.lists(st.text(max_size=5), max_size=3) | any_field),
    "policy": st.dictionaries(st.sampled_from(["maxPayload", "maxBufferedBytes", "tickIntervalMs"]),
                              big_ints | any_field),
    "auth": st.dictionaries(st.sampled_from(["role", "scopes", "method", "deviceToken", "issuedAtMs"]),
                            st.lists(st.text(max_size=5), max_size=3) | any_field),
    "snapshot": any_field,
    "protocol": big_ints | any_field,
}


@given(st.fixed_dictionaries({}, optional=hello_parts), st.sampled_from(["hello-ok", "hello", None]))
@example({"protocol": 4, "auth": {"scopes": None}}, "hello-ok")
@example({"protocol": 4, "features": {"methods": "abc"}}, "hello-ok")
@example({"protocol": 4, "server": {"version": 5}}, "hello-ok")
def test_hello_ok_has_exact_types_or_is_a_protocol_error(payload: dict[str, Any], kind: str | None) -> None:
    try:
        hello = HelloOk.from_payload({**payload, "type": kind})
    except ProtocolError:
        return
    assert kind == "hello-ok" and hello.protocol == payload["protocol"] and _is_int(hello.protocol)
    for value in (hello.server.version, hello.server.conn_id):
        assert isinstance(value, str)
    for lst in (hello.features.methods, hello.features.events, hello.features.capabilities):
        assert isinstance(lst, list) and all(isinstance(x, str) for x in lst)
    for number in (hello.policy.max_payload, hello.policy.max_buffered_bytes, hello.policy.tick_interval_ms):
        assert _is_int(number)
    assert isinstance(hello.snapshot, dict)
    if hello.auth is not None:
        assert isinstance(hello.auth.role, str)
        assert isinstance(hello.auth.scopes, list) and all(isinstance(s, str) for s in hello.auth.scopes)
        assert hello.auth.scopes == (payload["auth"].get("scopes") or [])
        assert hello.auth.device_token is None or isinstance(hello.auth.device_token, str)
    raw_features = payload.get("features") or {}
    assert hello.features.methods == (raw_features.get("methods") or [])


def test_hello_ok_coercions_that_used_to_slip_through() -> None:
    base = {"type": "hello-ok", "protocol": 4}
    for bad in ({"features": {"methods": "abc"}}, {"features": {"events": [1]}},
                {"auth": {"scopes": "operator.read"}}, {"auth": {"role": 5}}, {"server": {"version": 5}},
                {"auth": {"deviceToken": 7}}, {"policy": {"tickIntervalMs": "30000"}},
                {"policy": {"maxPayload": True}}):
        with pytest.raises(ProtocolError):
            HelloOk.from_payload({**base, **bad})
    nulls = HelloOk.from_payload({**base, "auth": {"scopes": None}, "policy": {"maxPayload": None},
                                  "server": {"connId": None}})
    assert nulls.auth is not None and nulls.auth.scopes == []
    assert nulls.policy.max_payload == 26_214_400 and nulls.server.conn_id == ""


# ------------------------------------------------------------------------ SeqTracker


@given(st.lists(st.none() | st.integers(min_value=0, max_value=50), max_size=40))
def test_seq_tracker_matches_a_model(seqs: list[int | None]) -> None:
    tracker = SeqTracker()
    last: int | None = None
    for seq in seqs:
        gap = tracker.observe(seq)
        if seq is None:
            assert gap is None
            continue
        if last is not None and seq > last + 1:
            assert gap == SeqGap(expected=last + 1, received=seq)
        else:
            assert gap is None  # first event, next in line, a duplicate or an older one
        last = seq if last is None else max(last, seq)
        assert tracker.last == last


# ---------------------------------------------------------------------- PendingTable

ids = st.sampled_from(["1:a", "2:a", "3:a", "catalog:x", ""])
responses = st.builds(
    lambda rid, ok, status: ResponseFrame(
        id=rid, ok=ok, payload={"status": status} if ok else None,
        error=None if ok else ErrorShape(code="FORBIDDEN", message="no")),
    ids, st.booleans(), st.sampled_from(["accepted", "ok", "done"]))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ids, st.booleans()),
        st.tuples(st.just("res"), responses),
        st.tuples(st.just("remove"), ids),
        st.tuples(st.just("drain")),
    ),
    max_size=30,
)


@given(ops)
def test_pending_table_matches_a_model(operations: list[tuple[Any, ...]]) -> None:
    """Unknown ids and duplicate answers are dropped (``None``), a two-stage request keeps
    its interim ``accepted`` answer and settles on the next one, nothing is settled twice."""
    table: PendingTable[str] = PendingTable()
    model: dict[str, dict[str, Any]] = {}
    settled: list[str] = []
    for op in operations:
        if op[0] == "add":
            _, rid, final = op
            if rid in model:
                with pytest.raises(ValueError, match="duplicate"):
                    table.add(rid, "agent", f"w-{rid}", expect_final=final)
            else:
                table.add(rid, "agent", f"w-{rid}", expect_final=final)
                model[rid] = {"final": final, "accepted": False}
        elif op[0] == "res":
            frame: ResponseFrame = op[1]
            result = table.resolve(frame)
            entry = model.get(frame.id)
            if entry is None:
                assert result is None
            elif (frame.ok and entry["final"] and not entry["accepted"]
                  and frame.payload == {"status": "accepted"}):
                assert result is None
                entry["accepted"] = True
            else:
                assert result is not None
                pending, outcome = result
                assert pending.request_id == frame.id and pending.waiter == f"w-{frame.id}"
                if frame.ok:
                    assert outcome == frame.payload
                else:
                    assert isinstance(outcome, RequestError) and outcome.method == "agent"
                del model[frame.id]
                settled.append(frame.id)
        elif op[0] == "remove":
            removed = table.remove(op[1])
            assert (removed is not None) == (op[1] in model)
            model.pop(op[1], None)
        else:
            drained = table.drain()
            assert sorted(p.request_id for p in drained) == sorted(model)
            model.clear()
        assert len(table) == len(model)
        for rid in ("1:a", "2:a", "3:a", "catalog:x", ""):
            assert (rid in table) == (rid in model)
