"""The byte bound of a subscription bounds the memory its queue holds, not the wire bytes
(issue 16 point 4): object-heavy events decode to 10-30x their frame size.  Counted
deterministically: N events are broadcast to a subscriber that does not read, an echo
round trip proves the reader has offered them all, then the queue is drained and the
decoded size of what it held is measured object by object."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from _util import DEV_TOKEN

from gwclient import Event, GatewayConfig, GatewayConnection, GatewayTimeout, Overflow, Subscription
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")

BOUND = 2 * 1024 * 1024


def deep_size(value: Any) -> int:
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(deep_size(v) for v in value)
    return size


def drain(sub: Subscription) -> list[Any]:
    items = []
    while True:
        try:
            items.append(sub.get(timeout=0))
        except GatewayTimeout:
            return items


def held_after(gw: DevGateway, conn: GatewayConnection, payload: Any, n: int) -> tuple[list[Event], list[Overflow]]:
    with conn.subscribe(["blob"], maxsize=100_000, max_bytes=BOUND, include_state=False) as sub:
        for _ in range(n):
            gw.broadcast("blob", payload)
        assert conn.request("echo", 1) == 1  # answered after every event before it
        items = drain(sub)
    return [i for i in items if isinstance(i, Event)], [i for i in items if isinstance(i, Overflow)]


def test_object_heavy_events_are_bounded_by_what_they_hold(gw: DevGateway) -> None:
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN, request_timeout=20))
    conn.request("echo", 0)
    heavy: list[dict[str, int]] = [{} for _ in range(3000)]  # ~9 KB on the wire, ~25x that decoded
    kept, overflows = held_after(gw, conn, heavy, 120)
    held = sum(deep_size(e.payload) for e in kept)
    assert held <= BOUND, f"{len(kept)} events hold {held} bytes, over the {BOUND} byte bound"
    # Dropped: the oldest events and the Snapshot a new subscriber gets first.
    assert kept and overflows and sum(o.dropped for o in overflows) + len(kept) == 120 + 1
    # ...without starving plain text: a string-heavy event counts about its size.
    text = {"text": "lorem ipsum dolor sit amet " * 4000}  # ~108 KB, decodes to about that
    kept, _ = held_after(gw, conn, text, 40)
    assert sum(deep_size(e.payload) for e in kept) >= BOUND // 4
