"""The channel issue's hostile and frozen peers, against the dev gateway (a real websocket
server on loopback), a freezing TCP relay, and faults injected through the transport seam."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from _util import DEV_TOKEN, WrappedTransport

from gwclient import (
    ClientClosed,
    ConnectionState,
    Disconnected,
    GatewayConfig,
    GatewayConnection,
    GatewayTimeout,
    Overflow,
    PairingRequired,
    RetryPolicy,
    Snapshot,
    StateChange,
    UsageError,
)
from gwclient._engine.runtime import current_runtime
from gwclient._engine.transport import OpenGuard, Transport, TransportOptions, open_transport
from gwclient.testing import DevGateway, TcpRelay

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)
TOKEN = DEV_TOKEN  # the shared ``gw`` fixture's token (conftest.py)


def config(url: str, **changes: Any) -> GatewayConfig:
    base: dict[str, Any] = {"url": url, "token": TOKEN, "retry": FAST, "connect_timeout": 5.0,
                            "request_timeout": 10.0}
    base.update(changes)
    return GatewayConfig(**base)


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gwclient-reader-")]


# ------------------------------------------------------------ call-site encoding


def test_a_lone_surrogate_fails_nobody_and_round_trips(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    name = os.fsdecode(b"report-\xff.txt")  # 'report-\udcff.txt': not encodable as UTF-8
    barrier = threading.Barrier(8)

    def worker(n: int) -> int:
        barrier.wait()
        done = 0
        for i in range(50):
            params = {"path": name} if n == 0 and i == 0 else {"n": n, "i": i}
            assert conn.request("echo", params) == params
            done += 1
        return done

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(worker, range(8))) == 400
    assert conn.state == ConnectionState.CONNECTED and gw.sockets_accepted == 1


def test_unencodable_params_fail_only_their_caller_at_once(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    conn.connect()
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    for bad in (float("nan"), {"x": float("inf")}, nested, {1, 2}):
        with pytest.raises(UsageError):
            conn.request("echo", bad, timeout=None)  # would hang forever if it were queued
    for bad_timeout in (-1, float("nan"), "5"):
        with pytest.raises(UsageError):
            conn.request("echo", 1, timeout=bad_timeout)  # type: ignore[arg-type]
    for method in ("", "has space", 5):
        with pytest.raises(UsageError):
            conn.request(method)  # type: ignore[arg-type]
    assert conn.request("echo", 1, timeout=float("inf")) == 1
    assert conn.request("echo", 2, timeout=1e20) == 2
    with conn.subscribe() as sub:
        assert isinstance(sub.get(timeout=1e20), Snapshot)
    assert gw.requests_by_method.get("echo") == 2 and gw.sockets_accepted == 1


# --------------------------------------------------------------- server values


def test_absurd_server_values_cannot_kill_a_thread(gw: DevGateway) -> None:
    gw.policy_overrides.update({"tickIntervalMs": 10**13, "maxPayload": 10**13, "maxBufferedBytes": -5})
    conn = GatewayConnection.shared(config(gw.url))
    hello = conn.connect()
    assert hello.policy.tick_interval_ms == 3_600_000
    sub = conn.subscribe(events=["shutdown"])
    gw.broadcast("shutdown", {"reason": "restarting", "restartExpectedMs": 10**13})
    while not isinstance(sub.get(timeout=10), type(None)) and gw.handshakes_completed < 1:
        pass  # (the shutdown event reached the client)
    gw.drop_connections()
    assert gw.wait_for(lambda g: g.handshakes_completed >= 2, timeout=10)  # not parked for 1e13 ms
    assert conn.request("health")["ok"] is True
    names = {t.name for t in threading.enumerate()}
    assert any(n.startswith("gwclient-timer-") for n in names)
    sub.close()


def test_a_one_hour_restart_hint_does_not_park_a_loopback_client(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url, retry=RetryPolicy()))
    conn.request("health")
    with conn.subscribe() as sub:
        gw.restart_begin(restart_expected_ms=3_600_000)
        while True:  # wait until the client saw the loss
            push = sub.get(timeout=10)
            if isinstance(push, StateChange) and push.state == ConnectionState.RECONNECTING:
                break
        gw.restart_end()
        assert conn.request("health", timeout=10)["ok"] is True
    assert gw.handshakes_completed == 2


# ------------------------------------------------------------------ liveness


def test_a_frozen_gateway_is_replaced_within_the_liveness_timeout(gw: DevGateway) -> None:
    with TcpRelay(gw.port) as relay:
        conn = GatewayConnection.shared(config(relay.url, liveness_timeout=1.0))
        conn.request("health")
        old_readers = readers()
        assert relay.freeze() == 1
        # Pending on the frozen socket: fails with Disconnected once liveness runs out
        # (the request's own 30 s timeout would say GatewayTimeout).
        with pytest.raises(Disconnected, match="nothing received"):
            conn.request("health", timeout=30)
        assert conn.request("health", timeout=30)["ok"] is True  # a fresh socket
        assert gw.handshakes_completed == 2 and relay.accepted == 2
        for thread in old_readers:  # the abandoned socket was shut down: its reader returned
            thread.join(10)
            assert not thread.is_alive()
        conn.shutdown()


def test_shutdown_is_prompt_against_a_frozen_gateway(gw: DevGateway) -> None:
    with TcpRelay(gw.port) as relay:
        conn = GatewayConnection.shared(config(relay.url))
        conn.request("health")
        relay.freeze()
        pending: Future[Any] = Future()

        def call() -> None:
            try:
                pending.set_result(conn.request("health", timeout=None))
            except BaseException as exc:
                pending.set_exception(exc)

        caller = threading.Thread(target=call)
        caller.start()
        assert gw.wait_for(lambda g: g.requests_by_method.get("health", 0) >= 1, timeout=10)
        conn.shutdown(timeout=3)
        with pytest.raises(ClientClosed):
            pending.result(timeout=5)
        caller.join(5)
        assert [t.name for t in threading.enumerate() if t.name.startswith("gwclient-")] == []


def test_pongs_count_as_life(gw: DevGateway) -> None:
    """The dev gateway ticks every 30 s; a 1 s liveness bound holds only because pings
    provoke pongs (and the pongs are counted)."""
    conn = GatewayConnection.shared(config(gw.url, liveness_timeout=1.0))
    conn.request("health")
    assert gw.wait_for(lambda g: g.pings_received >= 6, timeout=15)
    assert conn.request("health")["ok"] is True
    assert gw.sockets_accepted == 1


# ------------------------------------------------------------------ supervision


class _Faults:
    def __init__(self) -> None:
        self.recv = threading.Event()
        self.send = threading.Event()
        self.ping = threading.Event()

    def transport(self, options: TransportOptions, guard: OpenGuard) -> Transport:
        """The transport seam handed to ``GatewayConnection.shared(transport=...)``."""
        return _FaultyTransport(open_transport(options, guard), self)


class _FaultyTransport(WrappedTransport):
    def __init__(self, inner: Transport, faults: _Faults) -> None:
        super().__init__(inner)
        self._faults = faults

    def send(self, data: bytes) -> None:
        if self._faults.send.is_set() and b'"method":"echo"' in data:
            self._faults.send.clear()
            raise RuntimeError("injected send fault")
        super().send(data)

    def recv(self) -> bytes | None:
        data = super().recv()
        if self._faults.recv.is_set():
            self._faults.recv.clear()
            raise RuntimeError("injected reader fault")
        return data

    def ping_nowait(self) -> bool:
        if self._faults.ping.is_set():
            self._faults.ping.clear()
            raise RuntimeError("injected timer fault")
        return super().ping_nowait()


@pytest.fixture
def faults() -> Iterator[_Faults]:
    state = _Faults()
    try:
        yield state
    finally:
        GatewayConnection.shutdown_all()


def _recovers(gw: DevGateway, conn: GatewayConnection, inject: Callable[[], None],
              caplog: pytest.LogCaptureFixture) -> None:
    conn.request("health")
    with caplog.at_level(logging.ERROR, logger="gwclient"):
        inject()
        assert gw.wait_for(lambda g: g.handshakes_completed >= 2, timeout=10)
    assert conn.request("echo", "after") == "after"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # logged once, with the traceback


def test_a_reader_fault_reconnects(gw: DevGateway, faults: _Faults, caplog: pytest.LogCaptureFixture) -> None:
    conn = GatewayConnection.shared(config(gw.url), transport=faults.transport)

    def inject() -> None:
        faults.recv.set()
        gw.broadcast("presence", {})

    _recovers(gw, conn, inject, caplog)


def test_a_send_fault_fails_its_caller_only_and_reconnects(gw: DevGateway, faults: _Faults,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    conn = GatewayConnection.shared(config(gw.url), transport=faults.transport)

    def inject() -> None:
        faults.send.set()
        with pytest.raises(Disconnected):
            conn.request("echo", "boom")

    _recovers(gw, conn, inject, caplog)


def test_a_timer_fault_reconnects(gw: DevGateway, faults: _Faults, caplog: pytest.LogCaptureFixture) -> None:
    conn = GatewayConnection.shared(config(gw.url, ping_interval=0.05), transport=faults.transport)
    _recovers(gw, conn, faults.ping.set, caplog)


def test_a_failing_subscriber_does_not_stop_the_bus(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    bad = conn.subscribe(events=["presence"])
    good = conn.subscribe(events=["presence"])

    def explode(push: Any, size: int = 0, notify: bool = True) -> bool:
        raise RuntimeError("subscriber bug")

    bad.inlet.queue.offer = explode  # type: ignore[method-assign,assignment]
    conn.request("health")
    gw.broadcast("presence", {"n": 1})
    gw.broadcast("presence", {"n": 2})
    got: list[Any] = []
    while len(got) < 2:
        push = good.get(timeout=10)
        if getattr(push, "event", None) == "presence":
            got.append(push.payload)  # type: ignore[union-attr]
    assert got == [{"n": 1}, {"n": 2}] and conn.request("health")["ok"] is True
    good.close()


def test_shutdown_cuts_wait_for_pairing_short() -> None:
    with DevGateway(auto_approve=False) as gw:
        conn = GatewayConnection.shared(config(gw.url, token=None))
        asked = threading.Event()
        outcome: Future[Any] = Future()

        def wait() -> None:
            try:
                outcome.set_result(conn.wait_for_pairing(timeout=120, poll_interval=60,
                                                         on_waiting=lambda _e: asked.set()))
            except BaseException as exc:
                outcome.set_exception(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert asked.wait(10)
        conn.shutdown()
        with pytest.raises((ClientClosed, PairingRequired)):
            outcome.result(timeout=10)  # not after the 60 s poll interval
        waiter.join(5)
        assert not waiter.is_alive()


# ---------------------------------------------------------------------- submit


def test_submit_pipelines_from_one_thread(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    futures = [conn.submit("echo", i) for i in range(2000)]
    assert [f.result(timeout=30) for f in futures] == list(range(2000))
    gw.never_answer("dev.silent")
    slow = conn.submit("dev.silent", timeout=0.2)
    with pytest.raises(GatewayTimeout):
        slow.result(timeout=10)
    with pytest.raises(UsageError):
        conn.submit("echo", float("nan"))
    assert gw.sockets_accepted == 1


def test_oversized_frames_are_refused_unread(gw: DevGateway) -> None:
    gw.policy_overrides["maxPayload"] = 4096
    conn = GatewayConnection.shared(config(gw.url, max_frame_bytes=2048))
    conn.request("health")
    with conn.subscribe(events=["big"]) as sub:
        gw.broadcast("big", "x" * 100_000)
        assert gw.wait_for(lambda g: g.handshakes_completed >= 2, timeout=10)
        assert conn.request("echo", "small") == "small"
        while True:
            push = sub.get(timeout=10)
            assert getattr(push, "event", None) != "big"
            if isinstance(push, Snapshot) and push.connection_number == 2:
                break


def test_binary_frames_are_refused_as_a_protocol_error(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    conn.request("health")
    gw.send_raw(b'{"type":"event","event":"tick","payload":{}}')
    assert gw.wait_for(lambda g: g.handshakes_completed >= 2, timeout=10)
    assert conn.request("health")["ok"] is True


def test_a_frame_trickling_in_is_not_a_dead_connection(gw: DevGateway) -> None:
    """Bytes of a frame keep arriving for longer than the liveness bound: still alive."""
    with TcpRelay(gw.port) as relay:
        conn = GatewayConnection.shared(config(relay.url, liveness_timeout=1.0, ping_interval=30.0))
        with conn.subscribe(events=["slow"]) as sub:
            conn.request("health")
            relay.trickle = 0.02
            gw.broadcast("slow", "x" * 100)  # ~150 bytes: about 3 s, three liveness bounds
            while True:
                push = sub.get(timeout=30)
                if getattr(push, "event", None) == "slow":
                    break
            relay.trickle = None
            assert conn.request("health")["ok"] is True
        assert gw.handshakes_completed == 1
        conn.shutdown()


def test_subscription_queues_are_bounded_in_bytes_too(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    slow = conn.subscribe(events=["big"], max_bytes=1000)
    fast = conn.subscribe(events=["big"])
    conn.request("health")
    for i in range(10):
        gw.broadcast("big", {"i": i, "pad": "x" * 250})
    seen = 0
    while seen < 10:  # the fast consumer saw all ten, so all ten were offered to slow
        push = fast.get(timeout=10)
        seen += getattr(push, "event", None) == "big"
    items = []
    while True:
        try:
            items.append(slow.get(timeout=0))
        except GatewayTimeout:
            break
    overflow = next(p for p in items if isinstance(p, Overflow))
    kept = [p.payload["i"] for p in items if getattr(p, "event", None) == "big"]  # type: ignore[union-attr]
    assert overflow.dropped >= 10 - len(kept) and overflow.dropped_bytes > 1000  # (+ state pushes)
    assert kept == list(range(10 - len(kept), 10)) and 1 <= len(kept) <= 3  # the newest, within 1000 bytes
    assert slow.dropped_bytes_total == overflow.dropped_bytes
    slow.close()
    fast.close()


def test_a_misbehaving_config_provider_is_a_config_error_never_a_recursion(gw: DevGateway) -> None:
    from gwclient import ConfigError

    def raising() -> GatewayConfig:
        raise RuntimeError("provider bug")

    def wrong() -> GatewayConfig:
        return 5  # type: ignore[return-value]

    calls: list[int] = []

    def recursing() -> GatewayConfig:
        calls.append(1)
        GatewayConnection.shared(provider=recursing).request("health")
        return config(gw.url)

    for provider, kind in ((raising, ConfigError), (wrong, ConfigError), (recursing, UsageError)):
        with pytest.raises(kind):
            GatewayConnection.shared(provider=provider).request("health")
    assert calls == [1] and gw.sockets_accepted == 0


def test_a_closed_subscription_is_no_longer_registered(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(config(gw.url))
    sub = conn.subscribe()
    kept = conn.subscribe()
    registry = current_runtime().registry
    assert registry is not None
    registered = registry.inlets()
    assert sub.inlet in registered and kept.inlet in registered
    sub.close()
    registered = registry.inlets()
    assert sub.inlet not in registered and kept.inlet in registered
    assert conn.request("echo", 10**400 > 0) is True
    assert conn.request("echo", 1, timeout=10**400) == 1  # an int beyond float range: forever
    with pytest.raises(UsageError):
        conn.request("echo", 1, timeout=-(10**400))
    kept.close()
