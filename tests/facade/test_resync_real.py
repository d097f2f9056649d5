"""Queued messages and resync (issue 18, points 0 and 5) against the real gateway with the
local model server: four chat runs into one busy session, each with its own reply; a run
whose socket a relay cuts mid-stream, its deltas checked character for character; plain
and approvals observers of one session; the roster snapshot after every (re)connect.

The behaviour differs by release (docs/runs.md, "Supported releases"); the tests say what
each release does.  Nothing sleeps: tests wait on runs, subscriptions and the model
server's counters."""

from __future__ import annotations

import json
import logging
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
    Run,
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


MESSAGES = ("second message", "third message", "fourth message")


def busy_session(gateway: RealGateway, model: ModelServer, messages: tuple[str, ...],
                 **params: Any) -> tuple[Run, list[Run]]:
    """A slow first chat turn in a fresh session, streaming, then ``messages`` sent into it
    (each with a time limit: a run that nothing answers must end, not hang the test)."""
    conn = GatewayConnection.shared(config(gateway.url, gateway))
    key = session()
    words = model.words
    first = conn.chat(key, "SLOW first message with several more words", timeout=60)
    assert model.wait_for(lambda m: m.words > words, timeout=60)
    return first, [conn.chat(key, message, timeout=60, **params) for message in messages]


def test_four_chat_runs_into_one_busy_session_each_get_their_own_reply(gateway: RealGateway,
                                                                       model: ModelServer) -> None:
    # The first turn is streaming (slowly) before the others are sent: they are queued, or
    # (2026.9.6's default queue mode, steer) steered into the streaming turn.
    first, queued = busy_session(gateway, model, MESSAGES)
    try:
        assert first.wait(90).text.startswith("ECHO: SLOW first message")
    except RunFailed:  # 2026.7.1: steering a queued message into it can fail the turn
        if gateway.version_info >= QUEUE_STREAMED_SINCE:
            raise
    if gateway.version_info < QUEUE_STREAMED_SINCE:
        for run, message in zip(queued, MESSAGES, strict=True):
            # 2026.5.12 keeps no keys (RunReplyUnknown); 2026.7.1 ties the reply but its
            # steering can fail a queued message (the gateway's RunFailed): its own reply
            # or a typed error, never another message's text, never "ok" with empty text
            try:
                assert run.wait(90).text == f"ECHO: {message}"
            except (RunReplyUnknown, RunFailed) as err:
                assert err.run_id == run.run_id
                assert gateway.version_info >= QUEUE_TIED_SINCE or isinstance(err, RunReplyUnknown)
        return
    batches: dict[tuple[str, ...], list[str]] = {}
    for run, message in zip(queued, MESSAGES, strict=True):
        deltas = list(run)  # every message gets an answer: no RunReplyUnknown on 2026.9
        result = run.wait(90)
        assert "".join(deltas) == result.text  # streamed live, character for character
        if result.steered_into is None:  # a follow-up turn of its own
            assert result.text == f"ECHO: {message}", (message, result)
            assert any(isinstance(u, StatusUpdate) and u.phase == "queued" for u in run.updates())
            assert run.reply_run_id is not None and run.reply_run_id != run.run_id
            continue
        # Steered into the streaming turn: that turn's next message answers it, and every
        # message drained with it (steeringMode "all"); the echo model answers the last one.
        assert result.steered_into == first.run_id
        assert any(isinstance(u, StatusUpdate) and u.phase == "steered" for u in run.updates())
        batch = tuple(sorted((run.run_id, *result.steered_with)))
        batches.setdefault(batch, []).append(result.text)
        order = [r.run_id for r in queued]
        last = max(batch, key=order.index)
        assert result.text == f"ECHO: {MESSAGES[order.index(last)]}", (message, result)
        assert result.text in first.wait(1).text  # the steered turn's own text holds that reply
    for texts in batches.values():
        assert len(set(texts)) == 1  # one reply per batch


def test_followup_queue_mode_gives_four_messages_four_replies(gateway: RealGateway, model: ModelServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """``queue_mode="followup"`` (2026.9): no steering, each message runs as its own turn
    with its own reply, in order.  Older gateways refuse the param: the messages go
    without it (a warning says so) and the release's own queueing applies."""
    caplog.set_level(logging.WARNING, logger="gwclient.runs")
    first, queued = busy_session(gateway, model, MESSAGES, queue_mode="followup")
    refused = any("does not take a queue mode" in r.getMessage() for r in caplog.records)
    assert refused == (gateway.version_info < QUEUE_STREAMED_SINCE)
    try:
        text = first.wait(90).text
    except RunFailed:
        if not refused:
            raise
    else:
        if refused:  # the release's own queueing may steer the messages into this turn
            assert text.startswith("ECHO: SLOW first message with several more words")
        else:
            assert text == "ECHO: SLOW first message with several more words"
    for run, message in zip(queued, MESSAGES, strict=True):
        try:
            deltas = list(run)
            result = run.wait(90)
        except (RunReplyUnknown, RunFailed) as err:
            assert refused and err.run_id == run.run_id  # an older release's own queueing
            continue
        assert result.text == f"ECHO: {message}" == "".join(deltas)
        assert result.steered_into is None


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
