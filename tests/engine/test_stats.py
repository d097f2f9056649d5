"""conn.stats(): the counters checked against known work on the dev gateway (requests,
errors by code, a timeout, a disconnect, reconnects, a gap, an overflow, a ping), the
connect phases on StateChange, stats_all()."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest
from _util import DEV_TOKEN

from gwclient import (
    AuthRejected,
    ConnectionState,
    ConnectionStats,
    ConnectPhases,
    Disconnected,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayTimeout,
    Push,
    RequestError,
    RetryPolicy,
    SeqGap,
    Snapshot,
    StateChange,
    Subscription,
)
from gwclient.testing import DevGateway, DevGatewayError

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": DEV_TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def next_of(sub: Subscription, kind: type, timeout: float = 10.0, **match: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        item: Push = sub.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(item, kind) and all(getattr(item, k) == v for k, v in match.items()):
            return item


def test_before_first_use_and_after_shutdown(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    idle = conn.stats()
    assert isinstance(idle, ConnectionStats)
    assert (idle.state, idle.connection, idle.requests, idle.connect_phases, idle.since) == ("idle", 0, 0, None, None)
    conn.request("health")
    assert conn.stats().state == "connected"
    conn.shutdown()
    assert conn.stats().state == "closed"


def test_requests_answers_and_errors_by_code(gw: DevGateway) -> None:
    def refuse(params: Any) -> Any:
        raise DevGatewayError("NOT_FOUND", "no such thing")

    gw.set_handler("dev.refuse", refuse)
    gw.never_answer("dev.hang")
    before = time.time()
    conn = GatewayConnection.shared(config(gw))
    for _ in range(20):
        conn.request("health")
    for _ in range(3):
        with pytest.raises(RequestError):
            conn.request("dev.nosuchmethod")
    for _ in range(2):
        with pytest.raises(RequestError):
            conn.request("dev.refuse")
    with pytest.raises(GatewayTimeout):
        conn.request("dev.hang", timeout=0.2)
    late = conn.submit("dev.hang", timeout=0.2)
    with pytest.raises(GatewayTimeout):
        late.result(10)
    stats = conn.stats()
    assert stats.requests == 20 + 3 + 2 + 2
    assert stats.ok == 20
    assert dict(stats.errors) == {"INVALID_REQUEST": 3, "NOT_FOUND": 2, "TIMEOUT": 2}
    assert stats.pending == 0
    assert (stats.state, stats.connection, stats.connects, stats.reconnects) == ("connected", 1, 1, 0)
    assert stats.since is not None and before - 1 <= stats.since <= time.time() + 1
    # Bytes: an echo of 10 000 characters adds about that much each way.
    conn.request("echo", {"text": "x" * 10_000})
    after = conn.stats()
    assert 10_000 < after.bytes_out - stats.bytes_out < 10_200
    assert 10_000 < after.bytes_in - stats.bytes_in < 10_300
    # The snapshot is frozen: later work does not change it.
    conn.request("health")
    assert after.ok == 21 and conn.stats().ok == 22
    with pytest.raises(AttributeError):
        after.ok = 0  # type: ignore[misc]


def test_disconnects_reconnects_and_connect_phases(gw: DevGateway) -> None:
    gw.never_answer("dev.hang")
    conn = GatewayConnection.shared(config(gw))
    with conn.subscribe() as sub:
        first = next_of(sub, StateChange, state=ConnectionState.CONNECTED)
        for number in (2, 3):
            fut: Future[Any] = conn.submit("dev.hang")
            hung = number - 1  # dev.hang requests the gateway has received by now
            assert gw.wait_for(lambda g: g.requests_by_method.get("dev.hang", 0) >= hung, 10)  # noqa: B023
            gw.drop_connections()
            with pytest.raises(Disconnected):
                fut.result(10)
            last = next_of(sub, StateChange, state=ConnectionState.CONNECTED)
            next_of(sub, Snapshot, connection_number=number)
    stats = conn.stats()
    assert (stats.connection, stats.reconnects) == (3, 2)
    assert stats.connects >= 3
    assert stats.errors == {"DISCONNECTED": 2}
    for change in (first, last):
        phases = change.phases
        assert isinstance(phases, ConnectPhases)
        assert phases.tls is None  # ws://
        assert phases.tcp is not None and phases.tcp >= 0
        assert min(phases.upgrade, phases.challenge, phases.hello) >= 0
        parts = phases.tcp + phases.upgrade + phases.challenge + phases.hello
        assert parts <= phases.total + 1e-6 and phases.total < 10
        assert "hello" in phases.describe() and "total" in phases.describe()
    assert stats.connect_phases == last.phases  # the last successful connect's


def test_a_gap_and_events(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    with conn.subscribe(["dev.ev"]) as sub:
        conn.connect()
        next_of(sub, Snapshot)
        events_before = conn.stats().events
        gw.broadcast("dev.ev", {"n": 1})
        gw.skip_seq(3)
        gw.broadcast("dev.ev", {"n": 2})
        next_of(sub, SeqGap)
        next_of(sub, Event, payload={"n": 2})
    stats = conn.stats()
    assert stats.gaps == 1
    assert stats.events - events_before >= 2


def test_events_dropped_by_full_queues_are_counted_after_close(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    big = conn.subscribe(["dev.ev"], maxsize=1000)
    small = conn.subscribe(["dev.ev"], maxsize=2, include_state=False)
    conn.connect()
    next_of(big, Snapshot)
    for n in range(10):
        gw.broadcast("dev.ev", {"n": n})
    next_of(big, Event, payload={"n": 9})
    dropped = small.dropped_total
    assert dropped >= 8
    assert conn.stats().dropped == dropped
    small.close()  # the total keeps the drops of closed subscriptions
    big.close()
    assert conn.stats().dropped == dropped


@pytest.mark.devgateway(tick_interval_ms=60_000)
def test_a_keepalive_ping_gives_the_round_trip(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, ping_interval=0.05))
    conn.connect()
    assert conn.stats().last_rtt is None  # no ping answered yet
    assert gw.wait_for(lambda g: g.pings_received >= 1, 10)
    # The gateway answered the ping before it reads the next request: by the time this
    # request is answered, the reader has read the pong.
    conn.request("health")
    rtt = conn.stats().last_rtt
    assert rtt is not None and 0 < rtt < 5


def test_a_pause_is_counted(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, token="wrong-token"))
    with pytest.raises(AuthRejected):
        conn.connect()
    stats = conn.stats()
    assert (stats.state, stats.pauses, stats.connection) == ("paused", 1, 0)
    with pytest.raises(AuthRejected) as refused:
        conn.request("health")  # refused at once while paused: counted under its code
    assert refused.value.code
    assert conn.stats().errors == {refused.value.code: 1}


def test_stats_all_is_keyed_by_the_redacted_url(gw: DevGateway) -> None:
    one = GatewayConnection.shared(config(gw))
    two = GatewayConnection.shared(config(gw, request_timeout=9.0))
    one.request("health")
    every = GatewayConnection.stats_all()
    url = config(gw).redacted_url
    assert every[url].ok == 1
    assert set(every) == {url}  # `two` has not been used: no socket, no entry
    assert DEV_TOKEN not in repr(every)
    assert two.stats().state == "idle"
    assert every[url].as_dict()["ok"] == 1


def test_a_request_over_max_payload_is_counted_but_not_sent(gw: DevGateway) -> None:
    gw.policy_overrides["maxPayload"] = 4096
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    with pytest.raises(RequestError) as refused:
        conn.request("echo", {"text": "x" * 5000})
    assert refused.value.code == "PAYLOAD_TOO_LARGE"
    stats = conn.stats()
    assert (stats.requests, stats.ok, dict(stats.errors)) == (1, 1, {"PAYLOAD_TOO_LARGE": 1})
    assert gw.requests_by_method.get("echo", 0) == 0
