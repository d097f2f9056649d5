"""Queued messages (issue 18, point 0): a chat run whose message the gateway queued behind a
running turn follows it to the follow-up turn that answers it.

Against the dev gateway with ``runs.queue`` on (it queues the way 2026.9.6 does: a
``final`` without a message at once, then a follow-up turn under a new runId with
``completionSource: "reply-dispatch"``); the pure matching of :mod:`gwclient._core.run_follow`
with plain asserts.  Nothing sleeps: the first run is paused and released by the dev
gateway."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _util import dev_conn

import gwclient._runs
from gwclient import GatewayConnection, RunReplyUnknown
from gwclient._core.history import HistoryCursor, merge_messages
from gwclient._core.run_follow import (
    MINE,
    OTHER,
    PENDING,
    UNKNOWN,
    answer_in_history,
    booted_at,
    canonical_key,
    is_queued_final,
    is_reply_turn_start,
    match_turn,
    same_process,
    session_idle,
)
from gwclient.runs import StatusUpdate, TextDelta
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

TOKEN = "dev-token-queue"


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.queue = True
        gateway.runs.when("PAUSE", RunScript(pause_after=2))
        yield gateway


@pytest.fixture
def conn(gw: DevGateway) -> GatewayConnection:
    return dev_conn(gw, TOKEN)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ the dev gateway


def test_four_chat_runs_into_one_busy_session_each_get_their_own_reply(gw: DevGateway,
                                                                       conn: GatewayConnection) -> None:
    key = "agent:main:same"
    first = conn.chat(key, "PAUSE first message with more words")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    messages = ["second message", "third message", "fourth message"]
    queued = [conn.chat(key, m) for m in messages]
    assert gw.wait_for(lambda g: g.runs.queued() == 3, timeout=10)
    gw.runs.release()
    assert first.wait(10).text == "ECHO: PAUSE first message with more words"
    for run, message in zip(queued, messages, strict=True):
        deltas = list(run)
        result = run.wait(10)
        assert result.text == f"ECHO: {message}" == "".join(deltas)
        assert run.reply_run_id is not None and run.reply_run_id != run.run_id
        assert any(isinstance(u, StatusUpdate) and u.phase == "queued" for u in run.updates())
    # in order, each answered by the follow-up the gateway ran for it
    assert [q for q, _ in gw.runs.followups] == [r.run_id for r in queued]
    assert [f for _, f in gw.runs.followups] == [r.reply_run_id for r in queued]


def test_a_queued_chat_run_behind_an_agent_run_streams_its_reply(gw: DevGateway, conn: GatewayConnection) -> None:
    key = "agent:main:behind-agent"
    first = conn.agent("PAUSE the agent turn", session_key=key)
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    run = conn.chat(key, "queued chat words")
    assert gw.wait_for(lambda g: g.runs.queued(key) == 1, timeout=10)
    gw.runs.release()
    assert first.wait(10).text == "ECHO: PAUSE the agent turn"
    texts = [u for u in run.updates() if isinstance(u, TextDelta)]
    assert "".join(t.text for t in texts) == "ECHO: queued chat words" == run.wait(5).text
    assert texts[-1].full == "ECHO: queued chat words"


def test_a_2026_7_style_queue_without_reply_dispatch_marks_is_followed_too(gw: DevGateway,
                                                                          conn: GatewayConnection) -> None:
    """2026.7.1 marks no follow-up turn and writes no runId on assistant entries: every
    turn start is a candidate and the transcript's order decides."""
    gw.runs.release_2026_7 = True
    key = "agent:main:old"
    first = conn.chat(key, "PAUSE first message here")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    messages = ["second one", "third one"]
    queued = [conn.chat(key, m) for m in messages]
    assert gw.wait_for(lambda g: g.runs.queued(key) == 2, timeout=10)
    gw.runs.release()
    assert first.wait(10).text == "ECHO: PAUSE first message here"
    for run, message in zip(queued, messages, strict=True):
        deltas = list(run)
        assert run.wait(10).text == f"ECHO: {message}" == "".join(deltas)


