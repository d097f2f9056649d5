"""Session subscriptions that survive reconnects, against the dev gateway (which keys them
by connection, as the real gateway does)."""

from __future__ import annotations

import pytest
from _util import DEV_TOKEN

from gwclient import Event, GatewayConfig, GatewayConnection, RetryPolicy, Snapshot, Subscription, UsageError
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = DEV_TOKEN  # the shared ``gw`` fixture's token (conftest.py)
FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)


def connection(gw: DevGateway) -> GatewayConnection:
    return GatewayConnection.shared(GatewayConfig(url=gw.url, token=TOKEN, retry=FAST, request_timeout=10))


def next_event(sub: Subscription, name: str, timeout: float = 10.0) -> Event:
    while True:
        push = sub.get(timeout=timeout)
        if isinstance(push, Event) and push.event == name:
            return push


def snapshot_number(sub: Subscription, number: int) -> None:
    while True:
        push = sub.get(timeout=10)
        if isinstance(push, Snapshot) and push.connection_number == number:
            return


def test_messages_arrive_per_key_and_many_subscribers_share_one_server_subscription(gw: DevGateway) -> None:
    conn = connection(gw)
    work = [conn.subscribe_session("work") for _ in range(3)]
    home = conn.subscribe_session("agent:main:home")
    assert gw.wait_for(lambda g: g.session_subscribers("work") == 1 and g.session_subscribers("home") == 1, 10)
    assert gw.requests_by_method["sessions.messages.subscribe"] == 2  # one per key, not per subscriber
    gw.publish_session_message("home", {"text": "for home"})  # first: it must not reach work
    gw.publish_session_message("work", {"text": "for work"})
    for sub in work:
        assert next_event(sub, "session.message").payload["message"] == {"text": "for work"}
    assert next_event(home, "session.message").payload["message"] == {"text": "for home"}
    for sub in [*work, home]:
        sub.close()
    assert gw.sockets_accepted == 1


def test_subscriptions_are_reissued_before_the_fresh_snapshot(gw: DevGateway) -> None:
    conn = connection(gw)
    sub = conn.subscribe_session("work")
    snapshot_number(sub, 1)
    assert gw.wait_for(lambda g: g.session_subscribers("work") == 1, 10)
    for number in (2, 3):
        gw.drop_connections()
        snapshot_number(sub, number)
        # The re-subscribe left before the Snapshot reached us, so the gateway has it
        # before anything we send from here on (frames on one socket stay in order).
        conn.request("echo", "after snapshot")
        assert gw.requests_by_method["sessions.messages.subscribe"] == number
        assert gw.session_subscribers("work") == 1
        gw.publish_session_message("work", {"n": number})
        assert next_event(sub, "session.message").payload["message"] == {"n": number}
    sub.close()


def test_the_last_close_unsubscribes_and_stops_reissuing(gw: DevGateway) -> None:
    conn = connection(gw)
    a = conn.subscribe_session("work")
    b = conn.subscribe_session("work")
    assert gw.wait_for(lambda g: g.session_subscribers("work") == 1, 10)
    a.close()
    conn.request("echo", 1)
    assert gw.requests_by_method.get("sessions.messages.unsubscribe", 0) == 0 and gw.session_subscribers("work") == 1
    b.close()
    conn.request("echo", 2)
    assert gw.requests_by_method["sessions.messages.unsubscribe"] == 1 and gw.session_subscribers("work") == 0
    with conn.subscribe() as watcher:
        gw.drop_connections()
        snapshot_number(watcher, 2)
    conn.request("echo", 3)
    assert gw.requests_by_method["sessions.messages.subscribe"] == 1  # not re-issued


def test_sessions_changed_survives_reconnects(gw: DevGateway) -> None:
    conn = connection(gw)
    sub = conn.subscribe_sessions()
    conn.request("echo", 0)
    gw.publish_sessions_changed({"n": 1})
    assert next_event(sub, "sessions.changed").payload == {"n": 1}
    gw.drop_connections()
    snapshot_number(sub, 2)
    conn.request("echo", 1)
    gw.publish_sessions_changed({"n": 2})
    assert next_event(sub, "sessions.changed").payload == {"n": 2}
    sub.close()


def test_bad_session_keys_are_refused_at_once(gw: DevGateway) -> None:
    conn = connection(gw)
    for bad in ("", "   ", "x" * 513, 5):
        with pytest.raises(UsageError):
            conn.subscribe_session(bad)  # type: ignore[arg-type]
    assert gw.sockets_accepted == 0


def test_a_session_key_with_a_lone_surrogate_is_escaped_not_a_crash(gw: DevGateway) -> None:
    import os

    conn = connection(gw)
    key = os.fsdecode(b"odd-\xff")  # 'odd-\udcff': not encodable as UTF-8
    with conn.subscribe_session(key):
        assert gw.wait_for(lambda g: g.session_subscribers(key) == 1, 10)
        gw.drop_connections()
        assert gw.wait_for(lambda g: g.session_subscribers(key) == 1 and g.handshakes_completed == 2, 10)
    assert conn.request("echo", 1) == 1
