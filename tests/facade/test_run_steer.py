"""Steered messages (issue 18, point 0): a chat run whose message the gateway steered into
the turn that was streaming is answered by that turn's next assistant message.

Against the dev gateway with ``runs.steer`` on (it steers the way 2026.9.6 does: the
waiting messages drained together at the running turn's next model boundary, user entries
with ``steerTargetRunId``, a ``final`` without a message for each, then one more assistant
message of the running turn); the pure reading of the transcript
(:func:`gwclient._core.run_follow.steered_reply`) with plain asserts.  Nothing sleeps: the
dev gateway pauses and releases the turns."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _util import dev_conn

from gwclient import GatewayConnection, Run, RunFailed, RunInterrupted, UsageError
from gwclient._core.run_follow import SteeredReply, steer_target, steered_reply
from gwclient.runs import StatusUpdate, TextDelta
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = "dev-token-steer"


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.steer = True
        gateway.runs.when("PAUSE", RunScript(pause_after=2))
        gateway.runs.when("FAIL", RunScript(fail="the model broke", fail_after=1))
        yield gateway


@pytest.fixture
def conn(gw: DevGateway) -> GatewayConnection:
    return dev_conn(gw, TOKEN)  # type: ignore[no-any-return]


def steer(gw: DevGateway, conn: GatewayConnection, key: str, *messages: str,
          first: str = "PAUSE first message") -> tuple[Run, list[Run]]:
    """A first turn paused mid-stream in ``key``, and ``messages`` waiting to be steered
    into it (none drained yet)."""
    turn = conn.chat(key, first)
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    runs = [conn.chat(key, m) for m in messages]
    assert gw.wait_for(lambda g: g.runs.steering(key) == len(messages), timeout=10)
    return turn, runs


def answering(gw: DevGateway, key: str) -> bool:
    """The waiting messages were drained and the turn's answer to them is paused."""
    return gw.wait_for(lambda g: g.runs.steering(key) == 0 and g.runs.paused >= 1, timeout=10)


def test_messages_steered_together_get_the_one_reply_that_answers_them(gw: DevGateway,
                                                                       conn: GatewayConnection) -> None:
    key = "agent:main:steer"
    first, (second, third) = steer(gw, conn, key, "second message", "third message",
                                   first="PAUSE first message with more words")
    gw.runs.release()
    # the running turn's text is all of its messages (the gateway's own chat final)
    assert first.wait(10).text == "ECHO: PAUSE first message with more words\n\nECHO: third message"
    for run, other in ((second, third), (third, second)):
        deltas = list(run)
        result = run.wait(10)
        # the one reply after the two steered messages answers both
        assert result.text == "ECHO: third message" == "".join(deltas)
        assert result.steered_into == first.run_id == run.steered_into
        assert result.steered_with == (other.run_id,)
        assert run.reply_run_id is None  # no follow-up turn of its own
        assert any(isinstance(u, StatusUpdate) and u.phase == "steered" for u in run.updates())
        assert not any(isinstance(u, TextDelta) and "first" in u.full for u in run.updates())


def test_messages_steered_at_two_boundaries_each_get_their_own_part(gw: DevGateway,
                                                                    conn: GatewayConnection) -> None:
    key = "agent:main:steer2"
    first, (second,) = steer(gw, conn, key, "PAUSE second message here")  # its answer pauses too
    gw.runs.release()
    assert answering(gw, key)
    third = conn.chat(key, "third message")  # waits for the next boundary of the same turn
    assert gw.wait_for(lambda g: g.runs.steering(key) == 1, timeout=10)
    gw.runs.release()
    assert first.wait(10).text == "ECHO: PAUSE first message\n\nECHO: PAUSE second message here\n\nECHO: third message"
    for run, text in ((second, "ECHO: PAUSE second message here"), (third, "ECHO: third message")):
        deltas = list(run)
        result = run.wait(10)
        assert result.text == text == "".join(deltas)
        assert result.steered_into == first.run_id and result.steered_with == ()


def test_followup_queue_mode_gives_each_message_a_turn_of_its_own(gw: DevGateway, conn: GatewayConnection) -> None:
    key = "agent:main:followup"
    first = conn.chat(key, "PAUSE first message")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    messages = ["second message", "third message"]
    queued = [conn.chat(key, m, queue_mode="followup") for m in messages]
    assert gw.wait_for(lambda g: g.runs.queued(key) == 2 and g.runs.steering(key) == 0, timeout=10)
    gw.runs.release()
    assert first.wait(10).text == "ECHO: PAUSE first message"
    for run, message in zip(queued, messages, strict=True):
        deltas = list(run)
        result = run.wait(10)
        assert result.text == f"ECHO: {message}" == "".join(deltas)
        assert result.steered_into is None and run.reply_run_id not in (None, first.run_id)


