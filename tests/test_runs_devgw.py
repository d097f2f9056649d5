"""Agent and chat runs against the dev gateway: the protocol quirks the real gateway shows
only by chance (merged deltas, ``lifecycle/end`` before the last delta, duplicate error
events, the abort sequence), two runs on one socket, and what a run does across a
disconnect, a gateway restart and its own time limit.  Nothing sleeps: runs are paused
and released by the dev gateway, and tests wait on its counters and on the runs."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import gwclient._runs
from gwclient import (
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayTimeout,
    RequestError,
    RetryPolicy,
    Run,
    RunAborted,
    RunFailed,
    RunInterrupted,
    RunTimedOut,
    UsageError,
)
from gwclient.runs import LifecycleUpdate, StatusUpdate, TextDelta, UsageUpdate
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
TOKEN = "dev-token-runs"
WORDS = " ".join(f"w{i}" for i in range(10))


@pytest.fixture
def gw() -> Iterator[DevGateway]:
    with DevGateway(token=TOKEN) as gateway:
        gateway.runs.when("MERGE", RunScript(merge=True))
        gateway.runs.when("INORDER", RunScript(early_end=False))
        gateway.runs.when("FAIL", RunScript(fail="model exploded", fail_after=2))
        gateway.runs.when("HANG", RunScript(hang=True))
        gateway.runs.when("PAUSE", RunScript(pause_after=2))
        gateway.runs.when("SLOW", RunScript(delay=0.01))
        yield gateway


def config(gw: DevGateway, retry: RetryPolicy = FAST) -> GatewayConfig:
    return GatewayConfig(url=gw.url, token=TOKEN, retry=retry, connect_timeout=5.0, request_timeout=10.0)


@pytest.fixture
def conn(gw: DevGateway) -> GatewayConnection:
    return GatewayConnection.shared(config(gw))


def wait_paused(gw: DevGateway, n: int = 1) -> None:
    assert gw.wait_for(lambda g: g.runs.paused >= n, timeout=10)


# ------------------------------------------------------------------------ streaming


def test_chat_run_streams_and_tolerates_lifecycle_end_before_the_last_delta(conn: GatewayConnection) -> None:
    run = conn.chat("agent:main:a", f"hello {WORDS}")
    deltas = list(run)
    result = run.wait(5)
    assert result.text == f"ECHO: hello {WORDS}" == "".join(deltas)
    updates = list(run.updates())
    kinds = [type(u).__name__ for u in updates]
    end = next(i for i, u in enumerate(updates) if isinstance(u, LifecycleUpdate) and u.phase == "end")
    last_text = max(i for i, u in enumerate(updates) if isinstance(u, TextDelta))
    assert end < last_text, kinds  # the quirk happened, and the last delta still counted
    assert [u.phase for u in updates if isinstance(u, StatusUpdate)] == [
        "preparing_workspace", "preparing_context", "starting_model"]
    assert any(isinstance(u, UsageUpdate) and u.output_tokens == 12 for u in updates)
    assert updates[-1] == [u for u in updates if isinstance(u, TextDelta)][-1]


def test_in_order_events_give_the_same_result(conn: GatewayConnection) -> None:
    run = conn.chat("agent:main:a", f"INORDER {WORDS}")
    assert "".join(run) == run.wait(5).text == f"ECHO: INORDER {WORDS}"


def test_merged_deltas_with_seq_skips_assemble_the_final_text(conn: GatewayConnection, gw: DevGateway) -> None:
    with conn.subscribe("chat") as raw:
        run = conn.chat("agent:main:m", f"MERGE {WORDS}")
        deltas = list(run)
        seqs = []
        while True:
            push = raw.get(timeout=5)
            if isinstance(push, Event) and push.payload.get("runId") == run.run_id:
                if push.payload["state"] == "delta":
                    seqs.append(push.payload["seq"])
                if push.payload["state"] == "final":
                    break
    assert any(b - a > 1 for a, b in itertools.pairwise(seqs)), seqs  # seq skipped
    assert len(deltas) < 12
    assert "".join(deltas) == run.wait(5).text == f"ECHO: MERGE {WORDS}"


def test_agent_run_streams_and_returns_the_reply(conn: GatewayConnection) -> None:
    run = conn.agent("hi agent", session_key="agent:main:ag")
    assert run.run_id and run.session_key == "agent:main:ag" and run.kind == "agent"
    assert "".join(run) == run.wait(5).text == "ECHO: hi agent"


def test_agent_run_without_a_session_key_learns_it_from_its_events(conn: GatewayConnection) -> None:
    run = conn.agent("no key")
    assert run.session_key == ""  # the accepted answer names none
    assert run.wait(5).text == "ECHO: no key"
    assert run.session_key == f"agent:main:explicit:{run.run_id}"


def test_agent_run_without_a_session_key_can_be_aborted_at_once(conn: GatewayConnection, gw: DevGateway) -> None:
    run = conn.agent("PAUSE no key")
    assert run.abort() is True
    with pytest.raises(RunAborted):
        run.wait(5)


def test_re_sent_idempotency_keys_never_start_a_second_run(conn: GatewayConnection, gw: DevGateway) -> None:
    first = conn.agent("once", idempotency_key="key-agent-1").wait(5)
    again = conn.agent("once", idempotency_key="key-agent-1")
    assert again.done and again.wait(1).text == first.text == "ECHO: once"
    chat_first = conn.chat("agent:main:i", "twice", idempotency_key="key-chat-1").wait(5)
    chat_again = conn.chat("agent:main:i", "twice", idempotency_key="key-chat-1").wait(5)
    assert chat_again.text == chat_first.text and chat_again.recovered
    assert gw.runs.started() == 2


def test_two_runs_on_one_socket_keep_their_events_apart(conn: GatewayConnection, gw: DevGateway) -> None:
    runs = [conn.chat("agent:main:c1", f"SLOW one {WORDS}"),
            conn.agent(f"SLOW two {WORDS}", session_key="agent:main:c2"),
            conn.chat("agent:main:c3", f"SLOW MERGE three {WORDS}")]
    got: list[Future[tuple[str, str]]] = [Future() for _ in runs]

    def consume(i: int, run: Run) -> None:
        try:
            got[i].set_result(("".join(run), run.wait(5).text))
        except BaseException as exc:
            got[i].set_exception(exc)

    threads = [threading.Thread(target=consume, args=(i, r)) for i, r in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got[0].result(0) == (f"ECHO: SLOW one {WORDS}",) * 2
    assert got[1].result(0) == (f"ECHO: SLOW two {WORDS}",) * 2
    assert got[2].result(0) == (f"ECHO: SLOW MERGE three {WORDS}",) * 2
    assert gw.handshakes_completed == 1 and gw.sockets_accepted == 1


def test_several_threads_consume_one_run(conn: GatewayConnection) -> None:
    run = conn.chat("agent:main:many", f"SLOW {WORDS}")
    texts: list[Future[str]] = [Future() for _ in range(3)]

    def consume(i: int) -> None:
        texts[i].set_result("".join(run))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {f.result(0) for f in texts} == {f"ECHO: SLOW {WORDS}"}


# ------------------------------------------------------------------------ failures


def test_failed_run_raises_the_first_error_and_ignores_the_duplicate(conn: GatewayConnection) -> None:
    with conn.subscribe("chat") as raw:
        run = conn.chat("agent:main:f", "FAIL now")
        with pytest.raises(RunFailed) as info:
            run.wait(5)
        errors: list[Any] = []
        while len(errors) < 2:
            push = raw.get(timeout=5)
            if isinstance(push, Event) and push.payload.get("runId") == run.run_id and push.payload["state"] == "error":
                errors.append(push.payload)
    assert errors[1]["seq"] == 1 and "Agent failed before reply" in errors[1]["errorMessage"]  # it was sent
    err = info.value
    assert err.reason == "model exploded" and err.kind == "error" and not isinstance(err, RunTimedOut)
    assert err.partial_text == "ECHO: FAIL" and err.run_id == run.run_id
    with pytest.raises(RunFailed):
        list(run)  # iterating ends with the same error
    assert run.error is err


def test_failed_agent_run(conn: GatewayConnection) -> None:
    with pytest.raises(RunFailed, match="model exploded"):
        conn.agent("FAIL agent", session_key="agent:main:fa").wait(5)


def test_gateway_timeout_raises_run_timed_out(conn: GatewayConnection) -> None:
    run = conn.chat("agent:main:t", "HANG", timeout=0.3)
    with pytest.raises(RunTimedOut) as info:
        run.wait(10)
    assert isinstance(info.value, GatewayTimeout) and info.value.kind == "timeout"


def test_wait_timeout_raises_gateway_timeout_and_the_run_goes_on(conn: GatewayConnection, gw: DevGateway) -> None:
    run = conn.chat("agent:main:w", "HANG on")
    wait_paused(gw)
    with pytest.raises(GatewayTimeout) as info:
        run.wait(0.2)
    assert not isinstance(info.value, RunTimedOut) and not run.done
    gw.runs.release()
    assert run.wait(5).text == "ECHO: HANG on"


def test_start_errors_propagate(conn: GatewayConnection) -> None:
    with pytest.raises(UsageError):
        conn.chat("", "x")
    with pytest.raises(RequestError, match="message"):
        conn.chat("agent:main:bad", None)  # type: ignore[arg-type]
    assert conn.chat("agent:main:ok", "fine").wait(5).text == "ECHO: fine"


# ------------------------------------------------------------------------ abort


def test_abort_ends_the_run_as_aborted_and_ignores_the_lifecycle_tail(conn: GatewayConnection, gw: DevGateway) -> None:
    run = conn.chat("agent:main:ab", f"PAUSE {WORDS}")
    wait_paused(gw)
    assert run.abort() is True
    with pytest.raises(RunAborted) as info:
        run.wait(5)
    assert info.value.stop_reason == "rpc" and info.value.partial_text == "ECHO: PAUSE"
    assert gw.runs.status(run.run_id) == "aborted"
    assert run.abort() is False
    seen: list[Any] = []
    with pytest.raises(RunAborted):
        seen.extend(run.updates())
    assert seen and not any(isinstance(u, LifecycleUpdate) and u.phase == "error" for u in seen)


def test_context_manager_aborts_an_unfinished_run(conn: GatewayConnection, gw: DevGateway) -> None:
    with conn.agent(f"PAUSE {WORDS}", session_key="agent:main:cm") as run:
        wait_paused(gw)
    assert isinstance(run.error, RunAborted)
    assert gw.runs.status(run.run_id) == "aborted"


def test_context_manager_leaves_a_finished_run_alone(conn: GatewayConnection, gw: DevGateway) -> None:
    with conn.chat("agent:main:cm2", "done soon") as run:
        run.wait(5)
    assert run.result is not None and gw.requests_by_method.get("chat.abort", 0) == 0


# ------------------------------------------------------------------------ reconnects


def test_disconnect_then_reconnect_keeps_streaming_the_same_run(conn: GatewayConnection, gw: DevGateway) -> None:
    run = conn.chat("agent:main:d", f"PAUSE {WORDS}")
    wait_paused(gw)
    gw.drop_connections()
    streamed: Future[str] = Future()
    consumer = threading.Thread(target=lambda: streamed.set_result("".join(run)))
    consumer.start()  # it sees the reconnect and asks agent.wait: "still running"
    assert gw.wait_for(lambda g: g.requests_by_method.get("agent.wait", 0) >= 1, timeout=10)
    gw.runs.release()
    consumer.join(10)
    result = run.wait(5)
    assert result.text == f"ECHO: PAUSE {WORDS}"
    assert streamed.result(0) == result.text  # every word reached the consumer
    assert gw.requests_by_method.get("agent.wait", 0) == 1
    assert gw.handshakes_completed == 2


def test_run_that_ended_while_disconnected_is_recovered_with_agent_wait(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, RetryPolicy(initial=1.0, maximum=1.0, jitter=0.0)))
    run = conn.chat("agent:main:r", f"PAUSE {WORDS}")
    wait_paused(gw)
    gw.drop_connections()
    gw.runs.release()  # the run ends on the gateway while the client is away
    assert gw.wait_for(lambda g: g.runs.status(run.run_id) == "ok", timeout=5)
    result = run.wait(15)
    assert result.text == f"ECHO: PAUSE {WORDS}" and result.recovered
    assert gw.requests_by_method.get("agent.wait", 0) >= 1


def test_run_finished_before_a_restart_is_recovered_from_chat_history(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, RetryPolicy(initial=1.0, maximum=1.0, jitter=0.0)))
    run = conn.chat("agent:main:h", f"PAUSE {WORDS}")
    wait_paused(gw)
    gw.drop_connections()
    gw.runs.release()
    assert gw.wait_for(lambda g: g.runs.status(run.run_id) == "ok", timeout=5)
    gw.restart()  # the new gateway process no longer knows the run; its history does
    result = run.wait(15)
    assert result.text == f"ECHO: PAUSE {WORDS}" and result.recovered
    assert gw.requests_by_method.get("chat.history", 0) >= 1


def test_restart_during_a_run_ends_it_with_run_interrupted(conn: GatewayConnection, gw: DevGateway) -> None:
    run = conn.chat("agent:main:x", f"PAUSE {WORDS}")
    wait_paused(gw)
    gw.restart()
    with pytest.raises(RunInterrupted) as info:
        run.wait(15)
    assert info.value.partial_text == "ECHO: PAUSE" and info.value.run_id == run.run_id


def test_a_run_never_waits_past_its_limit_while_disconnected(conn: GatewayConnection, gw: DevGateway,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gwclient._runs, "GRACE_SECONDS", 0.3)
    run = conn.chat("agent:main:lim", "HANG forever", timeout=0.5)
    wait_paused(gw)
    gw.restart_begin()  # the gateway is gone and stays gone
    try:
        with pytest.raises(RunInterrupted):
            run.wait(10)
        assert run.started_at and run.done
    finally:
        gw.restart_end()


def test_shutdown_during_a_run_interrupts_it(conn: GatewayConnection, gw: DevGateway) -> None:
    run = conn.chat("agent:main:s", "HANG")
    wait_paused(gw)
    conn.shutdown()
    with pytest.raises(RunInterrupted):
        run.wait(5)


def test_blocking_run_calls_from_a_gwclient_thread_raise_usage_error(conn: GatewayConnection) -> None:
    run = conn.chat("agent:main:u", "hi")
    got: Future[BaseException | None] = Future()

    def on_gwclient_thread() -> None:
        try:
            run.wait(1)
            got.set_result(None)
        except BaseException as exc:
            got.set_result(exc)

    threading.Thread(target=on_gwclient_thread, name="gwclient-fake").start()
    assert isinstance(got.result(5), UsageError)
    assert run.wait(5).text == "ECHO: hi"


def test_a_dropped_run_releases_its_subscription(conn: GatewayConnection, gw: DevGateway) -> None:
    import gc

    run = conn.chat("agent:main:drop", "HANG")
    sub = run._sub
    assert not sub.closed
    del run
    gc.collect()
    conn.subscribe().close()  # the bus runs the handed-over close() (outside its lock)
    assert sub.closed
    gw.runs.release()
