"""Agent and chat runs against the real gateway (openclaw@2026.9.6), with a local model.

The gateway's only model is :class:`ModelServer` (an OpenAI-compatible SSE server on
loopback): it echoes ``ECHO: <message>`` word by word, and a marker in the message picks
another behaviour (``FAIL500``, ``FAIL400``, ``SLOW``, ``HANG``).  Provider retries are off
(``settings.json``), so a failing model fails a run in about a second.

One gateway serves the module (it takes 10-15 s to start and ~10 s for its first turn, done
once by the fixture); every test uses its own session keys, because two runs in one
session at once make the gateway fail the second.  The restart test comes last: a hanging
turn makes the gateway's stop take ~20 s (it is killed), so the restart takes ~35 s.
Nothing sleeps: tests wait on runs, futures and the model server's counters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from _util import SHARED_SERVER_PORTS

from gwclient import (
    GatewayConfig,
    GatewayConnection,
    GatewayTimeout,
    RetryPolicy,
    Run,
    RunAborted,
    RunFailed,
    RunInterrupted,
    RunResult,
    RunTimedOut,
    Subscription,
)
from gwclient.runs import LifecycleUpdate, StatusUpdate, TextDelta, UsageUpdate
from gwclient.testing import HANG, ModelServer, RealGateway, fail, slow

pytestmark = [pytest.mark.realgateway, pytest.mark.timeout(120), pytest.mark.usefixtures("shutdown_all_after")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: chat.send runs send ``run_status`` phases on 2026.9.6, none on 2026.7.1 and 2026.5.12
#: (the releases between are unchecked).
RUN_STATUS_SINCE = (2026, 9, 0)
SLOW_WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa"


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        SHARED_SERVER_PORTS.add(server.port)  # the gateway connects to it on its own schedule
        server.when("FAIL500", fail(500))
        server.when("FAIL400", fail(400))
        server.when("SLOW", slow(0.4))
        server.when("BRISK", slow(0.05))
        server.when("HANG", HANG)
        try:
            yield server
        finally:
            SHARED_SERVER_PORTS.discard(server.port)


@pytest.fixture(scope="module")
def gateway(model: ModelServer) -> Iterator[RealGateway]:
    gw = RealGateway(config=model.gateway_config())
    ModelServer.write_agent_settings(gw.state_dir, max_retries=0)
    with gw:
        # The first turn after a start bootstraps the workspace (~10 s): do it here once.
        conn = GatewayConnection.shared(config(gw))
        try:
            # (with a session key: 2026.5.12 refuses an agent turn without one)
            assert conn.agent("warm up", session_key="agent:main:warm-up", timeout=60).wait(90).text == "ECHO: warm up"
        finally:
            conn.shutdown()
        yield gw


def config(gw: RealGateway) -> GatewayConfig:
    return GatewayConfig(url=gw.url, token=gw.token, retry=RetryPolicy(initial=0.2, maximum=2.0),
                         connect_timeout=10.0, request_timeout=20.0)


@pytest.fixture
def conn(gateway: RealGateway) -> GatewayConnection:
    return GatewayConnection.shared(config(gateway))


@pytest.fixture(autouse=True)
def model_idle(model: ModelServer) -> Iterator[None]:
    """After each test, wait for the model server to finish the requests the test caused
    (a run can end on the gateway before the server has closed the stream)."""
    yield
    model.release()
    assert model.wait_for(lambda m: m.active == 0, timeout=20)
    model.close_idle()  # the gateway opens connections ahead of its next request


def session() -> str:
    return f"agent:main:test-{uuid.uuid4().hex[:8]}"


def first_text(run: Run, timeout: float = 30.0) -> str:
    """Wait for the run's first text delta."""
    for update in run.updates(timeout=timeout):
        if isinstance(update, TextDelta) and update.text:
            return str(update.text)
    raise AssertionError("the run ended without text")


# ------------------------------------------------------------------------ successful runs


def test_chat_run_streams_the_reply_and_wait_returns_it(conn: GatewayConnection, gateway: RealGateway) -> None:
    key = session()
    with conn.chat(key, "hello chat world") as run:
        deltas = list(run)
        result = run.wait(5)
    assert isinstance(result, RunResult)
    assert result.text == "ECHO: hello chat world"
    assert "".join(deltas) == result.text
    if gateway.version_info >= (2026, 7, 1):  # 2026.5.12 sends a fast reply as one delta
        assert len(deltas) >= 2, deltas  # streamed, not one block
    # (2026.5.12's chat final has no stopReason)
    assert result.run_id == run.run_id
    assert result.stop_reason == ("stop" if gateway.version_info >= (2026, 7, 1) else None)
    updates = list(run.updates())
    # run_status phases: 2026.9 (2026.5.12 and 2026.7.1 send none for a chat.send run)
    statuses = [u.phase for u in updates if isinstance(u, StatusUpdate)]
    assert ("starting_model" in statuses) == (gateway.version_info >= RUN_STATUS_SINCE), statuses
    assert any(isinstance(u, LifecycleUpdate) and u.phase == "end" for u in updates)
    if gateway.version_info >= RUN_STATUS_SINCE:  # 2026.7.1 streams no usage either
        assert any(isinstance(u, UsageUpdate) and u.output_tokens for u in updates)
    assert run.session_key == key and run.done and run.error is None