def test_a_lost_queued_message_on_a_gateway_that_hides_its_queue_ends_typed(
        gw: DevGateway, conn: GatewayConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pendingInputs (2026.7.1 and older): after a few quiet settle periods with no turn
    in the session, the run says it cannot tell (never "ok" with empty text, never a hang)."""
    monkeypatch.setattr(gwclient._runs, "SETTLE_SECONDS", 0.05)
    gw.runs.release_2026_7 = True
    gw.runs.drop_queued = True
    key = "agent:main:lost"
    first = conn.chat(key, "PAUSE first")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    run = conn.chat(key, "never answered")
    gw.runs.release()
    assert first.wait(10).text == "ECHO: PAUSE first"
    with pytest.raises(RunReplyUnknown) as info:
        run.wait(10)
    assert "does not say whether it is still queued" in str(info.value)


def test_without_idempotency_keys_the_message_text_ties_the_reply(gw: DevGateway, conn: GatewayConnection) -> None:
    """2026.5.12 keeps no keys: the message's own text, when no other user entry has it."""
    gw.runs.history_keys = False
    key = "agent:main:nokeys"
    first = conn.chat(key, "PAUSE first")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    run = conn.chat(key, "second words")
    assert gw.wait_for(lambda g: g.runs.queued(key) == 1, timeout=10)
    gw.runs.release()
    first.wait(10)
    deltas = list(run)
    assert run.wait(10).text == "ECHO: second words" == "".join(deltas)


def test_without_idempotency_keys_a_repeated_message_cannot_be_told(gw: DevGateway, conn: GatewayConnection) -> None:
    gw.runs.history_keys = False
    key = "agent:main:nokeys2"
    assert conn.chat(key, "same words").wait(10).text == "ECHO: same words"
    first = conn.chat(key, "PAUSE first")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    run = conn.chat(key, "same words")  # a second user entry with that text
    assert gw.wait_for(lambda g: g.runs.queued(key) == 1, timeout=10)
    gw.runs.release()
    first.wait(10)
    with pytest.raises(RunReplyUnknown) as info:
        run.wait(10)
    assert info.value.run_id == run.run_id and "queued" in str(info.value)


# ------------------------------------------------------------------------ pure matching


def user(run_id: str | None, text: str = "m") -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "user", "content": text, "__openclaw": {"id": "x"}}
    if run_id is not None:
        entry["idempotencyKey"] = f"{run_id}:user"
    return entry


def assistant(run_id: str, text: str = "r") -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "__openclaw": {"runId": run_id}}


def test_match_turn_reads_the_transcript() -> None:
    done = [user("a"), assistant("a")]
    # our entry is the newest, unanswered: the starting turn is ours
    assert match_turn({"messages": [*done, user("q")]}, "q", "f1") == MINE
    # the candidate's reply follows our entry
    assert match_turn({"messages": [*done, user("q"), assistant("f1")]}, "q", "f1") == MINE
    # another turn answers ours
    assert match_turn({"messages": [*done, user("q"), assistant("f0")]}, "q", "f1") == OTHER
    # a newer message follows ours, unanswered: the candidate answers that one
    assert match_turn({"messages": [*done, user("q"), user("z")]}, "q", "f1") == OTHER
    # the newest user entry is someone else's and unanswered: the candidate is theirs
    assert match_turn({"messages": [*done, user("p")]}, "q", "f1") == OTHER
    # the candidate's reply is there after someone else's message
    assert match_turn({"messages": [*done, user("p"), assistant("f1")]}, "q", "f1") == OTHER
    # nothing written yet for the candidate: ask again
    assert match_turn({"messages": done}, "q", "f1") == PENDING
    # a turn seen late: it already answered another message, ours is newest
    assert match_turn({"messages": [user("p"), assistant("f1"), user("q")]}, "q", "f1") == OTHER
    # a transcript without runIds (2026.7.1): newest-and-unanswered cannot be trusted
    bare = {"role": "assistant", "content": "r", "__openclaw": {"id": "y"}}
    assert match_turn({"messages": [user("a"), bare, user("q")]}, "q", "f1") == PENDING
    assert answer_in_history({"messages": [user("a"), bare, user("q"), bare]}, "q") == (None, "r", False)
    # no keys at all: cannot tell, unless the message text singles our entry out
    assert match_turn({"messages": [user(None), assistant("a"), user(None)]}, "q", "f1") == UNKNOWN
    keyless = {"messages": [user(None, "hi"), assistant("a"), user(None, "mine"), assistant("f1")]}
    assert match_turn(keyless, "q", "f1", "mine") == MINE
    assert match_turn(keyless, "q", "f1", "hi") == OTHER
    assert match_turn({"messages": [user(None, "x"), user(None, "x")]}, "q", "f1", "x") == UNKNOWN
    assert answer_in_history(keyless, "q", "mine") == ("f1", "r", False)
    # a steered message stored without its key, among keyed ones
    steered = {"messages": [user("a", "hi"), {**user(None, "[ts] mine")}, assistant("a", "ECHO: mine")]}
    assert answer_in_history(steered, "q", "mine") == ("a", "ECHO: mine", False)
    assert answer_in_history(steered, "q", None) is None
    # the key may sit in __openclaw only
    entry = {"role": "user", "content": "m", "__openclaw": {"idempotencyKey": "q:user"}}
    assert match_turn({"messages": [*done, entry]}, "q", "f1") == MINE
    assert match_turn(None, "q", "f1") == PENDING


def test_boot_identity() -> None:
    assert booted_at(5000, 100.0) == 95.0 and booted_at(None, 1.0) is None and booted_at(True, 1.0) is None
    assert same_process("a", "a", None, None) is True and same_process("a", "b", 1.0, 1.0) is False
    assert same_process(None, None, 95.0, 96.5) is True  # one process, seen twice
    assert same_process(None, None, 95.0, 130.0) is False  # started later: restarted
    assert same_process(None, "b", None, None) is None


