"""The socket-free session core, driven with plain asserts: no threads, no sockets, no clock.
DESIGN invariants 8-10 and 12 live here as pure tests."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from _coreutil import build, challenge, connected, event, hello, pushes, refuse, res, sent, settles

from gwclient import (
    AuthRejected,
    ClientClosed,
    ConnectError,
    ConnectionState,
    Disconnected,
    Event,
    GatewayUnavailable,
    PairingRequired,
    ProtocolMismatch,
    RequestError,
    SeqGap,
    Snapshot,
    StateChange,
)
from gwclient._core.connection import ConnectionCore
from gwclient._core.effects import (
    AttemptEnded,
    CloseSocket,
    Connected,
    Lost,
    OpenSocket,
    Ping,
    Publish,
    Send,
    SessionLimits,
    Settle,
    Timer,
)
from gwclient._core.retry import RetryPolicy


def test_hello_publishes_state_then_snapshot_and_arms_liveness() -> None:
    s, effects = connected()
    kinds = [type(p).__name__ for p in pushes(effects)]
    assert kinds == ["StateChange", "Snapshot"]
    assert any(isinstance(e, Connected) for e in effects)
    assert Timer("liveness", 60.0) in effects and Timer("handshake", None) in effects
    assert s.state == ConnectionState.CONNECTED


def test_absurd_policy_values_are_clamped() -> None:
    s, _ = connected(tickIntervalMs=10**13, maxPayload=10**13)
    assert s.hello is not None
    assert s.hello.policy.tick_interval_ms == 3_600_000 and s.hello.policy.max_payload == 1 << 30
    assert s.liveness == 7200.0
    s2, _ = connected(tickIntervalMs=0, maxPayload=1)
    assert s2.hello is not None and s2.hello.policy.tick_interval_ms == 1000 and s2.hello.policy.max_payload == 1024


def test_handshake_timer_fails_the_attempt_in_each_phase() -> None:
    for steps in (0, 1, 2):
        s = ConnectionCore(SessionLimits(connect_timeout=0.5))
        s.retry()
        if steps >= 1:
            s.opened(build, 0.0)
        if steps >= 2:
            s.received(challenge(), 0.0)
        effects = s.timer("handshake", 1.0)
        assert isinstance(effects[0], CloseSocket)
        ended = [e for e in effects if isinstance(e, AttemptEnded)]
        assert len(ended) == 1 and not ended[0].paused and "within 0.5 s" in str(ended[0].error)
        assert s.phase == "idle" and s.timer("handshake", 2.0) == []


def test_waiting_requests_are_sent_after_the_snapshot() -> None:
    s = ConnectionCore(SessionLimits())
    fut: Future[Any] = Future()
    effects = s.submit("r1", "health", b'{"type":"req","id":"r1","method":"health"}', fut)
    assert [type(e).__name__ for e in effects][-1] == "OpenSocket"  # idle: the core starts an attempt
    _, effects = connected(s)
    order = [type(e).__name__ for e in effects]
    assert order.index("Send") > order.index("Publish")
    assert "r1" in s.pending
    assert settles(s.received(res("r1", {"ok": True}), 1.0))[0].outcome == {"ok": True}


def test_sticky_requests_go_out_before_the_snapshot_on_every_connect() -> None:
    s = ConnectionCore(SessionLimits())
    assert s.add_sticky("k", "sessions.messages.subscribe", {"key": "a"}) == []  # not connected yet
    for _ in range(2):
        _, effects = connected(s)
        names = [type(e).__name__ if not isinstance(e, Publish) else type(e.push).__name__ for e in effects]
        assert sent(effects)[0]["method"] == "sessions.messages.subscribe"
        assert names.index("Send") < names.index("Snapshot")
        s.closed(1006, "")
    assert s.remove_sticky("k") and not s.remove_sticky("k")


def test_events_before_hello_are_bounded() -> None:
    s = ConnectionCore(SessionLimits(max_early_events=3))
    s.retry()
    s.opened(build, 0.0)
    connect = sent(s.received(challenge(), 0.0))[0]
    for i in range(10):
        assert s.received(event("presence", i + 1), 0.0) == []
    effects = s.received(res(connect["id"], hello()), 0.0)
    assert [p.seq for p in pushes(effects) if isinstance(p, Event)] == [1, 2, 3]


# ------------------------------------------------------------ invariant 8: seq gaps


def test_seq_gap_of_one_is_reported_before_the_event() -> None:
    s, _ = connected()
    s.received(event("tick", 1), 1.0)
    out = pushes(s.received(event("tick", 3), 1.0))
    assert out[0] == SeqGap(expected=2, received=3) and isinstance(out[1], Event) and out[1].seq == 3
    assert pushes(s.received(event("tick", 4), 1.0))[0] == Event("tick", None, 4)


def test_seq_tracking_restarts_on_every_new_socket() -> None:
    s, _ = connected()
    s.received(event("tick", 7), 1.0)
    s.closed(1006, "")
    connected(s)
    assert not any(isinstance(p, SeqGap) for p in pushes(s.received(event("tick", 1), 2.0)))


# -------------------------------------------------------- invariant 9: snapshots


def test_every_reconnect_yields_a_fresh_snapshot() -> None:
    s = ConnectionCore(SessionLimits())
    numbers = []
    for _ in range(3):
        _, effects = connected(s)
        numbers += [p.connection_number for p in pushes(effects) if isinstance(p, Snapshot)]
        s.closed(1012, "restart")
    assert numbers == [1, 2, 3]


# ---------------------------------------------- invariant 10: disconnect fails all


def test_disconnect_fails_every_pending_request_at_once() -> None:
    s, _ = connected()
    futs = [Future[Any]() for _ in range(5)]
    for i, fut in enumerate(futs):
        effects = s.submit(f"r{i}", "health", b"{}", fut)
        assert isinstance(effects[0], Send)
    effects = s.closed(1006, "gone")
    failed = settles(effects)
    assert {id(f.waiter) for f in failed} == {id(f) for f in futs}
    assert all(isinstance(f.outcome, Disconnected) and "before health" in str(f.outcome) for f in failed)
    assert isinstance(effects[-1], Lost) and len(s.pending) == 0


def test_liveness_timer_replaces_a_silent_socket_and_rearms_otherwise() -> None:
    s, _ = connected()
    s.received(event("tick", 1), 50.0)
    assert s.timer("liveness", 60.0) == [Timer("liveness", 50.0)]  # 10 s silent of 60
    effects = s.timer("liveness", 111.0)
    assert isinstance(effects[0], CloseSocket) and effects[0].reason == "liveness timeout"
    assert isinstance(effects[-1], Lost) and s.phase == "idle"


def test_liveness_timeout_shorter_than_ticks_adds_pings() -> None:
    s, effects = connected(ConnectionCore(SessionLimits(liveness_timeout=3.0)))
    assert Timer("ping", 1.0) in effects and Timer("liveness", 3.0) in effects
    assert s.timer("ping", 1.0) == [Ping(), Timer("ping", 1.0)]
    _s2, effects2 = connected()
    assert not any(isinstance(e, Timer) and e.name == "ping" for e in effects2)


# ---------------------------------------------------- invariant 12: pause, no loop


@pytest.mark.parametrize(("error", "kind"), [
    ({"code": "NOT_PAIRED", "message": "pair", "details": {"requestId": "r9"}}, PairingRequired),
    ({"code": "INVALID_REQUEST", "message": "m", "details": {"code": "PAIRING_REQUIRED"}}, PairingRequired),
    ({"code": "INVALID_REQUEST", "message": "bad token", "details": {"code": "AUTH_TOKEN_MISMATCH"}}, AuthRejected),
    ({"code": "INVALID_REQUEST", "message": "old", "details": {"code": "PROTOCOL_MISMATCH"}}, ProtocolMismatch),
])
def test_non_recoverable_refusals_pause_and_refuse_callers(error: dict[str, Any], kind: type) -> None:
    s = ConnectionCore(SessionLimits())
    waiting: Future[Any] = Future()
    s.submit("w", "health", b"{}", waiting)
    effects = refuse(s, error)
    ended = [e for e in effects if isinstance(e, AttemptEnded)]
    assert len(ended) == 1 and ended[0].paused and isinstance(ended[0].error, kind)
    assert s.state == ConnectionState.PAUSED
    assert [type(st.outcome) for st in settles(effects)] == [kind]
    later: Future[Any] = Future()
    out = s.submit("x", "health", b"{}", later)
    assert len(out) == 1 and isinstance(out[0].outcome, kind)  # type: ignore[union-attr]
    assert any(isinstance(p, StateChange) and p.state == ConnectionState.PAUSED for p in pushes(effects))


def test_unavailable_is_retried_with_the_servers_hint() -> None:
    s = ConnectionCore(SessionLimits())
    effects = refuse(s, {"code": "UNAVAILABLE", "message": "gateway starting", "retryAfterMs": 400})
    ended = next(e for e in effects if isinstance(e, AttemptEnded))
    assert not ended.paused and ended.retry_after_ms == 400 and s.paused is None
    assert RetryPolicy().after_failure(3, retry_after_ms=ended.retry_after_ms, loopback=True) == 0.4


def test_retryable_refusal_does_not_pause_but_pause_reconnect_false_is_honoured() -> None:
    s = ConnectionCore(SessionLimits())
    ended = next(e for e in refuse(s, {"code": "INVALID_REQUEST", "message": "busy", "retryable": True})
             if isinstance(e, AttemptEnded))
    assert not ended.paused
    ended = next(e for e in refuse(s, {"code": "NOT_PAIRED", "message": "wait",
                                   "details": {"code": "PAIRING_REQUIRED", "pauseReconnect": False}})
             if isinstance(e, AttemptEnded))
    assert isinstance(ended.error, PairingRequired) and not ended.paused


def test_close_1002_in_handshake_is_a_protocol_mismatch() -> None:
    s = ConnectionCore(SessionLimits())
    s.retry()
    s.opened(build, 0.0)
    ended = next(e for e in s.closed(1002, "protocol mismatch") if isinstance(e, AttemptEnded))
    assert isinstance(ended.error, ProtocolMismatch) and ended.paused


# ------------------------------------------------------------------- requests


def test_expect_final_answered_in_one_stage_is_settled() -> None:
    s, _ = connected()
    fut: Future[Any] = Future()
    s.submit("a", "agent", b"{}", fut, expect_final=True)
    assert settles(s.received(res("a", {"status": "accepted"}), 1.0)) == []
    assert settles(s.received(res("a", {"status": "ok"}), 1.0))[0].outcome == {"status": "ok"}
    fut2: Future[Any] = Future()
    s.submit("b", "agent", b"{}", fut2, expect_final=True)
    assert settles(s.received(res("b", {"status": "error"}), 1.0))[0].outcome == {"status": "error"}


def test_errors_unknown_ids_and_oversized_requests() -> None:
    s, _ = connected(maxPayload=2048)
    fut: Future[Any] = Future()
    s.submit("e", "x", b"{}", fut)
    out = settles(s.received(res("e", ok=False, error={"code": "UNAVAILABLE", "message": "busy"}), 1.0))
    assert isinstance(out[0].outcome, GatewayUnavailable)
    assert s.received(res("nobody", 1), 1.0) == []
    assert s.received("not json", 1.0) == [] and s.received("[" * 100_000, 1.0) == []
    big = s.submit("big", "x", b"x" * 4096, Future())
    assert isinstance(big[0], Settle) and isinstance(big[0].outcome, RequestError)
    assert big[0].outcome.code == "PAYLOAD_TOO_LARGE"


def test_shutdown_fails_everyone_and_refuses_later() -> None:
    s, _ = connected()
    pending: Future[Any] = Future()
    s.submit("p", "x", b"{}", pending)
    effects = s.shutdown(ClientClosed("bye"))
    assert isinstance(settles(effects)[0].outcome, ClientClosed)
    assert s.state == ConnectionState.CLOSED and s.shutdown(ClientClosed("again")) == []
    out = s.submit("q", "x", b"{}", Future())
    assert isinstance(out[0].outcome, ClientClosed)  # type: ignore[union-attr]


def test_restart_hint_never_exceeds_the_backoff_cap() -> None:
    policy = RetryPolicy(maximum=5.0)
    assert policy.after_loss(restart_expected_ms=3_600_000) == 5.0
    assert policy.after_loss(restart_expected_ms=10**13) == 5.0
    assert policy.after_loss(restart_expected_ms=3_600_000, loopback=True) <= policy.loopback_interval * 1.2
    assert policy.after_failure(9, loopback=True, refused=True) <= policy.loopback_interval * 1.2
    assert policy.after_failure(9) >= 4.0  # remote endpoints keep the long backoff
    err = ConnectError("x", retry_after_ms=10**13)
    assert policy.after_failure(0, retry_after_ms=err.retry_after_ms) == 2.0


# ------------------------------------------------------------------ reconnects, in the core


def test_a_reconnect_from_lost_to_the_next_attempt_is_decided_by_the_core() -> None:
    """The whole reconnect, followed with plain asserts: the loss schedules the retry (state,
    delay from the policy), the timer starts the attempt, a refusal backs off by the policy,
    the next hello-ok resets the count."""
    policy = RetryPolicy(initial=0.5, multiplier=2.0, maximum=30.0, jitter=0)
    s, _ = connected(ConnectionCore(SessionLimits(connect_timeout=2.0, label="gw", retry=policy)))
    out = s.closed(1006, "")
    assert out[-3:] == [Publish(StateChange(ConnectionState.RECONNECTING, "retry in 0.50 s: connection closed (1006)")),
                        Timer("reconnect", 0.5), Lost("1006", None)]
    assert s.state == ConnectionState.RECONNECTING and s.attempts == 1
    assert s.timer("reconnect", 1.0) == [Timer("reconnect", None),
                                         Publish(StateChange(ConnectionState.CONNECTING, "attempt 2")),
                                         Timer("handshake", 2.0), OpenSocket(2, 2)]
    out = s.open_failed(OSError("no route"))  # the attempt fails: the next delay doubles
    assert Timer("reconnect", 1.0) in out and s.attempts == 2 and s.state == ConnectionState.RECONNECTING
    assert s.timer("reconnect", 2.0)[-1] == OpenSocket(3, 3)
    assert s.timer("reconnect", 2.0) == []  # stale: an attempt is in progress
    s.opened(build, 3.0)
    connect = sent(s.received(challenge(), 3.0))[0]
    out = s.received(res(connect["id"], hello()), 3.0)
    assert [s.state, s.attempts, s.connections] == [ConnectionState.CONNECTED, 0, 2]
    assert [type(p).__name__ for p in pushes(out)] == ["StateChange", "Snapshot"]


def test_a_loopback_restart_is_retried_quickly_and_a_restart_hint_is_followed_elsewhere() -> None:
    policy = RetryPolicy(jitter=0, loopback_interval=0.2)
    local = ConnectionCore(SessionLimits(label="gw", retry=policy, loopback=True))
    local, _ = connected(local)
    assert Timer("reconnect", 0.2) in local.closed(1012, "service restart")
    assert Timer("reconnect", 0.2) in local.timer("reconnect", 0.0) + local.open_failed(ConnectionRefusedError())
    remote, _ = connected(ConnectionCore(SessionLimits(label="gw", retry=policy)))
    remote.received(event("shutdown", 1, {"reason": "gateway restarting", "restartExpectedMs": 1500}), 1.0)
    assert Timer("reconnect", 1.5) in remote.closed(1012, "service restart")


def test_a_pause_schedules_nothing_and_retry_leaves_it() -> None:
    s = ConnectionCore(SessionLimits(label="gw", retry=RetryPolicy(jitter=0)))
    out = refuse(s, {"code": "INVALID_REQUEST", "message": "unauthorized",
                     "details": {"code": "AUTH_TOKEN_MISMATCH"}})
    assert s.state == ConnectionState.PAUSED and not any(isinstance(e, Timer) and e.name == "reconnect"
                                                          and e.delay for e in out)
    assert s.timer("reconnect", 9.0) == []  # nothing scheduled, nothing starts
    assert s.retry()[-1] == OpenSocket(1, 2)
    assert [s.state] == [ConnectionState.CONNECTING]
