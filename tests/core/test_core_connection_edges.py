"""Edge cases of the socket-free session core (_session, _effects, _encode, _deadline) that
mutation testing (scripts/mutation) showed no other test pinned down.  Plain asserts: no
threads, no sockets, no clock waits."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from _coreutil import build, challenge, connected, event, hello, pushes, refuse, res, sent, settles

from gwclient import (
    ClientClosed,
    ConfigError,
    ConnectError,
    ConnectionState,
    Disconnected,
    Event,
    ProtocolError,
    ProtocolMismatch,
    Snapshot,
    StateChange,
    UsageError,
)
from gwclient._core import encode as _encode
from gwclient._core.connection import ConnectionCore, describe
from gwclient._core.deadline import MAX_TIMEOUT, check_timeout
from gwclient._core.effects import (
    MAX_PAYLOAD_RANGE,
    RESTART_HINT_MAX_MS,
    TICK_MS_RANGE,
    AttemptEnded,
    CloseSocket,
    Connected,
    Effect,
    Lost,
    OpenSocket,
    Ping,
    Publish,
    Send,
    SessionLimits,
    Settle,
    StickyAnswer,
    Timer,
    clamp_hello,
)
from gwclient._core.encode import check_method, encode_request
from gwclient._core.frames import ConnectChallenge, HelloOk
from gwclient._core.held import held_size
from gwclient._core.retry import RetryPolicy
from gwclient._engine.waiter import Deadline
from gwclient._errors import ChannelRetired

# ------------------------------------------------------------------------- _encode


@pytest.fixture
def fresh_method_cache() -> Iterator[set[str]]:
    saved = set(_encode._valid_methods)
    _encode._valid_methods.clear()
    yield _encode._valid_methods
    _encode._valid_methods.clear()
    _encode._valid_methods.update(saved)


def test_check_method_accepts_and_caches_valid_names(fresh_method_cache: set[str]) -> None:
    assert check_method("health") == "health"
    assert fresh_method_cache == {"health"}
    assert check_method("health") == "health"  # from the cache
    name = "m" * 256
    assert check_method(name) == name


@pytest.mark.parametrize("method", [None, 3, b"health", ""])
def test_check_method_refuses_non_strings_and_empty(method: object, fresh_method_cache: set[str]) -> None:
    with pytest.raises(UsageError, match=r"^method must be a non-empty string$"):
        check_method(method)
    assert fresh_method_cache == set()


@pytest.mark.parametrize("method", ["m" * 257, "a b", "a\x07b", "tab\there", "\u2028x", " "])
def test_check_method_refuses_long_unprintable_and_spaced_names(method: str, fresh_method_cache: set[str]) -> None:
    with pytest.raises(UsageError) as info:
        check_method(method)
    assert str(info.value) == f"method {method[:40]!r} is not a valid gateway method name"
    with pytest.raises(UsageError):  # never cached
        check_method(method)
    assert fresh_method_cache == set()


def test_check_method_cache_is_bounded(fresh_method_cache: set[str]) -> None:
    for i in range(1100):
        assert check_method(f"m.{i}") == f"m.{i}"
    assert len(fresh_method_cache) == 1024
    assert "m.1023" in fresh_method_cache and "m.1024" not in fresh_method_cache


def test_encode_request_is_compact_utf8_and_drops_absent_params() -> None:
    assert encode_request("r1", "health", None) == b'{"type":"req","id":"r1","method":"health"}'
    data = encode_request("r2", "chat.send", {"text": "caf\u00e9", "n": [1, 2]})
    assert data == '{"type":"req","id":"r2","method":"chat.send","params":{"text":"café","n":[1,2]}}'.encode()
    assert encode_request("r3", "x", {}) == b'{"type":"req","id":"r3","method":"x","params":{}}'
    assert encode_request("r4", "x", 0) == b'{"type":"req","id":"r4","method":"x","params":0}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_encode_request_refuses_nan_and_infinity(bad: float) -> None:
    with pytest.raises(UsageError, match=r"^params for echo are not JSON: Out of range float values"):
        encode_request("r", "echo", {"x": bad})


def test_encode_request_refuses_what_json_cannot_encode() -> None:
    with pytest.raises(UsageError, match=r"^params for echo are not JSON: Object of type set"):
        encode_request("r", "echo", {"x": {1}})
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(UsageError, match=r"^params for echo are not JSON: Circular reference detected$"):
        encode_request("r", "echo", circular)


def test_encode_request_refuses_deep_nesting_with_its_own_message() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(UsageError) as info:
        encode_request("r", "echo", deep)
    assert str(info.value) == "params for echo are nested too deeply to send"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_encode_request_escapes_lone_surrogates_and_then_everything_else() -> None:
    data = encode_request("r", "files.read", {"path": "a\udcffb", "t": "\u00e9"})
    assert data == b'{"type":"req","id":"r","method":"files.read","params":{"path":"a\\udcffb","t":"\\u00e9"}}'
    assert json.loads(data)["params"] == {"path": "a\udcffb", "t": "\u00e9"}


# ----------------------------------------------------------------------- _deadline


def test_check_timeout_normalises() -> None:
    assert check_timeout(None) is None
    assert check_timeout(float("inf")) is None
    assert check_timeout(5) == 5.0 and isinstance(check_timeout(5), float)
    assert check_timeout(0) == 0.0 and check_timeout(0.25) == 0.25
    assert check_timeout(MAX_TIMEOUT) == MAX_TIMEOUT == 1_000_000.0
    assert check_timeout(MAX_TIMEOUT + 1) == MAX_TIMEOUT
    assert check_timeout(1e300) == MAX_TIMEOUT and check_timeout(10**30) == MAX_TIMEOUT


@pytest.mark.parametrize(("value", "message"), [
    (True, "timeout must be a number of seconds or None, not bool"),
    (False, "timeout must be a number of seconds or None, not bool"),
    ("5", "timeout must be a number of seconds or None, not str"),
    (float("nan"), "timeout must be a number of seconds or None, not NaN"),
    (-1, "timeout must not be negative (got -1); use None to wait forever"),
    (-0.5, "timeout must not be negative (got -0.5); use None to wait forever"),
    (-float("inf"), "timeout must not be negative (got -inf); use None to wait forever"),
])
def test_check_timeout_refuses(value: object, message: str) -> None:
    with pytest.raises(UsageError) as info:
        check_timeout(value)
    assert str(info.value) == message
    with pytest.raises(UsageError, match=r"^connect timeout must"):
        check_timeout(value, "connect timeout")


def test_deadline_forever() -> None:
    d = Deadline(None)
    assert d.timeout is None and d.remaining() is None and not d.expired
    assert d.describe() == "in time"


def test_deadline_counts_down_from_now() -> None:
    before = time.monotonic()
    d = Deadline(100.0)
    after = time.monotonic()
    remaining = d.remaining()
    assert remaining is not None and 100.0 - (time.monotonic() - before) <= remaining <= 100.0
    assert d._end is not None and before + 100.0 <= d._end <= after + 100.0
    assert not d.expired and d.timeout == 100.0
    assert d.describe() == "within 100 s" and Deadline(0.5).describe() == "within 0.5 s"


def test_deadline_zero_is_expired_and_never_negative() -> None:
    d = Deadline(0)
    assert d.expired and d.remaining() == 0.0
    past = Deadline(1.0)
    past._end = time.monotonic() - 10.0
    assert past.remaining() == 0.0 and past.expired


# ------------------------------------------------------------------------ _effects


def test_session_limits_defaults() -> None:
    limits = SessionLimits()
    assert (limits.connect_timeout, limits.liveness_timeout, limits.ping_interval) == (15.0, None, None)
    assert (limits.max_early_events, limits.label, limits.scopes, limits.unreachable_hint) == (256, "gateway", (), "")


def test_effect_defaults() -> None:
    assert Publish(StateChange(ConnectionState.IDLE)).size == 0
    ended = AttemptEnded(ConnectionError("x"), False, True)
    assert ended.retry_after_ms is None and ended.close_code is None


def policy_hello(**policy: int) -> HelloOk:
    return HelloOk.from_payload(hello(**policy))


def test_clamp_bounds_are_inclusive() -> None:
    assert TICK_MS_RANGE == (1000, 3_600_000) and MAX_PAYLOAD_RANGE == (1024, 1 << 30)
    assert RESTART_HINT_MAX_MS == 3_600_000
    lo = clamp_hello(policy_hello(tickIntervalMs=999, maxPayload=1023, maxBufferedBytes=1023)).policy
    assert (lo.tick_interval_ms, lo.max_payload, lo.max_buffered_bytes) == (1000, 1024, 1024)
    hi = clamp_hello(policy_hello(tickIntervalMs=3_600_001, maxPayload=(1 << 30) + 1,
                                  maxBufferedBytes=(1 << 30) + 1)).policy
    assert (hi.tick_interval_ms, hi.max_payload, hi.max_buffered_bytes) == (3_600_000, 1 << 30, 1 << 30)
    edge = policy_hello(tickIntervalMs=1000, maxPayload=1024, maxBufferedBytes=1 << 30)
    assert clamp_hello(edge) is edge
    top = policy_hello(tickIntervalMs=3_600_000, maxPayload=1 << 30, maxBufferedBytes=1024)
    assert clamp_hello(top) is top


def test_clamp_keeps_everything_but_the_policy() -> None:
    raw = {**hello(tickIntervalMs=1, maxBufferedBytes=7), "auth": {"scopes": ["operator.read"]},
           "snapshot": {"a": 1}}
    original = HelloOk.from_payload(raw)
    clamped = clamp_hello(original)
    assert clamped is not original
    assert clamped.policy.max_payload == original.policy.max_payload == 1 << 20
    assert clamped.policy.max_buffered_bytes == 1024 and clamped.policy.tick_interval_ms == 1000
    assert dataclasses.replace(clamped, policy=original.policy) == original


# ------------------------------------------------------------------------ _session


LIMITS = SessionLimits(connect_timeout=2.0, label="gw", retry=RetryPolicy(jitter=0))


def ended_of(effects: list[Effect]) -> AttemptEnded:
    found = [e for e in effects if isinstance(e, AttemptEnded)]
    assert len(found) == 1
    return found[0]


def in_challenge(limits: SessionLimits = LIMITS, now: float = 0.0) -> ConnectionCore:
    s = ConnectionCore(limits)
    s.retry()
    s.opened(build, now)
    return s


def in_hello(limits: SessionLimits = LIMITS) -> tuple[ConnectionCore, str]:
    s = in_challenge(limits)
    connect = sent(s.received(challenge(), 0.0))[0]
    return s, connect["id"]


def test_set_state_publishes_changes_and_repeated_errors_only() -> None:
    s = ConnectionCore(LIMITS)
    assert s.set_state(ConnectionState.IDLE) == [] and s.set_state(ConnectionState.IDLE, "same") == []
    error = ConfigError("bad")
    out = s.set_state(ConnectionState.IDLE, "again", error)
    assert out == [Publish(StateChange(ConnectionState.IDLE, "again"))]
    assert isinstance(out[0], Publish) and isinstance(out[0].push, StateChange) and out[0].push.error is error
    out = s.set_state(ConnectionState.CONNECTING, "go")
    assert out == [Publish(StateChange(ConnectionState.CONNECTING, "go"))] and s.state == ConnectionState.CONNECTING


def test_liveness_and_ping_interval_follow_limits_and_ticks() -> None:
    assert ConnectionCore(SessionLimits()).liveness == 60.0  # no hello yet: the 30 s default tick
    assert ConnectionCore(SessionLimits(liveness_timeout=4.0)).liveness == 4.0
    assert ConnectionCore(SessionLimits()).ping_interval is None
    assert ConnectionCore(SessionLimits(ping_interval=7.0)).ping_interval == 7.0
    assert ConnectionCore(SessionLimits(liveness_timeout=3.0)).ping_interval == 1.0
    assert ConnectionCore(SessionLimits(liveness_timeout=60.0)).ping_interval is None  # exactly two ticks
    s, effects = connected(ConnectionCore(SessionLimits(liveness_timeout=1.5)), tickIntervalMs=1000)
    assert s.liveness == 1.5 and s.ping_interval == 0.5 and Timer("ping", 0.5) in effects
    s, _ = connected(ConnectionCore(SessionLimits(liveness_timeout=2.0)), tickIntervalMs=1000)
    assert s.ping_interval is None
    s, effects = connected(tickIntervalMs=1000)
    assert s.liveness == 2.0 and Timer("liveness", 2.0) in effects
    s, effects = connected(ConnectionCore(SessionLimits(ping_interval=7.0)))
    assert effects[-1] == Timer("ping", 7.0) and s.timer("ping", 1.0) == [Ping(), Timer("ping", 7.0)]


def test_refusal_names_shutdown_retirement_and_a_copy_of_the_pause() -> None:
    s = ConnectionCore(LIMITS)
    assert s.refusal() is None
    s.shutdown(ChannelRetired("config changed"))
    r = s.refusal()
    assert type(r) is ChannelRetired and str(r) == "this channel was retired by a config change"
    s = ConnectionCore(LIMITS)
    s.shutdown(ClientClosed("bye"))
    r = s.refusal()
    assert type(r) is ClientClosed and str(r) == "the gateway connection was shut down"
    s = ConnectionCore(LIMITS)
    s.retry()
    s.open_failed(ConfigError("bad url"))
    r = s.refusal()
    assert type(r) is ConfigError and str(r) == "bad url" and r is not s.paused
    assert s.await_connected(Future())[0].outcome.__class__ is ConfigError  # type: ignore[union-attr]


def test_retry_announces_the_attempt_and_clears_a_pause() -> None:
    s = ConnectionCore(LIMITS)
    s.retry()
    s.open_failed(ConfigError("bad"))
    assert s.paused is not None and s.state == ConnectionState.PAUSED
    out = s.retry()
    assert out == [Timer("reconnect", None), Publish(StateChange(ConnectionState.CONNECTING, "attempt 1")),
                   Timer("handshake", 2.0), OpenSocket(1, 2)]
    assert s.paused is None and s.phase == "opening" and s.refusal() is None
    assert s.retry() == []  # an attempt is in progress: nothing to do


def test_opened_arms_the_handshake_timer_and_stamps_the_time() -> None:
    s = ConnectionCore(LIMITS)
    s.retry()
    assert s.opened(build, 5.0) == [Timer("handshake", 2.0)] and s.last_rx == 5.0 and s.phase == "challenge"
    connect = sent(s.received(challenge(), 6.0))[0]
    assert s.last_rx == 6.0
    s.received(res(connect["id"], hello()), 7.0)
    assert s.timer("liveness", 60.0) == [Timer("liveness", 7.0)]


def test_open_failed_only_counts_while_opening() -> None:
    s = in_challenge()
    assert s.open_failed(ConnectionRefusedError()) == []
    s, _ = connected()
    assert s.open_failed(ConnectionRefusedError()) == []


def test_nothing_listening_fails_waiting_callers_until_the_first_connect() -> None:
    limits = SessionLimits(label="gw", unreachable_hint=" (is the tunnel up?)")
    s = ConnectionCore(limits)
    a: Future[Any] = Future()
    b: Future[Any] = Future()
    s.submit("a", "health", b"{}", a)
    s.await_connected(b)
    s.retry()
    out = s.open_failed(ConnectionRefusedError())
    assert out[0] == Timer("handshake", None) and s.phase == "idle"
    failed = settles(out)
    assert [f.waiter for f in failed] == [a, b]
    assert [str(f.outcome) for f in failed] == ["cannot connect to the gateway at gw: ConnectionRefusedError"
                                                " (is the tunnel up?)"] * 2
    assert all(type(f.outcome) is Disconnected for f in failed) and failed[0].outcome is not failed[1].outcome
    ended = ended_of(out)
    assert (ended.paused, ended.transport, ended.retry_after_ms, ended.close_code) == (False, True, None, None)
    assert s.waiting == {} and s.connect_waiters == [] and s.state == ConnectionState.RECONNECTING
    assert any(isinstance(e, Timer) and e.name == "reconnect" and e.delay for e in out)  # the core scheduled it
    assert s.attempts == 1
    out = s.open_failed(OSError("no route"))  # phase is idle now: ignored
    assert out == []
    s.retry()
    s.submit("c", "x", b"{}", Future())
    (settle,) = settles(s.open_failed(OSError("no route")))
    assert str(settle.outcome) == "cannot connect to the gateway at gw: no route (is the tunnel up?)"
    s, _ = connected(s)
    s.closed(1006, "")
    later: Future[Any] = Future()
    s.submit("l", "health", b"{}", later)
    s.retry()
    out = s.open_failed(ConnectionRefusedError("refused"))
    assert settles(out) == [] and "l" in s.waiting  # connected once: callers wait for the retry
    assert not ended_of(out).paused


def test_a_config_error_or_pausing_connect_error_pauses_and_fails_callers_with_copies() -> None:
    s = ConnectionCore(LIMITS)
    waiters = [Future[Any](), Future[Any]()]
    for i, w in enumerate(waiters):
        s.submit(f"w{i}", "health", b"{}", w)
    s.retry()
    error = ConfigError("bad token file")
    out = s.open_failed(error)
    ended = ended_of(out)
    assert ended.paused and ended.error is error and s.paused is error
    assert [type(f.outcome) for f in settles(out)] == [ConfigError, ConfigError]
    assert all(f.outcome is not error and str(f.outcome) == "bad token file" for f in settles(out))
    changes = [p for p in pushes(out) if isinstance(p, StateChange)]
    assert changes == [StateChange(ConnectionState.PAUSED, "bad token file")] and changes[0].error is error
    s2 = ConnectionCore(LIMITS)
    s2.retry()
    ended = ended_of(s2.open_failed(ConnectError("later", retry_after_ms=900, pauses_reconnect=False)))
    assert not ended.paused and ended.retry_after_ms == 900 and s2.paused is None


def test_events_before_the_challenge_are_kept_and_dropped_ones_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    s = in_challenge(SessionLimits(max_early_events=2, label="gw"))
    first = event("presence", 1, {"a": 1})
    assert s.received(first, 0.0) == []
    connect = sent(s.received(challenge(), 0.0))[0]
    for i in range(2, 6):
        s.received(event("presence", i), 0.0)
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        effects = s.received(res(connect["id"], hello()), 0.0)
    delivered = [(e.push.seq, e.size) for e in effects if isinstance(e, Publish) and isinstance(e.push, Event)]
    assert delivered == [(1, held_size(first)), (2, held_size(event("presence", 2)))]
    assert "dropped 3 events sent before hello-ok (more than 2)" in caplog.messages
    assert s._early == []


def test_a_new_socket_forgets_the_last_ones_early_events_and_drop_count(caplog: pytest.LogCaptureFixture) -> None:
    s = in_challenge(SessionLimits(max_early_events=1))
    s.received(event("presence", 1), 0.0)
    s.received(event("presence", 2), 0.0)
    s.closed(1006, "")
    s.retry()
    s.opened(build, 0.0)
    connect = sent(s.received(challenge(), 0.0))[0]
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        effects = s.received(res(connect["id"], hello()), 0.0)
    assert not any(isinstance(p, Event) for p in pushes(effects))
    assert not [m for m in caplog.messages if m.startswith("dropped")]


def test_events_outside_a_socket_are_ignored() -> None:
    s = ConnectionCore(LIMITS)
    assert s.received(event("tick", 1), 0.0) == []
    s.retry()
    assert s.received(event("tick", 1), 0.0) == []
    assert s._early == []
    s, _ = connected()
    s.closed(1006, "")
    assert s.received(event("tick", 9), 1.0) == [] and s._early == []


def test_a_bad_challenge_closes_with_1002_and_retries() -> None:
    s = in_challenge()
    bad = json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": "", "ts": 1}})
    out = s.received(bad, 0.0)
    assert out[0] == CloseSocket(1002, "bad challenge") and out[1] == Timer("handshake", None)
    ended = ended_of(out)
    assert isinstance(ended.error, ProtocolError) and not ended.paused and ended.transport and s.phase == "idle"


def test_a_signing_config_error_during_the_challenge_pauses() -> None:
    def refuse_to_sign(challenge: ConnectChallenge, request_id: str) -> bytes:
        raise ConfigError("device key unreadable")

    s = ConnectionCore(LIMITS)
    s.retry()
    s.opened(refuse_to_sign, 0.0)
    out = s.received(challenge(), 0.0)
    assert out[0] == CloseSocket(1002, "bad challenge")
    assert ended_of(out).paused and s.state == ConnectionState.PAUSED


def test_the_challenge_sends_the_built_connect_and_rearms_the_timer() -> None:
    seen: list[tuple[ConnectChallenge, str]] = []

    def record(ch: ConnectChallenge, request_id: str) -> bytes:
        seen.append((ch, request_id))
        return b"CONNECT " + request_id.encode()

    s = ConnectionCore(LIMITS)
    s.retry()
    s.opened(record, 0.0)
    out = s.received(challenge(), 0.0)
    (ch, rid), = seen
    assert ch.nonce == "n1" and ch.ts == 5 and rid == s._connect_id and rid
    assert out == [Send(b"CONNECT " + rid.encode()), Timer("handshake", 2.0)] and s.phase == "hello"


def test_a_refused_connect_closes_normally_and_is_not_a_transport_failure() -> None:
    s = ConnectionCore(LIMITS)
    out = refuse(s, {"code": "UNAVAILABLE", "message": "starting", "retryAfterMs": 5})
    assert out[0] == CloseSocket(1000, "") and not ended_of(out).transport


def test_a_malformed_hello_closes_with_1002() -> None:
    s, rid = in_hello()
    out = s.received(res(rid, {"type": "nope", "protocol": 4}), 0.0)
    assert out[0] == CloseSocket(1002, "bad hello-ok")
    ended = ended_of(out)
    assert isinstance(ended.error, ProtocolError) and ended.transport and not ended.paused
    assert s.hello is None and s.phase == "idle"


def test_a_hello_with_another_protocol_is_a_mismatch() -> None:
    s, rid = in_hello()
    out = s.received(res(rid, {**hello(), "protocol": 3}), 0.0)
    assert out[0] == CloseSocket(1002, "protocol mismatch")
    ended = ended_of(out)
    assert isinstance(ended.error, ProtocolMismatch) and ended.error.server_protocol == 3
    assert "hello-ok announced another protocol" in str(ended.error)
    assert not ended.transport and ended.paused and s.hello is None


def test_a_response_to_another_id_during_the_handshake_is_not_the_hello() -> None:
    s, rid = in_hello()
    assert s.received(res("other", hello()), 0.0) == [] and s.phase == "hello"
    assert s.received(res(rid, hello()), 0.0) != [] and s.phase == "connected"


def test_missing_scopes_are_named_unless_admin(caplog: pytest.LogCaptureFixture) -> None:
    limits = SessionLimits(scopes=("operator.write", "operator.read", "operator.pairing"))
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        s, rid = in_hello(limits)
        s.received(res(rid, {**hello(), "auth": {"scopes": ["operator.read"]}}), 0.0)
        assert caplog.messages == ["gateway granted fewer scopes than requested; missing: "
                                   "operator.pairing, operator.write"]
        caplog.clear()
        s, rid = in_hello(limits)
        s.received(res(rid, {**hello(), "auth": {"scopes": ["operator.admin"]}}), 0.0)
        s, rid = in_hello(limits)
        s.received(res(rid, {**hello(), "auth": {"scopes": ["operator.read", "operator.write",
                                                           "operator.pairing"]}}), 0.0)
        assert caplog.messages == []


def test_hello_effects_come_in_order() -> None:
    s = ConnectionCore(SessionLimits(liveness_timeout=3.0))
    waiting: Future[Any] = Future()
    s.submit("w", "health", b'{"w":1}', waiting)
    conn: Future[Any] = Future()
    s.await_connected(conn)
    s.add_sticky("k", "sessions.subscribe", {"key": "a"})
    s.retry()
    s.opened(build, 0.0)
    rid = sent(s.received(challenge(), 0.0))[0]["id"]
    s.received(event("presence", 1), 0.0)
    out = s.received(res(rid, hello()), 0.0)
    assert s.hello is not None and s.connections == 1 and s.ever_connected
    kinds = [type(e.push).__name__ if isinstance(e, Publish) else type(e).__name__ for e in out]
    assert kinds == ["Timer", "Connected", "StateChange", "Send", "Snapshot", "Event", "Send", "Settle",
                     "Timer", "Timer"]
    assert out[0] == Timer("handshake", None) and out[1] == Connected(s.hello)
    assert out[2] == Publish(StateChange(ConnectionState.CONNECTED, "connection 1"))
    assert out[4] == Publish(Snapshot(s.hello, 1))
    assert out[6] == Send(b'{"w":1}') and out[7] == Settle(conn, s.hello)
    assert out[8:] == [Timer("liveness", 3.0), Timer("ping", 1.0)]
    assert s.waiting == {} and s.connect_waiters == [] and "w" in s.pending


def test_a_waiting_expect_final_request_keeps_its_flag() -> None:
    s = ConnectionCore(LIMITS)
    fut: Future[Any] = Future()
    s.submit("a", "agent", b"{}", fut, expect_final=True)
    connected(s)
    assert settles(s.received(res("a", {"status": "accepted"}), 1.0)) == []
    assert settles(s.received(res("a", {"status": "ok"}), 1.0)) == [Settle(fut, {"status": "ok"})]


def test_events_carry_their_size_and_state_version() -> None:
    s, _ = connected()
    text = json.dumps({"type": "event", "event": "presence", "payload": {"a": 1}, "seq": 1,
                       "stateVersion": {"presence": 3, "health": 4}})
    (pub,) = [e for e in s.received(text, 1.0) if isinstance(e, Publish)]
    assert pub.size == held_size(text) and isinstance(pub.push, Event)  # what it holds decoded
    assert pub.push.payload == {"a": 1} and pub.push.seq == 1
    assert pub.push.state_version is not None and pub.push.state_version.health == 4


@pytest.mark.parametrize(("hint", "expected"), [
    (5000, 5000), (0, 0), (10**13, RESTART_HINT_MAX_MS), (3_600_000, 3_600_000),
    (-1, None), (True, None), (5000.0, None), ("5000", None), (None, None),
])
def test_shutdown_event_restart_hint(hint: Any, expected: int | None) -> None:
    s, _ = connected()
    s.received(event("shutdown", 1, {"restartExpectedMs": hint}), 1.0)
    assert s.closed(1012, "restart")[-1] == Lost("1012 restart", expected)


def test_restart_hint_only_from_shutdown_and_only_for_that_socket() -> None:
    s, _ = connected()
    s.received(event("tick", 1, {"restartExpectedMs": 100}), 1.0)
    s.received(event("shutdown", 2, "soon"), 1.0)
    assert s.closed(1012, "")[-1] == Lost("1012", None)
    connected(s)
    s.received(event("shutdown", 1, {"restartExpectedMs": 100}), 1.0)
    assert s.closed(None, "")[-1] == Lost("connection lost", 100)
    connected(s)
    assert s.closed(None, "eof")[-1] == Lost("eof", None)


def test_submit_starts_an_attempt_only_when_idle() -> None:
    s = ConnectionCore(LIMITS)
    assert s.submit("a", "x", b"{}", Future())[-1] == OpenSocket(1, 1)
    assert s.retry() == []  # opening already
    assert s.submit("b", "x", b"{}", Future()) == []
    s, _ = connected()
    s.closed(1006, "")  # lost: the core has scheduled the reconnect; a request waits for it
    assert s.phase == "idle" and s.state == ConnectionState.RECONNECTING
    assert s.submit("c", "x", b"{}", Future()) == []
    assert set(s.waiting) == {"c"}


def test_payload_limit_is_inclusive() -> None:
    s, _ = connected(maxPayload=2048)
    assert s.submit("ok", "x", b"x" * 2048, Future()) == [Send(b"x" * 2048)]
    fut: Future[Any] = Future()
    (settle,) = s.submit("big", "chat.send", b"x" * 2049, fut)
    assert isinstance(settle, Settle) and settle.waiter is fut
    assert str(settle.outcome) == "chat.send request is larger than the gateway's maxPayload (2048 bytes)"
    assert settle.outcome.method == "chat.send" and "big" not in s.pending


def test_sticky_requests_count_their_users() -> None:
    s, _ = connected()
    out = s.add_sticky("k", "sessions.subscribe", {"key": "a"})
    (frame,) = sent(out)
    assert frame["method"] == "sessions.subscribe" and frame["params"] == {"key": "a"}
    assert frame["type"] == "req" and frame["id"] in s.pending
    assert s.add_sticky("k", "sessions.subscribe", {"key": "a"}) == []
    assert not s.remove_sticky("k") and s.remove_sticky("k") and not s.remove_sticky("k")
    assert not s.remove_sticky("never")
    s.closed(1006, "")
    _, effects = connected(s)
    assert sent(effects) == []


def test_sticky_answers_settle_nobody_and_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    s, _ = connected()
    rid = sent(s.add_sticky("k", "sessions.subscribe", {}))[0]["id"]
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        (answer,) = s.received(res(rid, ok=False, error={"code": "INVALID_REQUEST", "message": "no"}), 1.0)
    assert isinstance(answer, StickyAnswer) and answer.key == "k" and str(answer.outcome) == "no"
    assert "k" not in s.sticky and not s.remove_sticky("k")  # dropped: its subscribers are told, once
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("subscribing with sessions.subscribe failed: ")
    rid = sent(s.add_sticky("j", "sessions.subscribe", {}))[0]["id"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        assert s.received(res(rid, {"ok": True}), 1.0) == [StickyAnswer("j", {"ok": True})]
    assert caplog.messages == []


def test_fire_sends_only_when_connected() -> None:
    s = ConnectionCore(LIMITS)
    assert s.fire("sessions.unsubscribe", {"key": "a"}) == []
    s, _ = connected()
    (frame,) = sent(s.fire("sessions.unsubscribe", {"key": "a"}))
    assert frame["method"] == "sessions.unsubscribe" and frame["params"] == {"key": "a"}
    assert s.received(res(frame["id"], {}), 1.0) == [] and len(s.pending) == 0


def test_await_connected() -> None:
    s = ConnectionCore(LIMITS)
    fut: Future[Any] = Future()
    assert s.await_connected(fut)[-1] == OpenSocket(1, 1) and s.connect_waiters == [fut]
    assert s.await_connected(Future()) == []
    s, _ = connected()
    now: Future[Any] = Future()
    assert s.await_connected(now) == [Settle(now, s.hello)]


def test_cancel_forgets_pending_and_waiting_requests() -> None:
    s = ConnectionCore(LIMITS)
    s.submit("w", "x", b"W", Future())
    s.cancel("w")
    _, effects = connected(s)
    assert Send(b"W") not in effects
    s.submit("p", "x", b"P", Future())
    s.cancel("p")
    assert s.received(res("p", 1), 1.0) == [] and s.closed(1006, "") == [
        Timer("liveness", None), Timer("ping", None),
        Publish(StateChange(ConnectionState.RECONNECTING, "retry in 0.50 s: connection closed (1006)")),
        Timer("reconnect", 0.5), Lost("1006", None)]
    s.cancel("unknown")


def test_a_close_during_the_handshake() -> None:
    s = in_challenge()
    out = s.closed(None, "")
    ended = ended_of(out)
    assert type(ended.error) is ConnectionError and ended.transport and ended.close_code is None
    assert str(ended.error) == "connection lost during the handshake (no close frame)"
    s = in_challenge()
    assert str(ended_of(s.closed(None, "eof")).error) == "connection lost during the handshake (eof)"
    s, _ = in_hello()
    ended = ended_of(s.closed(1008, "denied"))
    assert isinstance(ended.error, ConnectError) and not ended.transport and ended.close_code == 1008
    assert ended.paused
    s = ConnectionCore(LIMITS)
    s.retry()
    ended = ended_of(s.closed(1011, "oops"))
    assert not ended.paused and ended.close_code == 1011 and not ended.transport


def test_a_close_when_idle_is_ignored() -> None:
    assert ConnectionCore(LIMITS).closed(1006, "x") == []
    s, _ = connected()
    s.closed(1006, "")
    assert s.closed(1006, "") == []


def test_a_lost_connection_names_code_and_reason() -> None:
    s, _ = connected()
    fut: Future[Any] = Future()
    s.submit("a", "health", b"{}", fut)
    s.add_sticky("k", "sessions.subscribe", {})
    out = s.closed(1001, "going away")
    assert out[:2] == [Timer("liveness", None), Timer("ping", None)] and out[-1] == Lost("1001 going away", None)
    (settle,) = settles(out)
    error = settle.outcome
    assert settle.waiter is fut and type(error) is Disconnected
    assert str(error) == "gateway connection closed (1001 going away) before health was answered"
    assert error.close_code == 1001 and error.close_reason == "going away"
    s, _ = connected()
    assert s.closed(1000, "")[-1] == Lost("1000", None)


def test_handshake_timeouts_name_the_missing_step() -> None:
    s = ConnectionCore(SessionLimits(connect_timeout=1.5, label="gw"))
    s.retry()
    out = s.timer("handshake", 9.0)
    assert out[0] == CloseSocket(4000, "connect timeout")
    error = ended_of(out).error
    assert str(error) == "gateway at gw did not complete the websocket upgrade within 1.5 s"
    assert isinstance(error, ConnectError) and error.code == "TIMEOUT" and not error.pauses_reconnect
    assert ended_of(out).transport
    s = in_challenge()
    assert str(ended_of(s.timer("handshake", 9.0)).error) == "gateway at gw did not send connect.challenge within 2 s"
    s, _ = in_hello()
    assert str(ended_of(s.timer("handshake", 9.0)).error) == "gateway at gw did not send hello-ok within 2 s"


def test_timers_outside_their_phase_do_nothing() -> None:
    s = ConnectionCore(LIMITS)
    assert s.timer("handshake", 1.0) == [] and s.timer("liveness", 1.0) == [] and s.timer("ping", 1.0) == []
    s, _ = connected()
    assert s.timer("handshake", 1.0) == [] and s.timer("ping", 1.0) == [] and s.timer("other", 1.0) == []


def test_liveness_expires_at_exactly_the_limit() -> None:
    s, _ = connected()
    fut: Future[Any] = Future()
    s.submit("a", "health", b"{}", fut)
    out = s.timer("liveness", 60.0)
    assert out[0] == CloseSocket(4000, "liveness timeout") and out[-1] == Lost("nothing received for 60.0 s", None)
    (settle,) = settles(out)
    assert settle.outcome.close_reason == "liveness timeout" and settle.outcome.close_code is None
    assert str(settle.outcome) == "gateway connection closed (nothing received for 60.0 s) before health was answered"
    s, _ = connected()
    assert s.timer("liveness", 59.5) == [Timer("liveness", 0.5)]


def test_shutdown_effects_in_order() -> None:
    s = ConnectionCore(LIMITS)
    w: Future[Any] = Future()
    s.submit("w", "x", b"{}", w)
    s, _ = connected(s)
    p: Future[Any] = Future()
    s.submit("p", "x", b"{}", p)
    s.closed(1006, "")
    q: Future[Any] = Future()
    s.submit("q", "x", b"{}", q)
    c: Future[Any] = Future()
    s.await_connected(c)
    s2, _ = connected()
    s2.submit("p2", "x", b"{}", p)
    s2.add_sticky("k", "sessions.subscribe", {})
    error = ClientClosed("bye")
    out = s2.shutdown(error)
    assert out[:5] == [Timer("handshake", None), Timer("liveness", None), Timer("ping", None),
                       Timer("reconnect", None), CloseSocket(1000, "client shutdown")]
    assert [st.waiter for st in settles(out)] == [p] and settles(out)[0].outcome is not error
    assert out[-1] == Publish(StateChange(ConnectionState.CLOSED, "bye")) and len(s2.pending) == 0
    out = s.shutdown(error)
    assert [st.waiter for st in settles(out)] == [q, c] and s.waiting == {} and s.connect_waiters == []
    assert all(type(st.outcome) is ClientClosed for st in settles(out))


def test_describe() -> None:
    assert describe(OSError("boom")) == "boom" and describe(TimeoutError()) == "TimeoutError"


def test_a_request_frame_from_the_gateway_is_ignored() -> None:
    s, _ = connected()
    assert s.received(json.dumps({"type": "req", "id": "1", "method": "x"}), 3.0) == [] and s.last_rx == 3.0


# ----------------------------------------------- second round (survivors of the first run)


def test_set_state_detail_defaults_to_empty() -> None:
    assert ConnectionCore(LIMITS).set_state(ConnectionState.CONNECTING) == [
        Publish(StateChange(ConnectionState.CONNECTING, ""))]


def test_a_pause_is_logged_and_still_cancels_the_handshake_timer(caplog: pytest.LogCaptureFixture) -> None:
    s = ConnectionCore(LIMITS)
    s.retry()
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        out = s.open_failed(ConfigError("bad token file"))
    assert out[0] == Timer("handshake", None)
    assert caplog.messages == ["gateway connection paused: bad token file"]


def test_frames_that_are_ignored_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    s, _ = connected()
    with caplog.at_level(logging.DEBUG, logger="gwclient.session"):
        s.received("not json", 1.0)
        s.received(json.dumps({"type": "req", "id": "1", "method": "node.invoke"}), 1.0)
    assert caplog.messages[0] == ("ignoring a malformed frame from gw: "
                                  "frame is not valid JSON: Expecting value: line 1 column 1 (char 0)")
    assert caplog.messages[1] == "ignoring a request frame from the gateway (node.invoke)"


def test_gaps_and_silence_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    s, _ = connected()
    with caplog.at_level(logging.INFO, logger="gwclient.session"):
        s.received(event("tick", 1), 1.0)
        s.received(event("tick", 5), 1.0)
        s.timer("liveness", 100.0)
    assert caplog.messages == ["event gap on gw: expected seq 2, got 5",
                               "nothing from gw for 99.0 s; replacing the socket",
                               "gateway connection to gw lost (nothing received for 99.0 s); reconnecting in 0.50 s"]


def test_a_failed_sticky_request_logs_the_error(caplog: pytest.LogCaptureFixture) -> None:
    s, _ = connected()
    rid = sent(s.add_sticky("k", "sessions.subscribe", {}))[0]["id"]
    with caplog.at_level(logging.WARNING, logger="gwclient.session"):
        s.received(res(rid, ok=False, error={"code": "INVALID_REQUEST", "message": "no such session"}), 1.0)
        s.add_sticky("k", "sessions.subscribe", {})  # subscribed again, then the socket is replaced
        s.closed(1006, "")
        s, out = connected(s)
        again = next(f for f in sent(out) if f["method"] == "sessions.subscribe")["id"]
        s.received(res(again, ok=False, error={"code": "INVALID_REQUEST", "message": "gone"}), 2.0)
    assert caplog.messages == ["subscribing with sessions.subscribe failed: no such session",
                               "re-subscribing after a reconnect with sessions.subscribe failed: gone"]


def test_connect_refusals_name_the_connect_method_and_are_not_transport_failures() -> None:
    s = ConnectionCore(LIMITS)
    ended = ended_of(refuse(s, {"code": "INVALID_REQUEST", "message": "bad", "details": {"code": "AUTH_X"}}))
    assert ended.error.method == "connect" and ended.transport is False  # type: ignore[attr-defined]
    s, rid = in_hello()
    out = s.received(res(rid, {**hello(), "protocol": 3}), 0.0)
    assert ended_of(out).transport is False
    assert str(ended_of(out).error).startswith("hello-ok announced another protocol: ")


def test_sticky_params_are_resent_on_every_connect() -> None:
    s = ConnectionCore(LIMITS)
    s.add_sticky("k", "sessions.subscribe", {"key": "a"})
    for _ in range(2):
        _, effects = connected(s)
        (frame,) = sent(effects)
        assert frame["method"] == "sessions.subscribe" and frame["params"] == {"key": "a"}
        s.closed(1006, "")


def test_a_request_that_waited_for_the_connection_keeps_its_method() -> None:
    s = ConnectionCore(LIMITS)
    s.submit("w", "health", b"{}", Future())
    connected(s)
    (settle,) = settles(s.closed(1006, ""))
    assert str(settle.outcome) == "gateway connection closed (1006) before health was answered"


def test_submit_defaults_to_a_single_stage_answer() -> None:
    s, _ = connected()
    fut: Future[Any] = Future()
    s.submit("a", "agent", b"{}", fut)
    assert settles(s.received(res("a", {"status": "accepted"}), 1.0)) == [Settle(fut, {"status": "accepted"})]


def test_refusals_settle_the_callers_own_waiter() -> None:
    s = ConnectionCore(LIMITS)
    s.shutdown(ClientClosed("bye"))
    fut: Future[Any] = Future()
    (settle,) = s.submit("a", "x", b"{}", fut)
    assert isinstance(settle, Settle) and settle.waiter is fut
    conn: Future[Any] = Future()
    (settle,) = s.await_connected(conn)
    assert isinstance(settle, Settle) and settle.waiter is conn


def test_await_connected_after_a_loss_does_not_ask_for_a_connection() -> None:
    s, _ = connected()
    s.closed(1006, "")
    assert s.await_connected(Future()) == []  # the core has scheduled the reconnect already


def test_a_sticky_key_can_be_used_again_after_its_last_user_left() -> None:
    s, _ = connected()
    s.add_sticky("k", "sessions.subscribe", {"key": "a"})
    assert s.remove_sticky("k")
    (frame,) = sent(s.add_sticky("k", "sessions.subscribe", {"key": "b"}))
    assert frame["params"] == {"key": "b"}
    for _ in range(2):
        s.add_sticky("k", "sessions.subscribe", {"key": "b"})
    assert [s.remove_sticky("k") for _ in range(4)] == [False, False, True, False]


def test_a_handshake_close_keeps_the_reason() -> None:
    s, _ = in_hello()
    ended = ended_of(s.closed(1008, "denied"))
    assert str(ended.error) == "gateway closed the connection during the handshake (1008: denied)"


def test_a_handshake_timeout_never_pauses() -> None:
    s = ConnectionCore(LIMITS)
    s.retry()
    error = ended_of(s.timer("handshake", 9.0)).error
    assert isinstance(error, ConnectError) and error.pauses_reconnect is False


# ------------------------------------------------- _retry (the delays the actor applies)


def test_retry_policy_loopback_interval_bounds() -> None:
    for bad in (0.0, -1.0, 60.5):
        with pytest.raises(ValueError, match=r"^RetryPolicy\.loopback_interval must be in \(0, 60\]$"):
            RetryPolicy(loopback_interval=bad)
    assert RetryPolicy(loopback_interval=60).loopback_interval == 60


def test_retry_policy_jitter_scales_the_loopback_cadence() -> None:
    policy = RetryPolicy(loopback_interval=1.0, jitter=0.2, rng=lambda: 0.75)
    assert policy.after_loss(loopback=True) == pytest.approx(1.1)  # 1 * (0.8 + 0.4 * 0.75)
    assert policy.after_failure(3, loopback=True, refused=True) == pytest.approx(1.1)


def test_retry_policy_only_a_refused_loopback_connect_skips_the_backoff() -> None:
    policy = RetryPolicy(rng=lambda: 0.5)  # no jitter at 0.5
    assert policy.after_failure(5, loopback=True) == 16.0  # 0.5 * 2**5
    assert policy.after_failure(5, refused=True) == 16.0
    assert policy.after_failure(5, loopback=True, refused=True) == pytest.approx(0.2)


def test_retry_policy_server_hints() -> None:
    policy = RetryPolicy(rng=lambda: 0.5)
    assert policy.after_failure(0, retry_after_ms=1500, loopback=True) == 0.5  # 2.5 loopback intervals
    assert policy.after_failure(0, retry_after_ms=1500) == 1.5
    assert RetryPolicy(initial=0.1, maximum=0.5).after_failure(0, retry_after_ms=2000) == 0.5
    assert policy.after_loss(restart_expected_ms=2000) == 2.0
    assert policy.after_loss() == 0.5  # the first backoff step