def test_a_gateway_without_queue_modes_gets_the_message_without_one(gw: DevGateway, conn: GatewayConnection,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """2026.7.1's chat.send refuses unknown params: the message goes without queueMode (it
    was refused before anything ran), and a warning says so."""
    gw.runs.release_2026_7 = True
    gw.runs.steer = False
    caplog.set_level(logging.WARNING, logger="gwclient.runs")
    run = conn.chat("agent:main:old", "plain words", queue_mode="followup")
    assert run.wait(10).text == "ECHO: plain words"
    assert any("does not take a queue mode" in r.getMessage() for r in caplog.records)
    assert gw.runs.started() == 1  # one run: the refused send started nothing


def test_a_bad_queue_mode_is_a_usage_error(conn: GatewayConnection) -> None:
    with pytest.raises(UsageError, match="queue_mode must be one of"):
        conn.chat("agent:main:x", "words", queue_mode="later")


def test_a_message_steered_too_late_gets_a_follow_up_turn(gw: DevGateway, conn: GatewayConnection) -> None:
    """Sent while the turn streams but not drained before it ended (here: it was aborted):
    the gateway runs it as a turn of its own, which the run follows."""
    first, (late,) = steer(gw, conn, "agent:main:late", "late message")
    first.abort()
    deltas = list(late)
    result = late.wait(10)
    assert result.text == "ECHO: late message" == "".join(deltas)
    assert result.steered_into is None and late.reply_run_id is not None


def test_a_steered_message_whose_answer_fails_ends_failed(gw: DevGateway, conn: GatewayConnection) -> None:
    first, (steered,) = steer(gw, conn, "agent:main:steer-fail", "FAIL this one")
    gw.runs.release()
    with pytest.raises(RunFailed):
        first.wait(10)
    with pytest.raises(RunFailed) as info:
        steered.wait(10)
    assert info.value.run_id == steered.run_id and first.run_id in str(info.value)


def test_a_steered_reply_survives_a_dropped_socket(gw: DevGateway, conn: GatewayConnection) -> None:
    key = "agent:main:steer-drop"
    first, (steered,) = steer(gw, conn, key, "PAUSE second message with more words")
    gw.runs.release()
    assert answering(gw, key)
    lifetimes = gw.lifetimes
    handshakes = gw.handshakes_completed
    assert gw.drop_connections() >= 1  # the same gateway process: the turn goes on
    assert gw.wait_for(lambda g: g.handshakes_completed > handshakes, timeout=10)  # reconnected
    gw.runs.release()
    deltas = list(steered)
    result = steered.wait(10)
    assert result.text == "ECHO: PAUSE second message with more words" == "".join(deltas)
    assert result.steered_into == first.run_id and gw.lifetimes == lifetimes


def test_a_gateway_restart_before_the_steered_reply_ends_the_run_interrupted(gw: DevGateway,
                                                                             conn: GatewayConnection) -> None:
    key = "agent:main:steer-restart"
    _first, (steered,) = steer(gw, conn, key, "PAUSE second message here")
    gw.runs.release()
    assert answering(gw, key)
    # (read up to the moment it knows it was steered: the restart comes after that)
    assert any(isinstance(u, StatusUpdate) and u.phase == "steered" for u in steered.updates(timeout=10))
    gw.restart()
    with pytest.raises(RunInterrupted) as info:
        steered.wait(10)
    assert info.value.run_id == steered.run_id and "steered into" in str(info.value)


# ------------------------------------------------------------------------ pure reading


def user(run_id: str, text: str = "m", target: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"id": f"u-{run_id}"}
    if target is not None:
        meta["steerTargetRunId"] = target
    return {"role": "user", "content": text, "idempotencyKey": f"{run_id}:user", "__openclaw": meta}


def assistant(run_id: str, text: str = "r", stop: str = "stop") -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "stopReason": stop,
            "__openclaw": {"runId": run_id}}


def test_steered_reply_reads_the_transcript() -> None:
    head = [user("x", "first"), assistant("x", "one")]
    # not steered, or not there yet
    assert steer_target({"messages": [*head, user("q")]}, "q") is None
    assert steer_target({"messages": head}, "q") is None
    assert steered_reply({"messages": [*head, user("q")]}, "q", "x") is None
    batch = [user("a", target="x"), user("q", target="x")]
    assert steer_target({"messages": [*head, *batch]}, "q") == "x"
    # drained, not answered yet
    assert steered_reply({"messages": [*head, *batch]}, "q", "x") is None
    # answered: the batch shares the reply; it can still grow until a later user entry
    answered = [*head, *batch, assistant("x", "two")]
    assert steered_reply({"messages": answered}, "q", "x") == SteeredReply("two", False, ("a", "q"), False)
    assert steered_reply({"messages": answered}, "a", "x") == SteeredReply("two", False, ("a", "q"), False)
    # a reply over several messages (tool results between), joined like the gateway's text
    tools = [*head, *batch, assistant("x", ""), {"role": "toolResult", "content": "t"}, assistant("x", "three")]
    assert steered_reply({"messages": tools}, "q", "x") == SteeredReply("three", False, ("a", "q"), False)
    two = [*head, *batch, assistant("x", "two"), assistant("x", "more")]
    assert steered_reply({"messages": two}, "q", "x") is not None
    assert steered_reply({"messages": two}, "q", "x").text == "two\n\nmore"  # type: ignore[union-attr]
    # a later steer ends the reply; the later one gets what follows it
    later = [*answered, user("z", target="x"), assistant("x", "four")]
    assert steered_reply({"messages": later}, "q", "x") == SteeredReply("two", False, ("a", "q"), True)
    assert steered_reply({"messages": later}, "z", "x") == SteeredReply("four", False, ("z",), False)
    # a failed answer; another target; another turn's entry is not ours
    failed = [*head, *batch, assistant("x", "broke", stop="error")]
    assert steered_reply({"messages": failed}, "q", "x") == SteeredReply("broke", True, ("a", "q"), False)
    assert steered_reply({"messages": answered}, "q", "other") is None
    foreign = [*head, *batch, assistant("y", "not ours")]
    assert steered_reply({"messages": foreign}, "q", "x") is None
