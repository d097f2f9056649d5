"""The DESIGN.md invariants, one test each (plus the stress cases of the core issue),
against the dev gateway: a real websocket server on loopback.  Sockets are counted by the
gateway (what it actually accepted), threads by ``threading.enumerate()``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from _util import DEV_TOKEN

from gwclient import (
    AuthRejected,
    ClientClosed,
    ConnectionState,
    Disconnected,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    Overflow,
    PairingRequired,
    Push,
    RetryPolicy,
    SeqGap,
    Snapshot,
    StateChange,
    Subscription,
    UsageError,
)
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
TOKEN = DEV_TOKEN  # the shared ``gw`` fixture's token (conftest.py)


def config(gw: DevGateway, **changes: object) -> GatewayConfig:
    base: dict[str, object] = {"url": gw.url, "token": TOKEN, "retry": FAST, "connect_timeout": 5.0,
                               "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def next_of(sub: Subscription, kind: type, timeout: float = 10.0) -> Push:
    """The next push of ``kind`` (skipping state changes and ticks)."""
    deadline = time.monotonic() + timeout
    while True:
        item = sub.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(item, kind):
            return item


def until_state(sub: Subscription, state: ConnectionState, timeout: float = 10.0) -> StateChange:
    """The next StateChange into ``state`` (earlier pushes are skipped)."""
    while True:
        push = next_of(sub, StateChange, timeout)
        if isinstance(push, StateChange) and push.state == state:
            return push


def gwclient_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gwclient-")]


# --------------------------------------------------------------- 1, 2, 3: sockets


def test_repeated_requests_open_no_further_socket(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    assert conn.state == ConnectionState.IDLE and conn.last_snapshot is None
    for i in range(50):
        assert conn.request("echo", {"i": i}) == {"i": i}
    assert conn.request("health")["ok"] is True
    assert gw.sockets_accepted == 1 and gw.handshakes_completed == 1
    assert conn.state == ConnectionState.CONNECTED  # type: ignore[comparison-overlap]  # (mypy narrowed the property)
    assert conn.last_snapshot is not None and conn.last_snapshot.connection_number == 1
    conn.shutdown()
    assert conn.state == ConnectionState.CLOSED


def test_concurrent_first_requests_share_one_socket(gw: DevGateway) -> None:
    """32 threads x 200 requests on a cold connection: one socket, every request answered."""
    conn = GatewayConnection.shared(config(gw))
    start = threading.Barrier(32)

    def worker(n: int) -> int:
        start.wait()
        ok = 0
        for i in range(200):
            assert conn.request("echo", {"n": n, "i": i}) == {"n": n, "i": i}
            ok += 1
        return ok

    with ThreadPoolExecutor(32) as pool:
        answered = sum(pool.map(worker, range(32)))
    assert answered == 32 * 200
    assert gw.sockets_accepted == 1 and gw.max_open_sockets == 1
    assert gw.requests_by_method["echo"] == 32 * 200


def test_equal_configs_share_one_socket_different_configs_get_one_each(gw: DevGateway) -> None:
    a1 = GatewayConnection.shared(config(gw))
    a2 = GatewayConnection.shared(config(gw))
    assert a1 is a2
    b = GatewayConnection.shared(config(gw, display_name="other tool"))
    assert b is not a1
    # A provider that answers the same effective config shares the explicit one's socket.
    follower = GatewayConnection.shared(provider=lambda: config(gw))
    for conn in (a1, a2, b, follower):
        conn.request("health")
    assert gw.sockets_accepted == 2 and gw.open_sockets == 2


def test_config_change_closes_old_socket_and_connects_once(gw: DevGateway) -> None:
    current = {"config": config(gw)}
    conn = GatewayConnection.shared(provider=lambda: current["config"])
    assert conn.request("echo", 1) == 1
    gw.set_token("rotated-token", close_existing=False)
    current["config"] = config(gw, token="rotated-token")
    for _ in range(20):
        conn.request("health")
    assert gw.sockets_accepted == 2
    assert gw.wait_for(lambda g: g.open_sockets == 1, timeout=5)


# ------------------------------------------------------------------- 5: shutdown


def test_shutdown_stops_everything(gw: DevGateway) -> None:
    gw.never_answer("status")
    conn = GatewayConnection.shared(config(gw))
    sub = conn.subscribe()
    conn.request("health")
    pending: Future[object] = Future()

    def call() -> None:
        try:
            pending.set_result(conn.request("status", timeout=None))
        except BaseException as exc:
            pending.set_exception(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert gw.wait_for(lambda g: g.requests_by_method.get("status", 0) == 1, timeout=5)
    conn.shutdown()
    with pytest.raises(ClientClosed):
        pending.result(timeout=5)  # failed at once, not after a timeout
    caller.join()
    list(sub)  # iteration ends (queued items first), it does not hang
    assert sub.closed
    assert gwclient_threads() == []
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=5)
    with pytest.raises(ClientClosed):
        conn.request("health")
    accepted = gw.sockets_accepted
    gw.drop_connections()
    assert gw.sockets_accepted == accepted  # nothing is left that could reconnect


def test_shutdown_while_reconnecting_leaves_nothing(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, retry=RetryPolicy(initial=30, maximum=30, jitter=0)))
    sub = conn.subscribe(include_state=True)
    conn.request("health")
    gw.drop_connections()
    until_state(sub, ConnectionState.RECONNECTING)
    conn.shutdown(timeout=5)  # interrupts the 30 s backoff wait
    assert gwclient_threads() == []
    assert gw.sockets_accepted == 1


def test_use_from_a_gwclient_thread_raises(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    outcome: Future[BaseException] = Future()

    sub = conn.subscribe()
    sub_outcome: Future[BaseException] = Future()

    def misuse() -> None:
        try:
            conn.request("health")
        except BaseException as exc:
            outcome.set_result(exc)
        try:
            sub.get(timeout=1)
        except BaseException as exc:
            sub_outcome.set_result(exc)

    thread = threading.Thread(target=misuse, name="gwclient-pretend")
    thread.start()
    thread.join()
    assert isinstance(outcome.result(timeout=5), UsageError)
    assert isinstance(sub_outcome.result(timeout=5), UsageError)
    with pytest.raises(UsageError):
        GatewayConnection(config=None, provider=None, key=1)


# ------------------------------------------------------ 6, 7, 9: consumers, snapshot


def test_poller_rpc_user_and_watcher_share_one_socket(gw: DevGateway) -> None:
    cfg = config(gw)
    stop = threading.Event()
    counts = {"poll": 0, "rpc": 0}
    watcher_saw: Future[Event] = Future()

    def poller() -> None:
        conn = GatewayConnection.shared(cfg)
        while not stop.is_set():
            conn.request("health")
            counts["poll"] += 1

    def rpc_user() -> None:
        conn = GatewayConnection.shared(cfg)
        while not stop.is_set():
            conn.request("status")
            counts["rpc"] += 1

    def watcher(sub: Subscription) -> None:
        for push in sub:
            if isinstance(push, Event) and push.event == "custom.ping":
                watcher_saw.set_result(push)
                return

    sub = GatewayConnection.shared(cfg).subscribe()
    threads = [threading.Thread(target=f) for f in (poller, rpc_user)]
    threads.append(threading.Thread(target=watcher, args=(sub,)))
    for t in threads:
        t.start()
    assert gw.wait_for(lambda g: g.requests_by_method.get("status", 0) >= 20
                       and g.requests_by_method.get("health", 0) >= 20, timeout=10)
    gw.broadcast("custom.ping", {"n": 1})
    assert watcher_saw.result(timeout=5).payload == {"n": 1}
    stop.set()
    for t in threads:
        t.join()
    sub.close()
    assert gw.sockets_accepted == 1 and gw.max_open_sockets == 1


def test_subscribe_after_connect_yields_latest_snapshot_then_live_pushes(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    with conn.subscribe(include_state=False) as sub:
        first = sub.get(timeout=5)
        assert isinstance(first, Snapshot) and first.connection_number == 1
        assert first.hello.protocol == 4
        gw.broadcast("custom.one", {"v": 1})
        event = next_of(sub, Event)
        while isinstance(event, Event) and event.event != "custom.one":
            event = next_of(sub, Event)
        assert isinstance(event, Event) and event.payload == {"v": 1} and event.seq is not None


def test_every_reconnect_yields_a_fresh_snapshot(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    with conn.subscribe() as sub:
        assert isinstance(next_of(sub, Snapshot), Snapshot)
        for n in (2, 3):
            gw.drop_connections()
            snap = next_of(sub, Snapshot)
            assert isinstance(snap, Snapshot) and snap.connection_number == n
    assert gw.sockets_accepted == 3


# ------------------------------------------------------------------ 8: seq gaps


def test_seq_gap_before_the_event_and_reset_after_reconnect(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    with conn.subscribe(events=["custom.x"], include_state=False) as sub:
        assert isinstance(sub.get(timeout=5), Snapshot)
        gw.broadcast("custom.x", {"n": 1})
        one = sub.get(timeout=5)
        assert isinstance(one, Event) and one.payload == {"n": 1}
        gw.skip_seq(2)
        gw.broadcast("custom.x", {"n": 2})
        gap = sub.get(timeout=5)
        two = sub.get(timeout=5)
        assert isinstance(gap, SeqGap) and isinstance(two, Event)
        assert one.seq is not None and two.seq == one.seq + 3
        assert (gap.expected, gap.received) == (one.seq + 1, two.seq)
        gw.drop_connections()
        assert isinstance(next_of(sub, Snapshot), Snapshot)
        gw.broadcast("custom.x", {"n": 3})
        three = sub.get(timeout=5)
        assert isinstance(three, Event) and three.payload == {"n": 3}  # no false gap


# ----------------------------------------------------------- 10: disconnects


def test_disconnect_fails_pending_requests_promptly(gw: DevGateway) -> None:
    gw.never_answer("status")
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(conn.request, "status", timeout=None) for _ in range(4)]
        assert gw.wait_for(lambda g: g.requests_by_method.get("status", 0) == 4, timeout=5)
        gw.drop_connections()
        for fut in futures:
            with pytest.raises(Disconnected) as info:
                fut.result(timeout=5)
            assert "before status was answered" in str(info.value)
    gw.clear_faults()
    assert conn.request("health")["ok"] is True  # reconnected without user action
    assert gw.sockets_accepted == 2


def test_request_timeout_is_a_clear_error(gw: DevGateway) -> None:
    gw.never_answer("status")
    conn = GatewayConnection.shared(config(gw))
    with pytest.raises(GatewayTimeout, match=r"status got no answer within 0\.2 s"):
        conn.request("status", timeout=0.2)
    assert conn.request("echo", "still fine") == "still fine"


# ------------------------------------------------------------ 11: slow subscriber


def test_slow_subscriber_never_blocks_and_sees_overflow(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    slow = conn.subscribe(events=["custom.n"], maxsize=5, include_state=False)
    fast = conn.subscribe(events=["custom.n"], include_state=False)
    assert isinstance(slow.get(timeout=5), Snapshot) and isinstance(fast.get(timeout=5), Snapshot)
    for n in range(50):
        gw.broadcast("custom.n", n)
    got = [fast.get(timeout=5) for _ in range(50)]
    assert [e.payload for e in got if isinstance(e, Event)] == list(range(50))
    assert conn.request("echo", "ok") == "ok"
    marker = slow.get(timeout=1)
    assert isinstance(marker, Overflow) and marker.dropped == 45
    rest = [slow.get(timeout=1) for _ in range(5)]
    assert [e.payload for e in rest if isinstance(e, Event)] == list(range(45, 50))
    assert slow.dropped_total == 45
    slow.close()
    fast.close()
    with pytest.raises(ClientClosed):
        slow.get(timeout=0.1)


# ------------------------------------------------------- 12: paused connect errors


def test_bad_token_pauses_and_never_loops(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, token="wrong"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            conn.request("health")
        except GatewayError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(AuthRejected) as info:
        conn.request("health")
    assert len(errors) == 20 and all(isinstance(e, AuthRejected) for e in errors)
    assert info.value.detail_code == "AUTH_TOKEN_MISMATCH"
    assert "wrong" not in str(info.value)
    assert gw.connect_attempts <= 2


def test_pairing_required_is_typed_and_wait_mode_completes() -> None:
    gw = DevGateway(token=TOKEN, auto_approve=False).start()
    cfg = config(gw)
    conn = GatewayConnection.shared(cfg)
    with pytest.raises(PairingRequired) as info:
        conn.request("health")
    request_id = info.value.request_id
    assert request_id and f"openclaw devices approve {request_id}" in str(info.value)
    seen: list[PairingRequired] = []
    approved = threading.Event()

    def on_waiting(err: PairingRequired) -> None:
        seen.append(err)
        if not approved.is_set():
            approved.set()
            gw.approve(err.request_id or "")

    hello = conn.wait_for_pairing(timeout=20, poll_interval=0.05, on_waiting=on_waiting)
    assert hello.auth is not None and hello.auth.device_token
    assert conn.request("health")["ok"] is True
    # The device token was stored: a fresh process-level connection reuses it.
    GatewayConnection.shutdown_all()
    again = GatewayConnection.shared(cfg.with_changes(token=None))
    again.request("health")
    assert [c["authMethod"] for c in gw.connections()] == ["device-token"]
    GatewayConnection.shutdown_all()
    gw.stop()


# ---------------------------------------------------- retry hints and liveness


def test_unavailable_retry_after_is_honoured(gw: DevGateway) -> None:
    gw.reject_next_unavailable(1, retry_after_ms=300)
    conn = GatewayConnection.shared(config(gw))
    started = time.monotonic()
    assert conn.request("health")["ok"] is True
    assert time.monotonic() - started >= 0.3
    assert gw.sockets_accepted == 2


def test_silent_gateway_is_detected_by_the_tick_watchdog() -> None:
    with DevGateway(token=TOKEN, tick_interval_ms=100) as gw:
        conn = GatewayConnection.shared(config(gw))
        conn.request("health")
        gw.stop_ticking()
        assert gw.wait_for(lambda g: g.handshakes_completed >= 2, timeout=10)
        gw.start_ticking()
        assert conn.request("health")["ok"] is True
        conn.shutdown()


def test_two_stage_requests_return_the_final_answer(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    final = conn.request("dev.twostage", {"q": 1}, expect_final=True)
    assert final["status"] == "ok"
    assert conn.request("dev.twostage", {"q": 2})["status"] == "accepted"


def test_malformed_frames_and_unknown_ids_are_ignored(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    for raw in ("not json", "[1,2]", '{"type":"bogus"}', '{"type":"res"}',
                '{"type":"res","id":"catalog:x","ok":true,"payload":{}}'):
        gw.send_raw(raw)
    assert conn.request("echo", "after") == "after"
    assert gw.sockets_accepted == 1


# ------------------------------------------------------------------ stress cases


def test_restart_storm(gw: DevGateway) -> None:
    """10 restarts while 8 threads keep requesting: exactly 10 reconnects, never two
    sockets open at once, no request waits past its timeout."""
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    stop = threading.Event()
    overdue: list[float] = []
    answered = [0]
    timeout = 3.0

    def hammer() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                conn.request("echo", 1, timeout=timeout)
                answered[0] += 1
            except (Disconnected, GatewayTimeout):
                pass
            took = time.monotonic() - t0
            if took > timeout + 1.0:
                overdue.append(took)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(10):
        gw.restart(restart_expected_ms=20)
        assert gw.wait_for(lambda g, n=i: g.handshakes_completed >= n + 2, timeout=10)  # type: ignore[misc]
    stop.set()
    for t in threads:
        t.join()
    assert gw.handshakes_completed == 11
    assert gw.max_open_sockets == 1
    assert overdue == []
    assert answered[0] > 0


def test_paused_error_makes_at_most_two_attempts_under_load(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw, token="nope"))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: _swallow(conn), range(400)))
    assert all(isinstance(r, AuthRejected) for r in results)
    assert gw.connect_attempts <= 2


def _swallow(conn: GatewayConnection) -> BaseException | None:
    try:
        conn.request("health")
    except GatewayError as exc:
        return exc
    return None


# ------------------------------------------------------------ process lifecycle


def test_fork_child_connects_afresh_parent_untouched(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw))
    conn.request("health")
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            child = GatewayConnection.shared(config(gw))
            code = 0 if child.request("echo", "child", timeout=10) == "child" else 2
            GatewayConnection.shutdown_all()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gw.sockets_accepted == 2
    assert conn.request("echo", "parent") == "parent"
    assert gw.sockets_accepted == 2


def test_interpreter_exit_without_shutdown_does_not_hang(gw: DevGateway) -> None:
    script = textwrap.dedent(f"""
        from gwclient import GatewayConfig, GatewayConnection
        conn = GatewayConnection.shared(GatewayConfig(url={gw.url!r}, token={TOKEN!r}))
        sub = conn.subscribe()
        print(conn.request("echo", "bye"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                         env={**os.environ}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "bye"
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=5)


def test_shutdown_while_connects_are_refused(gw: DevGateway) -> None:
    """Workers whose open failed never started a writer thread: shutdown must cope."""
    conn = GatewayConnection.shared(config(gw))
    sub = conn.subscribe()
    conn.request("health")
    gw.restart_begin(restart_expected_ms=0)
    for _ in range(3):  # the port is closed: several refused attempts in a row
        until_state(sub, ConnectionState.CONNECTING)
    conn.shutdown()
    assert gwclient_threads() == []
    gw.restart_end()
    assert gw.sockets_accepted_per_lifetime[-1] == 0


def test_rejected_device_token_is_cleared_and_reported_once(gw: DevGateway) -> None:
    from gwclient.device import DeviceIdentity, DeviceTokenStore

    cfg = config(gw)
    hello = GatewayConnection.shared(cfg).connect()  # shared token; the device gets a token
    assert hello.auth is not None and hello.auth.device_token
    GatewayConnection.shutdown_all()
    device_only = cfg.with_changes(token=None)
    store = DeviceTokenStore(device_only.effective_state_dir)
    device_id = DeviceIdentity.load_or_create(device_only.effective_state_dir).device_id
    assert store.load(device_only.gateway_key, device_id, "operator") is not None
    conn = GatewayConnection.shared(device_only)
    conn.request("health")  # with the stored device token
    sub = conn.subscribe()
    gw.invalidate_device_tokens()
    attempts_before = gw.connect_attempts
    gw.drop_connections()
    assert isinstance(until_state(sub, ConnectionState.PAUSED).error, AuthRejected)
    for _ in range(5):
        with pytest.raises(AuthRejected) as info:
            conn.request("health")
        assert info.value.detail_code == "AUTH_DEVICE_TOKEN_MISMATCH"
    assert gw.connect_attempts - attempts_before == 1  # paused: no loop
    assert store.load(device_only.gateway_key, device_id, "operator") is None  # cleared


def test_config_flips_under_load_never_hang_and_end_on_one_socket(gw: DevGateway) -> None:
    """A provider whose answer keeps changing while 8 threads request: every request is
    answered or fails with a retryable Disconnected; no ClientClosed, no hang; at the end
    only the current config's socket is open."""
    configs = [config(gw), config(gw, display_name="flipped")]
    current = {"i": 0}
    conn = GatewayConnection.shared(provider=lambda: configs[current["i"] % 2])
    stop = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            try:
                conn.request("echo", 1, timeout=5)
                what = "ok"
            except Disconnected:
                what = "disconnected"
            except GatewayError as exc:  # e.g. ClientClosed: wrong for a config change
                what = type(exc).__name__
            with lock:
                outcomes.append(what)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for flip in range(1, 11):
        assert gw.wait_for(lambda g, f=flip: g.requests_by_method.get("echo", 0) >= 50 * f,  # type: ignore[misc]
                           timeout=10)
        current["i"] = flip
    stop.set()
    for t in threads:
        t.join()
    assert set(outcomes) <= {"ok", "disconnected"}
    # A flip fails only what was in flight on the retired socket: at most one per thread.
    assert outcomes.count("disconnected") <= 8 * 10 < outcomes.count("ok")
    assert conn.request("echo", "last") == "last"
    assert gw.wait_for(lambda g: g.open_sockets == 1, timeout=5)
    assert gw.handshakes_completed == 11  # one connect per config change, none more


def test_optional_websocket_pings_reach_the_gateway(gw: DevGateway) -> None:
    quiet = GatewayConnection.shared(config(gw))  # ping_interval=None: no pings
    quiet.request("health")
    assert gw.pings_received == 0
    pinging = GatewayConnection.shared(config(gw, ping_interval=0.05))
    pinging.request("health")
    assert gw.wait_for(lambda g: g.pings_received >= 3, timeout=10)
    assert pinging.request("echo", "still answering") == "still answering"
    assert gw.sockets_accepted == 2


def test_oversized_or_unencodable_params_fail_before_sending(gw: DevGateway) -> None:
    from gwclient import RequestError

    conn = GatewayConnection.shared(config(gw))
    hello = conn.connect()
    with pytest.raises(RequestError) as info:
        conn.request("echo", "x" * (hello.policy.max_payload + 1))
    assert info.value.code == "PAYLOAD_TOO_LARGE" and str(hello.policy.max_payload) in str(info.value)
    with pytest.raises(UsageError, match="not JSON"):
        conn.request("echo", {"not json": object()})
    assert gw.requests_by_method.get("echo", 0) == 0  # neither left the client
    assert conn.request("echo", "fine") == "fine" and gw.sockets_accepted == 1


def test_a_silent_server_is_a_handshake_timeout_not_a_hang() -> None:
    """A websocket server that never sends connect.challenge: the first request fails
    after connect_timeout with a clear message, and gwclient keeps retrying quietly."""
    from websockets.sync.server import ServerConnection, serve

    release = threading.Event()

    def silent(ws: ServerConnection) -> None:
        release.wait()

    with serve(silent, "127.0.0.1", 0) as server:
        runner = threading.Thread(target=server.serve_forever)
        runner.start()
        port = server.socket.getsockname()[1]
        try:
            conn = GatewayConnection.shared(GatewayConfig(url=f"ws://127.0.0.1:{port}", token=TOKEN,
                                                          connect_timeout=0.3, retry=FAST))
            # (a hang would end in GatewayTimeout after 10 s, not in this Disconnected)
            with pytest.raises(Disconnected, match=r"did not send connect\.challenge within 0\.3 s"):
                conn.request("health", timeout=10)
            conn.shutdown()
        finally:
            release.set()
            server.shutdown()
            runner.join()
