"""The registry owns every binding (issue: one owner for every piece of state).

Each test is a bug that state kept in two places caused, reproduced with two real dev
gateways on loopback and a provider that switches between them.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _util import DEV_TOKEN, scaled

from gwclient import (
    ConnectionState,
    Event,
    GatewayConfig,
    GatewayConnection,
    RequestError,
    RunError,
    Snapshot,
    StateChange,
    Subscription,
)
from gwclient._engine.runtime import current_runtime
from gwclient.remote import EndpointConnecting, EndpointReady, GatewayEndpointStore
from gwclient.testing import DevGateway, DevGatewayError
from gwclient.testing._devgw_runs import RunScript

WAIT = scaled(15.0)


class Switch:
    """A config provider whose answer the test flips (a plain callable)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._lock = threading.Lock()
        self.config = config

    def __call__(self) -> GatewayConfig:
        with self._lock:
            return self.config

    def set(self, config: GatewayConfig) -> None:
        with self._lock:
            self.config = config


def cfg(gw: DevGateway) -> GatewayConfig:
    return GatewayConfig(url=gw.url, token=DEV_TOKEN, device_identity=False)


@pytest.fixture
def gw2() -> Iterator[DevGateway]:
    with DevGateway(token=DEV_TOKEN) as gateway:
        yield gateway


def until(sub: Subscription, predicate: Any, timeout: float = WAIT) -> list[Any]:
    """Pushes up to and including the first that satisfies ``predicate``."""
    seen = []
    while True:
        push = sub.get(timeout=timeout)
        seen.append(push)
        if predicate(push):
            return seen


def test_a_session_subscription_is_released_on_the_channel_that_holds_it_now(
        gw: DevGateway, gw2: DevGateway, shutdown_all_after: None) -> None:
    switch = Switch(cfg(gw))
    conn = GatewayConnection.shared(provider=switch)
    sub = conn.subscribe_session("main")
    conn.request("health")
    assert gw.wait_for(lambda g: g.session_subscribers("agent:main:main") == 1, timeout=WAIT)
    switch.set(cfg(gw2))
    conn.request("health")  # the facade rebinds: the registry moves the subscription
    assert gw2.wait_for(lambda g: g.session_subscribers("agent:main:main") == 1, timeout=WAIT)
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)
    sub.close()
    assert gw2.wait_for(lambda g: g.session_subscribers("agent:main:main") == 0, timeout=WAIT)
    assert gw2.requests_by_method.get("sessions.messages.unsubscribe") == 1
    # Not re-sent after a reconnect: the sticky was counted once and released.
    before = gw2.handshakes_completed
    gw2.drop_connections()
    assert gw2.wait_for(lambda g: g.handshakes_completed > before, timeout=WAIT)  # reconnected
    conn.request("health", timeout=WAIT)
    assert gw2.requests_by_method.get("sessions.messages.subscribe") == 1


def test_a_program_that_only_listens_follows_a_config_change(
        gw: DevGateway, gw2: DevGateway, shutdown_all_after: None) -> None:
    switch = Switch(cfg(gw))
    conn = GatewayConnection.shared(provider=switch)
    sub = conn.subscribe(["tick"])
    conn.connect(timeout=WAIT)
    until(sub, lambda p: isinstance(p, Snapshot))
    switch.set(cfg(gw2))  # no request from here on
    assert gw2.wait_for(lambda g: g.handshaken_connections == 1, timeout=WAIT)
    assert gw.wait_for(lambda g: g.open_sockets == 0, timeout=WAIT)
    seen = until(sub, lambda p: isinstance(p, Snapshot))
    changes = [p for p in seen if isinstance(p, StateChange)]
    assert changes and changes[0].state == ConnectionState.RECONNECTING and changes[0].detail == "config changed"
    assert seen[-1].hello.server.conn_id != ""  # type: ignore[union-attr]
    assert gw2.sockets_accepted == 1 and gw.sockets_accepted == 1  # connected once each


def test_a_watched_endpoint_store_is_followed_at_once(
        gw: DevGateway, gw2: DevGateway, shutdown_all_after: None) -> None:
    store = GatewayEndpointStore(EndpointReady(cfg(gw)))
    conn = GatewayConnection.shared(provider=store)
    sub = conn.subscribe(["tick"])
    until(sub, lambda p: isinstance(p, Snapshot))
    gw.stop()  # the old endpoint goes away (a stopped tunnel) ...
    store.publish(EndpointConnecting("tunnel restarting"))
    store.publish(EndpointReady(cfg(gw2)))  # ... and the store publishes the new one
    seen = until(sub, lambda p: isinstance(p, Snapshot))
    assert gw2.handshaken_connections == 1
    assert any(isinstance(p, StateChange) and p.detail == "config changed" for p in seen)


def test_moving_onto_a_config_another_facade_has_connected_is_seen_by_subscribers_and_runs(
        gw: DevGateway, gw2: DevGateway, shutdown_all_after: None) -> None:
    other = GatewayConnection.shared(cfg(gw2))
    other.connect(timeout=WAIT)
    gw.runs.when("HANG", RunScript(hang=True))
    switch = Switch(cfg(gw))
    conn = GatewayConnection.shared(provider=switch)
    sub = conn.subscribe(["tick"])
    until(sub, lambda p: isinstance(p, Snapshot))
    run = conn.chat("agent:main:moving", "HANG")
    assert gw.wait_for(lambda g: g.requests_by_method.get("chat.send") == 1, timeout=WAIT)
    switch.set(cfg(gw2))
    seen = until(sub, lambda p: isinstance(p, Snapshot))
    assert any(isinstance(p, StateChange) and p.detail == "config changed" for p in seen)
    assert gw2.sockets_accepted == 1  # the existing socket: the invariant holds
    with pytest.raises(RunError):  # the run learns its socket is gone; it does not wait forever
        run.wait(timeout=WAIT)
    gw.runs.release()


def test_subscriptions_dropped_without_close_leave_the_registry(gw: DevGateway, shutdown_all_after: None) -> None:
    conn = GatewayConnection.shared(cfg(gw))
    conn.connect(timeout=WAIT)
    registry = current_runtime().registry
    assert registry is not None
    before = len(registry.inlets())
    for _ in range(200):
        conn.subscribe(["tick"])  # dropped at once
    gc.collect()
    gw.broadcast("tick", {"ts": 1})  # the registry's next publish releases them
    assert gw.wait_for(lambda g: len(registry.inlets()) == before, timeout=WAIT)
    assert len(registry.inlets()) == before


def test_a_refused_session_subscription_is_an_error_for_its_subscriber(
        gw: DevGateway, shutdown_all_after: None) -> None:
    def refuse(params: Any) -> Any:
        raise DevGatewayError("INVALID_REQUEST", "unknown session: agent:main:nope")

    gw.set_handler("sessions.messages.subscribe", refuse)
    conn = GatewayConnection.shared(cfg(gw))
    with conn.subscribe_session("nope") as sub:
        with pytest.raises(RequestError, match="unknown session"):
            while True:
                push = sub.get(timeout=WAIT)
                assert not isinstance(push, Event)
    assert conn.request("health")["ok"] is True  # nothing else is affected
