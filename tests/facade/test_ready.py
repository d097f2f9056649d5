"""Issue 18, point 6 against the dev gateway: ``request_sent`` on timeouts and
disconnects, ``wait_for_ready=False``, ``drain()``, attachments checked against
``policy.attachments``, and ``OPENCLAW_PROFILE`` / the handshake timeout variables."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
from _util import DEV_TOKEN

from gwclient import (
    ClientClosed,
    ConnectionState,
    Disconnected,
    GatewayConfig,
    GatewayConnection,
    GatewayTimeout,
    GatewayUnavailable,
    RetryPolicy,
    Snapshot,
    StateChange,
    UsageError,
)
from gwclient._config.config import handshake_timeout
from gwclient._config.locations import openclaw_config_path, profile_port
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": DEV_TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------- request_sent


def test_timeout_says_whether_the_request_was_sent(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.never_answer("status")
    with pytest.raises(GatewayTimeout) as info:
        conn.request("status", timeout=0.2)
    assert info.value.request_sent is True
    with pytest.raises(GatewayTimeout) as sinfo:
        conn.submit("status", timeout=0.2).result(timeout=5)
    assert sinfo.value.request_sent is True
    # Never connected (the gateway refuses the upgrade for now): never sent.
    gw.reject_next_unavailable(1000, retry_after_ms=60_000)
    other = GatewayConnection.shared(config(gw, display_name="never connected"))
    with pytest.raises(GatewayTimeout) as ninfo:
        other.request("health", timeout=0.3)
    assert ninfo.value.request_sent is False and "never sent" in str(ninfo.value)
    gw.clear_faults()


def test_disconnect_says_whether_the_request_was_sent(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.never_answer("status")
    fut = conn.submit("status", timeout=None)
    assert gw.wait_for(lambda g: g.requests_by_method.get("status", 0) == 1, timeout=5)
    gw.drop_connections()
    with pytest.raises(Disconnected) as info:
        fut.result(timeout=10)
    assert info.value.request_sent is True
    # Nothing listens: the request never left (the first attempt's failure).
    port = gw.port
    gw.stop()
    dead = GatewayConnection.shared(GatewayConfig(url=f"ws://127.0.0.1:{port}", token=DEV_TOKEN, retry=FAST))
    with pytest.raises(Disconnected) as dinfo:
        dead.request("health", timeout=10)
    assert dinfo.value.request_sent is False


# ------------------------------------------------------------------- wait_for_ready


def test_wait_for_ready_false_fails_at_once_while_not_connected(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(GatewayUnavailable, match="wait_for_ready=False") as info:
        conn.request("health", wait_for_ready=False)
    assert not info.value.retryable and gw.requests_by_method.get("health", 0) == 0
    conn.connect()  # the failed call started connecting
    assert conn.request("health", wait_for_ready=False)["ok"] is True
    assert conn.submit("echo", 5, wait_for_ready=False).result(timeout=5) == 5
    fast = GatewayConnection.shared(config(gw, wait_for_ready=False, display_name="fail fast"))
    with pytest.raises(GatewayUnavailable):
        fast.submit("health")
    with pytest.raises(GatewayUnavailable):
        fast.request("health")
    fast.connect()
    assert fast.request("health")["ok"] is True
    assert fast.request("health", wait_for_ready=True)["ok"] is True


def test_fail_fast_calls_during_an_outage_leave_nothing_behind(gw: DevGateway) -> None:
    """Each wait_for_ready=False call while reconnecting only nudges the channel: it must
    not leave a waiter in the core for every call (a long outage would grow without end)."""
    conn = GatewayConnection.shared(config(gw))
    with conn.subscribe(events=["tick"]) as sub:
        while not isinstance(sub.get(10), Snapshot):
            pass  # connecting
        gw.reject_next_unavailable(1000, retry_after_ms=60_000)  # it stays down
        gw.drop_connections()
        while not (isinstance(push := sub.get(10), StateChange) and push.state == ConnectionState.RECONNECTING):
            pass
        for _ in range(1000):
            with pytest.raises(GatewayUnavailable):
                conn.request("health", wait_for_ready=False)
    assert len(conn._channel()._core.connect_waiters) == 0


# ------------------------------------------------------------------------- drain


def test_drain_lets_in_flight_requests_and_runs_finish_then_closes(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.set_method_delay("status", 0.3)
    pending = conn.submit("status")
    run = conn.chat("agent:main:drain", "hello")
    assert not pending.done() and not run.done
    assert conn.drain(timeout=10) is True
    assert pending.result(timeout=0)["ok"] is True  # answered before the close
    assert run.done and run.wait(timeout=0).text
    assert conn.closed and conn.state == ConnectionState.CLOSED
    with pytest.raises(ClientClosed):
        conn.request("health")


def test_drain_refuses_new_requests_and_gives_up_at_the_deadline(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.connect()
    gw.never_answer("status")
    stuck = conn.submit("status", timeout=None)
    assert gw.wait_for(lambda g: g.requests_by_method.get("status", 0) == 1, timeout=5)
    done = threading.Event()
    outcome: dict[str, object] = {}

    def drainer() -> None:
        outcome["ok"] = conn.drain(timeout=1.0)
        done.set()

    thread = threading.Thread(target=drainer, name="test-drain")
    thread.start()
    # Real round trips until the drain has begun: then a new request is refused at once.
    with pytest.raises(ClientClosed, match="draining"):
        for _ in range(100_000):
            conn.request("echo", 1)
    assert not done.is_set()
    thread.join(10)
    assert outcome == {"ok": False}
    with pytest.raises(ClientClosed):
        stuck.result(timeout=5)


# --------------------------------------------------------------------- attachments


def _attachment(size: int, **fields: object) -> dict[str, object]:
    return {"content": base64.b64encode(b"x" * size).decode(), **fields}


def test_attachments_over_the_policy_are_refused_before_sending(gw: DevGateway) -> None:
    gw.policy_overrides["attachments"] = {"maxBytes": 1000, "maxImageBytes": 500}
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(UsageError, match=r"policy\.attachments\.maxImageBytes of 500 bytes"):
        conn.chat("agent:main:att", "look", attachments=[_attachment(600, type="image", fileName="a.png")])
    with pytest.raises(UsageError, match=r"doc\.pdf is 1001 bytes.*maxBytes of 1000"):
        conn.chat("agent:main:att", "read", attachments=[
            _attachment(10, mimeType="text/plain"), _attachment(1001, mimeType="application/pdf",
                                                                 fileName="doc.pdf")])
    with pytest.raises(UsageError, match="maxBytes"):
        conn.chat("agent:main:att", "big", attachments=[{"sizeBytes": 5000, "content": "AA=="}])
    assert gw.requests_by_method.get("chat.send", 0) == 0
    run = conn.chat("agent:main:att", "fits", attachments=[_attachment(400, mimeType="image/png")])
    run.wait(timeout=10)
    assert gw.requests_by_method["chat.send"] == 1


def test_no_policy_no_check(gw: DevGateway) -> None:
    """An older gateway announces no attachments policy: nothing is refused client-side."""
    conn = GatewayConnection.shared(config(gw))
    assert conn.connect().policy.attachments is None
    conn.chat("agent:main:att2", "ok", attachments=[_attachment(100_000, type="image")]).wait(timeout=10)


# ----------------------------------------------------------- environment variables


def test_openclaw_profile_selects_the_profiles_state_dir_and_port(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "OPENCLAW_PROFILE": "work"}
    assert openclaw_config_path(env) == tmp_path / ".openclaw-work" / "openclaw.json"
    assert openclaw_config_path({**env, "OPENCLAW_PROFILE": "Default"}) == tmp_path / ".openclaw" / "openclaw.json"
    assert openclaw_config_path({**env, "OPENCLAW_PROFILE": "../x"}) == tmp_path / ".openclaw" / "openclaw.json"
    assert openclaw_config_path({**env, "OPENCLAW_STATE_DIR": str(tmp_path / "s")}) == tmp_path / "s" / "openclaw.json"
    (tmp_path / ".openclaw-work").mkdir()
    (tmp_path / ".openclaw-work" / "openclaw.json").write_text(json.dumps({"gateway": {"auth": {"token": "w"}}}))
    cfg = GatewayConfig.from_environment(env)
    assert cfg.token == "w"
    # No gateway.port: the official tools' per-profile port (FNV-1a of the name).
    assert cfg.port == profile_port(env) and 20000 <= cfg.port < 60000 and cfg.port != 18789
    (tmp_path / ".openclaw-work" / "openclaw.json").write_text(json.dumps({"gateway": {"port": 19555}}))
    assert GatewayConfig.from_environment(env).port == 19555


def test_handshake_timeout_variables() -> None:
    assert handshake_timeout({}) is None
    assert handshake_timeout({"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "4000"}) == 4.0
    assert handshake_timeout({"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "4000",
                              "OPENCLAW_CONNECT_CHALLENGE_TIMEOUT_MS": "2500"}) == 2.5
    assert handshake_timeout({"OPENCLAW_CONNECT_CHALLENGE_TIMEOUT_MS": "10"}) == 0.25  # at least 250 ms
    for bad in ("", "0", "-5", "1.5", "abc"):
        assert handshake_timeout({"OPENCLAW_HANDSHAKE_TIMEOUT_MS": bad}) is None
    cfg = GatewayConfig.from_environment({"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "+7000"}, config_path=None)
    assert cfg.connect_timeout == 7.0
    assert GatewayConfig.from_environment({"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "7000"},
                                          connect_timeout=3.0).connect_timeout == 3.0
