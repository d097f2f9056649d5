"""Busy retries (issue 18, point 1) against the dev gateway's ``answer_busy`` control:
``UNAVAILABLE`` + ``retryable: true`` before the method runs is retried within the
caller's timeout by ``request()``, ``submit()`` and run starts; nothing else is."""

from __future__ import annotations

import pytest
from _util import DEV_TOKEN

from gwclient import GatewayConfig, GatewayConnection, GatewayUnavailable, RequestError, RetryPolicy
from gwclient._engine.busy import MAX_DELAY, MIN_DELAY, retry_delay
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": DEV_TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def test_request_retries_busy_answers_until_answered(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.answer_busy(3, "echo", retry_after_ms=20)
    assert conn.request("echo", {"x": 1}) == {"x": 1}
    assert gw.busy_answers == 3
    assert gw.requests_by_method["echo"] == 4  # three refused, the fourth answered


def test_submit_retries_busy_answers_from_the_timer_thread(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.answer_busy(5, "echo")  # no retryAfterMs: gwclient's own short backoff
    futures = [conn.submit("echo", i) for i in range(10)]
    assert [f.result(timeout=10) for f in futures] == list(range(10))
    assert gw.busy_answers == 5 and gw.requests_by_method["echo"] == 15


def test_budget_exhausted_raises_the_gateways_error_with_the_attempt_count(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.answer_busy(10_000, "echo", retry_after_ms=100, message="The server is busy.")
    with pytest.raises(GatewayUnavailable) as info:
        conn.request("echo", 1, timeout=0.5)
    error = info.value
    sent = gw.requests_by_method["echo"]
    assert error.attempts == sent and 2 <= sent <= 6  # 100-125 ms apart within 0.5 s
    assert error.retryable and error.code == "UNAVAILABLE"
    assert str(error).startswith("The server is busy.") and f"after {sent} attempts" in str(error)
    fut = conn.submit("echo", 2, timeout=0.5)
    with pytest.raises(GatewayUnavailable) as sinfo:
        fut.result(timeout=5)
    assert sinfo.value.attempts >= 2 and gw.requests_by_method["echo"] == sent + sinfo.value.attempts


def test_not_retried_without_retryable_or_for_other_codes(gw: DevGateway) -> None:
    from gwclient.testing import DevGatewayError

    conn = GatewayConnection.shared(config(gw))
    calls = {"n": 0}

    def down(params: object) -> object:
        calls["n"] += 1
        raise DevGatewayError("UNAVAILABLE", "draining", retryable=False)

    def forbidden(params: object) -> object:
        calls["n"] += 1
        raise DevGatewayError("FORBIDDEN", "no", retryable=True)

    gw.set_handler("dev.down", down)
    gw.set_handler("dev.forbidden", forbidden)
    with pytest.raises(GatewayUnavailable) as info:
        conn.request("dev.down")
    assert info.value.attempts == 1 and calls["n"] == 1
    with pytest.raises(RequestError) as rinfo:
        conn.request("dev.forbidden")
    assert not isinstance(rinfo.value, GatewayUnavailable) and calls["n"] == 2


def test_never_retried_after_the_gateway_accepted(gw: DevGateway) -> None:
    """A two-stage request's final UNAVAILABLE (after ``accepted``) is final."""
    from gwclient._core.frames import ErrorShape, ResponseFrame
    from gwclient._core.protocol import PendingTable

    table: PendingTable[object] = PendingTable()
    table.add("1", "agent", object(), expect_final=True)
    assert table.resolve(ResponseFrame(id="1", ok=True, payload={"status": "accepted", "runId": "r"})) is None
    done = table.resolve(ResponseFrame(id="1", ok=False, error=ErrorShape(code="UNAVAILABLE", message="busy",
                                                                          retryable=True)))
    assert done is not None
    error = done[1]
    assert isinstance(error, GatewayUnavailable) and error.after_accept
    from gwclient._engine.busy import is_busy

    assert not is_busy(error)


def test_run_start_is_retried_with_the_same_idempotency_key(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.answer_busy(2, "chat.send", retry_after_ms=10)
    run = conn.chat("agent:main:busy", "hello", idempotency_key="key-busy-1")
    assert run.run_id == "key-busy-1"
    run.wait(timeout=10)
    assert gw.busy_answers == 2 and gw.requests_by_method["chat.send"] == 3
    gw.answer_busy(1, "agent", retry_after_ms=10)
    agent_run = conn.agent("hello", session_key="agent:main:busy2", idempotency_key="key-busy-2")
    assert agent_run.run_id == "key-busy-2"
    agent_run.wait(timeout=10)
    assert gw.requests_by_method["agent"] == 2


def test_retry_after_is_clamped_and_jittered() -> None:
    big = GatewayUnavailable("busy", code="UNAVAILABLE", retryable=True, retry_after_ms=3_600_000)
    tiny = GatewayUnavailable("busy", code="UNAVAILABLE", retryable=True, retry_after_ms=0)
    hinted = GatewayUnavailable("busy", code="UNAVAILABLE", retryable=True, retry_after_ms=400)
    bare = GatewayUnavailable("busy", code="UNAVAILABLE", retryable=True)
    assert all(MAX_DELAY <= retry_delay(big, 1) <= MAX_DELAY * 1.25 for _ in range(50))
    assert all(MIN_DELAY <= retry_delay(tiny, 1) <= MIN_DELAY * 1.25 for _ in range(50))
    delays = {retry_delay(hinted, 1) for _ in range(50)}
    assert all(0.4 <= d <= 0.5 for d in delays) and len(delays) > 1  # jitter on top of the hint
    assert all(0.05 <= retry_delay(bare, 1) <= 0.15 for _ in range(50))
    assert all(0.2 <= retry_delay(bare, 3) <= 0.6 for _ in range(50))
    assert all(1.0 <= retry_delay(bare, 40) <= 3.0 for _ in range(50))  # capped at 2 s +- 50 %


def test_a_shutdown_fails_a_submit_waiting_to_be_retried(gw: DevGateway) -> None:
    from gwclient import ClientClosed

    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.answer_busy(1, "echo", retry_after_ms=60_000)  # clamped to 5 s: parked meanwhile
    fut = conn.submit("echo", 1, timeout=None)
    # The reader handles answers in order: once this one is back, the busy one was parked.
    assert conn.request("echo", 2) == 2 and gw.busy_answers == 1 and not fut.done()
    conn.shutdown()
    with pytest.raises(ClientClosed):
        fut.result(timeout=2)