def test_agent_run_streams_the_reply_and_wait_returns_it(conn: GatewayConnection, model: ModelServer) -> None:
    key = session()
    before = model.counts.get("/v1/chat/completions", 0)
    run = conn.agent("hello agent", session_key=key)
    assert run.run_id and run.session_key == key
    deltas = list(run)
    result = run.wait(5)
    assert result.text == "ECHO: hello agent" == "".join(deltas)
    assert model.counts["/v1/chat/completions"] == before + 1


def test_agent_run_over_the_responses_api(conn: GatewayConnection, model: ModelServer) -> None:
    before = model.counts.get("/v1/responses", 0)
    run = conn.agent("via responses", session_key=session(), model="fakeresp/fake-model")
    deltas = list(run)
    assert run.wait(5).text == "ECHO: via responses" == "".join(deltas)
    assert model.counts["/v1/responses"] == before + 1


def test_two_concurrent_runs_on_one_socket_keep_their_events_apart(conn: GatewayConnection) -> None:
    words_a = "BRISK " + " ".join(f"a{i}" for i in range(12))
    words_b = "BRISK " + " ".join(f"b{i}" for i in range(12))
    run_a = conn.chat(session(), words_a)
    run_b = conn.agent(words_b, session_key=session())
    got: dict[str, Future[tuple[str, str]]] = {"a": Future(), "b": Future()}

    def consume(name: str, run: Run) -> None:
        try:
            deltas = "".join(run)
            got[name].set_result((deltas, run.wait(5).text))
        except BaseException as exc:
            got[name].set_exception(exc)

    threads = [threading.Thread(target=consume, args=("a", run_a)), threading.Thread(target=consume, args=("b", run_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got["a"].result(0) == (f"ECHO: {words_a}",) * 2
    assert got["b"].result(0) == (f"ECHO: {words_b}",) * 2
    assert run_a.run_id != run_b.run_id


# ------------------------------------------------------------------------ failing runs


def test_failing_model_raises_run_failed_quickly(conn: GatewayConnection, gateway: RealGateway) -> None:
    run = conn.chat(session(), "FAIL500 please")
    try:
        # ~1 s with retries off; 85 s with the gateway's default retries (more time on
        # 2026.5.12, whose handling of a failing model is not settled: see the README)
        result = run.wait(20 if gateway.version_info >= (2026, 7, 1) else 100)
    except RunFailed as exc:
        err = exc
    else:
        pytest.fail(f"a failing model gave a successful run: {result!r} {list(run.updates())!r}")
    assert not isinstance(err, RunTimedOut)
    # the gateway's own words: "HTTP 500 ..." (2026.9.6), "500 fake model failure (500)" (2026.7.1)
    assert "500" in err.reason and err.run_id == run.run_id
    if gateway.version_info >= RUN_STATUS_SINCE:  # 2026.7.1 sends no errorDetail
        assert err.detail.get("failoverReason") == "server_error"
    # The duplicate (seq 1) chat error event that follows is ignored: still the first one.
    assert run.error is err


def test_rejected_request_fails_an_agent_run(conn: GatewayConnection) -> None:
    run = conn.agent("FAIL400 please", session_key=session())
    with pytest.raises(RunFailed) as info:
        list(run)  # iterating raises the run's error at the end
    assert info.value.kind == "error" and info.value.reason


def test_hanging_model_with_a_short_timeout_raises_a_timeout(conn: GatewayConnection, model: ModelServer) -> None:
    run = conn.chat(session(), "HANG on", timeout=3)
    assert model.wait_hanging(1, timeout=30)
    with pytest.raises(RunTimedOut) as info:
        run.wait(30)
    assert isinstance(info.value, GatewayTimeout) and info.value.kind == "timeout"


def test_wait_timeout_leaves_the_run_going(conn: GatewayConnection, model: ModelServer) -> None:
    with conn.chat(session(), "HANG a while") as run:
        assert model.wait_hanging(1, timeout=30)
        with pytest.raises(GatewayTimeout):
            run.wait(0.5)
        assert not run.done
        model.release()
        assert run.wait(30).text == "ECHO: HANG a while"


# ------------------------------------------------------------------------ abort


def test_abort_mid_stream_ends_the_run_as_aborted(conn: GatewayConnection) -> None:
    run = conn.chat(session(), f"SLOW {SLOW_WORDS}")
    assert first_text(run) == "ECHO:"
    assert run.abort() is True
    with pytest.raises(RunAborted) as info:
        run.wait(20)
    assert info.value.stop_reason == "rpc"
    assert info.value.partial_text.startswith("ECHO:") and info.value.partial_text != f"ECHO: SLOW {SLOW_WORDS}"
    assert run.abort() is False  # already over


def test_leaving_the_with_block_aborts_an_agent_run(conn: GatewayConnection, gateway: RealGateway) -> None:
    with conn.agent(f"SLOW {SLOW_WORDS}", session_key=session()) as run:
        first_text(run)
    assert isinstance(run.error, RunAborted)
    answer = conn.request("agent.wait", {"runId": run.run_id, "timeoutMs": 10000})
    # an aborted run: status "error" from 2026.7.1 on, "timeout" on 2026.5.12
    assert answer["status"] == ("error" if gateway.version_info >= (2026, 7, 1) else "timeout"), answer
    assert answer.get("stopReason") == "rpc" or answer.get("error") == "aborted", answer


# ------------------------------------------------------------------------ CLI


def cli(gw: RealGateway, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, OPENCLAW_GATEWAY_URL=gw.url, OPENCLAW_GATEWAY_TOKEN=gw.token,
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))

    # A child inherits an ignored SIGINT (some runners ignore it): restore the default first.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from gwclient.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_chat_streams_the_reply(gateway: RealGateway) -> None:
    proc = cli(gateway, "chat", "--session", session(), "hello from the cli")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "ECHO: hello from the cli\n"


def test_cli_chat_defaults_to_the_main_session(gateway: RealGateway, conn: GatewayConnection) -> None:
    proc = cli(gateway, "chat", "--json", "to the main session")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["kind"] == "result" and lines[-1]["text"] == "ECHO: to the main session"
    history = conn.request("chat.history", {"sessionKey": "agent:main:main", "limit": 2})["messages"]
    # (2026.7.1's history entries carry no __openclaw.runId: the reply text says it)
    assert any(m.get("__openclaw", {}).get("runId") == lines[0]["runId"]
               or (m.get("role") == "assistant" and "ECHO: to the main session" in json.dumps(m)) for m in history)


def test_cli_agent_failure_exits_1_with_the_reason(gateway: RealGateway) -> None:
    proc = cli(gateway, "agent", "--session", session(), "FAIL500 cli")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "500" in err and "error:" in err


def test_cli_aborts_the_run_on_sigint(gateway: RealGateway, conn: GatewayConnection) -> None:
    proc = cli(gateway, "chat", "--session", session(), f"SLOW {SLOW_WORDS}")
    assert proc.stdout is not None
    first = proc.stdout.read(5)  # "ECHO:" arrives as the first delta
    assert first == "ECHO:"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run aborted" in err
    assert "kappa" not in first + out


# ------------------------------------------------------------------------ restart (last)


@pytest.mark.timeout(240)
def test_gateway_restart_during_a_run_ends_it_with_run_interrupted(
        conn: GatewayConnection, gateway: RealGateway, model: ModelServer) -> None:
    # A hanging turn keeps the gateway from draining it: SIGTERM, then SIGKILL after 20 s.
    # The new gateway process (a new bootId) has no such run and no reply in its history.
    key = session()
    run = conn.chat(key, "HANG through the restart")
    assert model.wait_hanging(1, timeout=30)
    restarted: Future[None] = Future()

    def restart() -> None:
        try:
            gateway.restart()
            restarted.set_result(None)
        except BaseException as exc:
            restarted.set_exception(exc)

    threading.Thread(target=restart, name="test-restart").start()
    with pytest.raises(RunInterrupted) as info:
        run.wait(150)
    assert info.value.run_id == run.run_id and "restarted" in str(info.value)
    restarted.result(150)
    history = conn.request("chat.history", {"sessionKey": key})["messages"]
    # the gateway kept no reply indeed (2026.7.1 keeps not even the user message)
    assert "assistant" not in [m["role"] for m in history]
    # The connection is back: a new run on it works.
    assert conn.chat(session(), "after restart").wait(60).text == "ECHO: after restart"


@pytest.mark.timeout(240)
def test_a_session_subscription_keeps_delivering_after_a_gateway_restart(
        conn: GatewayConnection, gateway: RealGateway) -> None:
    """The gateway forgets per-connection subscriptions with the socket; gwclient re-issues
    ``sessions.messages.subscribe`` on the new socket before the fresh Snapshot."""
    from gwclient import Event, Snapshot

    key = session()

    def messages_of_one_turn(sub: Subscription, text: str) -> list[Any]:
        assert conn.chat(key, text).wait(60).text == f"ECHO: {text}"
        seen: list[Any] = []
        while len(seen) < 2:  # two session.message per turn (the user's, the reply)
            push = sub.get(timeout=30)
            if isinstance(push, Event) and push.event == "session.message":
                assert push.payload["sessionKey"] == key
                seen.append(push.payload["message"])
        return seen

    with conn.subscribe_session(key) as sub:
        first = messages_of_one_turn(sub, "before restart")
        assert any("before restart" in json.dumps(m) for m in first)
        number = conn.last_snapshot.connection_number if conn.last_snapshot else 0
        gateway.restart()
        while True:
            push = sub.get(timeout=60)
            if isinstance(push, Snapshot) and push.connection_number > number:
                break
        second = messages_of_one_turn(sub, "after restart")
        assert any("after restart" in json.dumps(m) for m in second)
