"""Runs and subscriptions dropped without close(): a finalizer only hands the release to
the bus, which does it outside its lock (issue 16 point 1, issue 15's dropped
subscriptions).  The garbage-collected case is made deterministic: the collector is run
from inside ``Bus.publish()``, on the reader thread, holding the bus lock."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest
from _util import DEV_TOKEN

from gwclient import Event, GatewayConfig, GatewayConnection, RetryPolicy, Run, Subscription
from gwclient._connection import DEFAULT
from gwclient._engine.runtime import current_runtime
from gwclient._engine.subscription import Inlet
from gwclient.testing import DevGateway
from gwclient.testing._devgw_runs import RunScript

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

FAST = RetryPolicy(initial=0.05, multiplier=2.0, maximum=0.5, jitter=0.1)


def connection(gw: DevGateway) -> GatewayConnection:
    return GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN, retry=FAST, request_timeout=10))


def registered() -> list[Inlet]:
    registry = current_runtime().registry
    assert registry is not None
    return registry.inlets()


def next_event(sub: Subscription, name: str) -> Event:
    while True:
        push = sub.get(timeout=10)
        if isinstance(push, Event) and push.event == name:
            return push


class Holder:
    """An ordinary object in a reference cycle (it keeps a bound method of itself)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.callback = self.method

    def method(self) -> None:
        pass


def test_a_run_collected_inside_a_publish_does_not_freeze_the_connection(gw: DevGateway) -> None:
    gw.runs.when("HANG", RunScript(hang=True))
    conn = connection(gw)
    holders = [Holder(conn.chat("agent:main:gc", "HANG"))]
    run = weakref.ref(holders[0].run)
    gc_ran = threading.Event()

    def accept(event: Event) -> bool:
        # On the reader thread, inside Bus.publish(), holding the bus lock: exactly where
        # the cyclic collector may run any finalizer.
        if event.event == "poke" and holders:
            holders.clear()
            gc.collect()
            gc_ran.set()
        return True

    watcher = conn._subscribe(["poke"], None, DEFAULT, accept=accept)
    gw.broadcast("poke", {"n": 1})
    assert gc_ran.wait(10)
    assert run() is None  # the Run was collected there
    assert conn.request("echo", "still answering", timeout=5) == "still answering"
    assert next_event(watcher, "poke").payload == {"n": 1}
    gw.broadcast("poke", {"n": 2})
    assert next_event(watcher, "poke").payload == {"n": 2}  # the reader is alive
    conn.subscribe().close()  # the bus has released what the finalizer handed over
    assert registered() == [watcher.inlet]
    watcher.close()


def test_subscriptions_dropped_without_close_leave_the_bus(gw: DevGateway) -> None:
    conn = connection(gw)
    kept = conn.subscribe()
    assert conn.request("echo", 1) == 1  # connected: the broadcast below reaches us
    refs = [weakref.ref(conn.subscribe()) for _ in range(200)]
    assert all(r() is None for r in refs)  # nothing of gwclient keeps a dropped subscription alive
    gw.broadcast("tick-ish", {})
    assert next_event(kept, "tick-ish")
    conn.subscribe().close()
    assert registered() == [kept.inlet]
    kept.close()


@pytest.mark.devgateway(tick_interval_ms=200)
def test_dropped_session_subscriptions_unsubscribe_once_even_when_idle(gw: DevGateway) -> None:
    conn = connection(gw)
    subs: list[Any] = [conn.subscribe_session("work") for _ in range(3)]
    assert gw.wait_for(lambda g: g.session_subscribers("work") == 1, timeout=10)
    subs.pop().close()  # closed, then dropped: released once, not again when collected
    gc.collect()
    conn.subscribe().close()  # runs whatever was handed over
    assert gw.requests_by_method.get("sessions.messages.unsubscribe", 0) == 0  # two still want it
    assert len(registered()) == 2
    subs.clear()  # dropped, never closed; nobody calls gwclient again: the reader releases
    # them after the next tick
    assert gw.wait_for(lambda g: g.requests_by_method.get("sessions.messages.unsubscribe", 0) == 1, timeout=10)
    assert gw.session_subscribers("work") == 0
    assert registered() == []