def test_answer_in_history_and_session_idle() -> None:
    history = {"messages": [user("q"), assistant("f1", "ECHO: q")]}
    assert answer_in_history(history, "q") == ("f1", "ECHO: q", False)
    assert answer_in_history({"messages": [user("q")]}, "q") is None
    assert answer_in_history({"messages": []}, "q") is None
    failed = {"messages": [user("q"), {**assistant("f1", "boom"), "stopReason": "error"}]}
    assert answer_in_history(failed, "q") == ("f1", "boom", True)
    idle = {"sessionInfo": {"hasActiveRun": False}, "pendingInputs": {"items": []}}
    assert session_idle(idle)
    assert not session_idle({**idle, "sessionInfo": {"hasActiveRun": True}})
    assert not session_idle({**idle, "pendingInputs": {"items": [{"id": "p"}]}})
    assert not session_idle({"messages": []})  # an older gateway says neither: unsure


def test_queued_final_and_reply_turn_start() -> None:
    final = {"runId": "q", "state": "final", "seq": 1}
    assert is_queued_final(final, started=False, text="")
    assert not is_queued_final(final, started=True, text="")  # an empty reply of a turn that ran
    assert not is_queued_final(final, started=False, text="x")
    assert not is_queued_final({**final, "message": {"role": "assistant", "content": []}}, started=False, text="")
    start = {"stream": "lifecycle", "data": {"phase": "start", "completionSource": "reply-dispatch"}}
    assert is_reply_turn_start(start)
    assert not is_reply_turn_start({"stream": "lifecycle", "data": {"phase": "start"}})
    end = {"stream": "lifecycle", "data": {"phase": "end", "completionSource": "reply-dispatch"}}
    assert not is_reply_turn_start(end)
    assert canonical_key("main") == "agent:main:main" and canonical_key("agent:x:y") == "agent:x:y"
    assert canonical_key(None) is None


# ------------------------------------------------------------------------ history cursors


def test_history_reads_use_the_cursor_then_fall_back(gw: DevGateway, conn: GatewayConnection) -> None:
    key = "agent:main:cursor"
    assert conn.chat(key, "one").wait(10).text == "ECHO: one"
    reader = HistoryCursor(conn.request, key)
    first = reader.read()
    assert first is not None and [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert conn.chat(key, "two").wait(10).text == "ECHO: two"
    second = reader.read()
    assert second is not None and [m["role"] for m in second["messages"]] == ["user", "assistant"] * 2
    assert reader.reads == {"tail": 1, "delta": 1, "reset": 0} == gw.runs.history_reads
    reader._cursor = "agent:main:other#0"  # a stale cursor: reset, then a tail read
    third = reader.read()
    assert third is not None and len(third["messages"]) == 4
    assert reader.reads == {"tail": 2, "delta": 1, "reset": 1}
    # A gateway without cursors (2026.7.1 refuses the param): tail reads only.
    gw.runs.cursors = False
    assert reader.read() is not None and not reader.supported
    assert reader.read() is not None and reader.reads["tail"] == 4


def test_queued_runs_read_the_history_by_cursor(gw: DevGateway, conn: GatewayConnection) -> None:
    key = "agent:main:qcursor"
    first = conn.chat(key, "PAUSE first words here")
    assert gw.wait_for(lambda g: g.runs.paused >= 1, timeout=10)
    queued = conn.chat(key, "PAUSE queued words here")  # its follow-up turn pauses too
    assert gw.wait_for(lambda g: g.runs.queued(key) == 1, timeout=10)
    with ThreadPoolExecutor(1) as pool:  # consumed live: the run sees its turn start
        text = pool.submit(lambda: "".join(queued))
        gw.runs.release()
        assert first.wait(10).text == "ECHO: PAUSE first words here"
        assert gw.wait_for(lambda g: len(g.runs.followups) == 1 and g.runs.paused >= 1, timeout=10)
        for update in queued.updates(timeout=10):  # the follow-up's first words: adopted
            if isinstance(update, TextDelta):
                break
        assert queued.reply_run_id == gw.runs.followups[0][1]
        gw.runs.release()
        assert text.result(10) == "ECHO: PAUSE queued words here" == queued.wait(5).text
    assert gw.runs.history_reads["delta"] >= 1, gw.runs.history_reads  # the turn decision read a delta


def test_merge_messages_replaces_by_id_and_appends() -> None:
    a = {"role": "user", "content": "a", "__openclaw": {"id": "1"}}
    b = {"role": "assistant", "content": "b", "__openclaw": {"id": "2"}}
    b2 = {**b, "content": "b2"}
    c = {"role": "user", "content": "c"}
    assert merge_messages([a, b], [b2, c, "junk"]) == [a, b2, c]
    assert merge_messages([], []) == []
