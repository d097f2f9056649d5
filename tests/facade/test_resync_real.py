"""Queued messages and resync (issue 18, points 0 and 5) against the real gateway with the
local model server: four chat runs into one busy session, each with its own reply; a run
whose socket a relay cuts mid-stream, its deltas checked character for character; plain
and approvals observers of one session; the roster snapshot after every (re)connect.

The behaviour differs by release (docs/runs.md, "Supported releases"); the tests say what
each release does.  Nothing sleeps: tests wait on runs, subscriptions and the model
server's counters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _util import SHARED_SERVER_PORTS

from gwclient import (
    Event,
    GatewayConfig,
    GatewayConnection,
    RetryPolicy,
    RunFailed,
    RunReplyUnknown,
    Snapshot,
    Subscription,
)
from gwclient.runs import StatusUpdate, TextDelta
from gwclient.testing import ModelServer, RealGateway, slow
from gwclient.testing._relay import TcpRelay

pytestmark = [pytest.mark.realgateway, pytest.mark.timeout(180), pytest.mark.usefixtures("shutdown_all_after")]

#: Approvals on session subscriptions (``includeApprovals``, ``approvalReplay``) and the
#: roster in the ``sessions.subscribe`` answer: 2026.9.6 (not 2026.7.1, not 2026.5.12).
APPROVALS_SINCE = ROSTER_SINCE = (2026, 9, 0)
#: Queued messages tied to their replies through the transcript: 2026.7.1 and 2026.9.6
#: (2026.5.12: see docs/runs.md).
QUEUE_TIED_SINCE = (2026, 7, 1)
#: ... and followed live, reliably: 2026.9.6.
QUEUE_STREAMED_SINCE = (2026, 9, 0)


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        SHARED_SERVER_PORTS.add(server.port)
        server.when("SLOW", slow(0.4))
        try:
            yield server
        finally:
            SHARED_SERVER_PORTS.discard(server.port)


@pytest.fixture(scope="module")
def gateway(model: ModelServer) -> Iterator[RealGateway]:
    gw = RealGateway(config=model.gateway_config())
    ModelServer.write_agent_settings(gw.state_dir, max_retries=0)
    with gw:
        conn = GatewayConnection.shared(config(gw.url, gw))
        try:
            assert conn.agent("warm up", session_key="agent:main:warm-up", timeout=60).wait(90).text == "ECHO: warm up"
        finally:
            conn.shutdown()
        yield gw


@pytest.fixture(autouse=True)
def model_idle(model: ModelServer) -> Iterator[None]:
    yield
    model.release()
    assert model.wait_for(lambda m: m.active == 0, timeout=30)
    model.close_idle()


def config(url: str, gw: RealGateway) -> GatewayConfig:
    return GatewayConfig(url=url, token=gw.token, retry=RetryPolicy(initial=0.1, maximum=1.0),
                         connect_timeout=10.0, request_timeout=20.0)


def session() -> str:
    return f"agent:main:same-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------- point 0: queued runs


def test_four_chat_runs_into_one_busy_session_each_get_their_own_reply(gateway: RealGateway,
                                                                       model: ModelServer) -> None:
    conn = GatewayConnection.shared(config(gateway.url, gateway))
    key = session()
    words = model.words
    first = conn.chat(key, "SLOW first message with several more words", timeout=60)
    # The first turn is streaming (slowly) before the others are sent: they are queued.
    assert model.wait_for(lambda m: m.words > words, timeout=60)
    messages = ["second message", "third message", "fourth message"]
    # (a time limit each: a run that nothing answers must end, not hang the test)
    queued = [conn.chat(key, message, timeout=60) for message in messages]
    try:
        assert first.wait(90).text.startswith("ECHO:")
    except RunFailed:  # 2026.7.1: steering a queued message into it can fail the turn
        if gateway.version_info >= QUEUE_STREAMED_SINCE:
            raise
    followed = 0
    for run, message in zip(queued, messages, strict=True):
        if gateway.version_info < QUEUE_STREAMED_SINCE:
            # 2026.5.12 keeps no keys (RunReplyUnknown); 2026.7.1 ties the reply but its
            # steering can fail a queued message (the gateway's RunFailed): its own reply
            # or a typed error, never another message's text, never "ok" with empty text
            try:
                assert run.wait(90).text == f"ECHO: {message}"
            except (RunReplyUnknown, RunFailed) as err:
                assert err.run_id == run.run_id
                assert gateway.version_info >= QUEUE_TIED_SINCE or isinstance(err, RunReplyUnknown)
            continue
        try:
            deltas = list(run)
        except RunReplyUnknown as err:
            # 2026.9.6 may steer a message sent while a turn streams into that very turn (its
            # transcript entry names steerTargetRunId; that turn's one reply answers it): it has
            # no reply of its own to follow, and the run says so with a typed outcome, never
            # "ok" with another message's text (docs/runs.md, "Queued messages").
            assert err.run_id == run.run_id
            continue
        result = run.wait(90)
        assert result.text == f"ECHO: {message}", (message, result)
        assert "".join(deltas) == result.text
        assert any(isinstance(u, StatusUpdate) and u.phase == "queued" for u in run.updates())
        assert run.reply_run_id is not None and run.reply_run_id != run.run_id
        followed += 1
    if gateway.version_info >= QUEUE_STREAMED_SINCE:
        assert followed >= 1  # a queued message followed to its own reply turn, streamed live


# ------------------------------------------------------------------- point 5: resync


def test_a_socket_cut_mid_stream_loses_no_character(gateway: RealGateway, model: ModelServer) -> None:
    with TcpRelay(gateway.port) as relay:
        conn = GatewayConnection.shared(config(relay.url, gateway))
        words = "one two three four five six seven eight nine ten eleven twelve"
        run = conn.chat(session(), f"SLOW {words}")
        for update in run.updates(timeout=60):
            if isinstance(update, TextDelta) and update.text:
                break  # streaming
        assert relay.freeze() == 1  # what the gateway streams now never reaches the client
        streamed = model.words
        assert model.wait_for(lambda m: m.words >= streamed + 3, timeout=30)
        assert relay.drop() == 1  # the socket closes; the client reconnects through the relay
        deltas = list(run)
        result = run.wait(60)
        assert result.text == f"ECHO: SLOW {words}"
        assert "".join(deltas) == result.text  # character for character
        assert relay.accepted == 2


# ------------------------------------------------------------------- point 5: observers


def messages_until(sub: Subscription, text: str) -> list[Any]:
    """session.message payloads until one mentions ``text`` in an assistant message."""
    seen: list[Any] = []
    while True:
        push = sub.get(timeout=60)
        if isinstance(push, Event) and push.event == "session.message":
            seen.append(push.payload)
            message = push.payload.get("message", {})
            if message.get("role") == "assistant" and text in json.dumps(message):
                return seen


def test_plain_and_approvals_observers_of_one_session(gateway: RealGateway) -> None:
    conn = GatewayConnection.shared(config(gateway.url, gateway))
    key = session()
    approvals = conn.subscribe_session(key, include_approvals=True)
    plain = conn.subscribe_session(key)
    try:
        if gateway.version_info >= APPROVALS_SINCE:
            # the subscribe answer replays the pending approvals (none here) to that subscriber
            while True:
                push = approvals.get(timeout=30)
                if isinstance(push, Event) and push.event == "sessions.messages.subscribe":
                    assert push.payload["sessionKey"] == key and "approvalReplay" in push.payload, push.payload
                    break
        assert conn.chat(key, "seen by both").wait(60).text == "ECHO: seen by both"
        assert messages_until(plain, "seen by both")
        assert messages_until(approvals, "seen by both")
        # Closing the plain observer must not silence the approvals one (the gateway keeps
        # one entry per connection and session; a separate unsubscribe would remove it).
        plain.close()
        assert conn.chat(key, "after the plain one left").wait(60).text == "ECHO: after the plain one left"
        assert messages_until(approvals, "after the plain one left")
        # And the other way round: a plain observer after the approvals one closes.
        plain = conn.subscribe_session(key)
        approvals.close()
        assert conn.chat(key, "only plain now").wait(60).text == "ECHO: only plain now"
        assert messages_until(plain, "only plain now")
    finally:
        plain.close()
        approvals.close()


def test_subscribe_sessions_yields_the_roster_after_every_connect(gateway: RealGateway) -> None:
    with TcpRelay(gateway.port) as relay:
        conn = GatewayConnection.shared(config(relay.url, gateway))
        key = session()
        assert conn.chat(key, "make a session").wait(60).text == "ECHO: make a session"
        roster = gateway.version_info >= ROSTER_SINCE  # older releases answer without a list
        with conn.subscribe_sessions(list_params={"limit": 20}) as sub:
            for connection in (1, 2):
                push = sub.get(timeout=30)
                while not (isinstance(push, Snapshot) and push.connection_number >= connection):
                    push = sub.get(timeout=30)
                if roster:
                    while not (isinstance(push, Event) and push.event == "sessions.subscribe"):
                        push = sub.get(timeout=30)
                    assert push.payload["subscribed"] is True
                    assert key in json.dumps(push.payload["list"])
                if connection == 1:
                    assert relay.drop() == 1  # a reconnect: re-subscribed, the roster again
        assert relay.accepted == 2
