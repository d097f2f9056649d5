"""The coalescing of session observers (:mod:`gwclient._core.observers`, issue 18 point 5): which
server subscription a set of local plain/approvals observers needs, and what to send when
one arrives or leaves.  Pure: plain asserts.  The gateway's side (one entry per connection
and session, no approvals flag on unsubscribe) is checked in tests/test_resync_real.py."""

from __future__ import annotations

import pytest

from gwclient import Event, GatewayConfig, GatewayConnection
from gwclient._core.observers import (
    APPROVALS,
    PLAIN,
    SessionObservers,
    answer_event_payload,
    level_for,
    sticky_params,
)
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

KEY = "agent:main:s"


def test_level_for() -> None:
    assert level_for(0, 0) is None
    assert level_for(3, 0) == PLAIN
    assert level_for(0, 1) == APPROVALS == level_for(2, 1)


def test_plain_then_approvals_upgrades_and_closing_the_plain_one_sends_nothing() -> None:
    obs = SessionObservers()
    first = obs.add(KEY, approvals=False)
    assert first.subscribe == {"key": KEY} and first.unsubscribe is None and first.after == PLAIN
    upgrade = obs.add(KEY, approvals=True)
    assert upgrade.subscribe == {"key": KEY, "includeApprovals": True} and upgrade.before == PLAIN
    # the plain observer leaves: the approvals subscription must stay (no unsubscribe)
    left = obs.remove(KEY, approvals=False)
    assert left.subscribe is None and left.unsubscribe is None and not left.changed
    assert obs.level(KEY) == APPROVALS and obs.sticky(KEY) == {"key": KEY, "includeApprovals": True}
    last = obs.remove(KEY, approvals=True)
    assert last.unsubscribe == {"key": KEY} and last.after is None
    assert obs.level(KEY) is None and obs.sticky(KEY) is None and obs.keys() == []


def test_approvals_then_plain_and_the_approvals_one_closes_re_keys_without_approvals() -> None:
    obs = SessionObservers()
    assert obs.add(KEY, approvals=True).subscribe == {"key": KEY, "includeApprovals": True}
    again = obs.add(KEY, approvals=False)
    assert again.subscribe is None and again.unsubscribe is None  # already covered
    down = obs.remove(KEY, approvals=True)
    assert down.subscribe == {"key": KEY} and down.unsubscribe is None and down.after == PLAIN
    assert obs.sticky(KEY) == {"key": KEY}
    assert obs.remove(KEY, approvals=False).unsubscribe == {"key": KEY}


def test_many_observers_make_one_subscription_and_the_last_one_unsubscribes() -> None:
    obs = SessionObservers()
    changes = [obs.add(KEY, approvals=False, params={"key": KEY, "agentId": "main"}) for _ in range(3)]
    assert [c.subscribe for c in changes] == [{"key": KEY, "agentId": "main"}, None, None]
    assert obs.counts(KEY) == (3, 0)
    assert obs.remove(KEY, approvals=False).unsubscribe is None
    assert obs.remove(KEY, approvals=False).unsubscribe is None
    assert obs.remove(KEY, approvals=False).unsubscribe == {"key": KEY, "agentId": "main"}
    # an unknown or extra close changes nothing
    assert not obs.remove(KEY, approvals=False).changed
    obs.add("agent:main:other", approvals=False)
    assert not obs.remove("agent:main:other", approvals=True).changed
    assert obs.counts("agent:main:other") == (1, 0)


def test_sessions_are_independent() -> None:
    obs = SessionObservers()
    obs.add("agent:main:a", approvals=True)
    assert obs.add("agent:main:b", approvals=False).subscribe == {"key": "agent:main:b"}
    assert obs.remove("agent:main:a", approvals=True).unsubscribe == {"key": "agent:main:a"}
    assert obs.level("agent:main:b") == PLAIN


def test_include_approvals_only_where_the_gateway_has_approvals() -> None:
    params = {"key": KEY, "includeApprovals": True}
    assert sticky_params("sessions.messages.subscribe", params, ["session.message", "session.approval"]) == params
    assert sticky_params("sessions.messages.subscribe", params, ["session.message"]) == {"key": KEY}
    assert sticky_params("sessions.messages.subscribe", params, None) == params  # before a hello
    assert sticky_params("sessions.subscribe", {"limit": 5}, []) == {"limit": 5}


def test_which_answers_become_events() -> None:
    replay = {"subscribed": True, "key": KEY, "approvalReplay": []}
    approvals = {"key": KEY, "includeApprovals": True}
    assert answer_event_payload("sessions.messages.subscribe", approvals, replay) == {**replay, "sessionKey": KEY}
    assert answer_event_payload("sessions.messages.subscribe", {"key": KEY}, replay) is None  # plain: nothing
    roster = {"subscribed": True, "list": {"sessions": []}}
    assert answer_event_payload("sessions.subscribe", {"limit": 5}, roster) == roster
    assert answer_event_payload("sessions.subscribe", {}, {"subscribed": True}) is None  # no list, no event
    assert answer_event_payload("sessions.messages.unsubscribe", {"key": KEY}, {"subscribed": False}) is None
    assert answer_event_payload("sessions.subscribe", {}, "odd") is None


# ------------------------------------------------------------- with the dev gateway


def test_closing_the_plain_observer_keeps_the_approvals_one_subscribed() -> None:
    """The dev gateway keeps one entry per connection and session, like the real one: a
    separate unsubscribe for the plain observer would silence the approvals observer."""
    with DevGateway(token="dev-token-obs") as gw:
        conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token="dev-token-obs"))
        try:
            approvals = conn.subscribe_session(KEY, include_approvals=True)
            plain = conn.subscribe_session(KEY)
            assert conn.request("echo", 1) == 1  # the subscribes went out before it
            assert gw.session_subscribers(KEY) == 1
            plain.close()
            assert conn.request("echo", 2) == 2
            assert gw.session_subscribers(KEY) == 1  # still subscribed
            assert gw.publish_session_message(KEY, {"role": "user", "content": "hi"}) == 1
            while True:
                push = approvals.get(timeout=5)
                if isinstance(push, Event) and push.event == "session.message":
                    assert push.payload["message"]["content"] == "hi"
                    break
            approvals.close()
            assert conn.request("echo", 3) == 3
            assert gw.session_subscribers(KEY) == 0  # the last one unsubscribed
        finally:
            conn.shutdown()
