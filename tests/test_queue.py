"""The one bounded queue type: count and byte bounds, drop-oldest with an overflow marker,
deferred wake-ups, end and discard.  Threads are synchronised by events, never by sleep."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from gwclient._queue import BoundedQueue, QueueEmpty, QueueEnded


def marker(dropped: int, dropped_bytes: int) -> str:
    return f"overflow {dropped}/{dropped_bytes}"


def test_count_bound_drops_oldest_and_reports_once() -> None:
    q: BoundedQueue[str] = BoundedQueue(2, None, marker)
    for item in "abcd":
        q.offer(item, 10)
    assert q.get(0) == "overflow 2/20" and q.get(0) == "c" and q.get(0) == "d"
    with pytest.raises(QueueEmpty):
        q.get(0)
    q.offer("e")
    q.offer("f")
    q.offer("g")
    assert q.get(0) == "overflow 1/0"  # a second overflow after draining is reported again
    assert q.dropped_total == 3 and q.dropped_bytes_total == 20


def test_byte_bound_keeps_the_newest_even_if_it_alone_is_too_big() -> None:
    q: BoundedQueue[str] = BoundedQueue(100, 100, marker)
    q.offer("a", 60)
    q.offer("b", 30)
    q.offer("c", 50)  # 140 > 100: a goes
    assert q.queued_bytes == 80
    q.offer("huge", 500)
    assert [q.get(0) for _ in range(2)] == ["overflow 3/140", "huge"]
    assert q.queued_bytes == 0


def test_no_marker_when_the_queue_only_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, None, None)
    q.offer(1)
    q.offer(2)
    assert q.get(0) == 2 and q.dropped_total == 1


def test_deferred_offers_wake_a_waiting_consumer_on_flush_only() -> None:
    q: BoundedQueue[str] = BoundedQueue(10, None, marker)
    waiting = threading.Event()
    got: Future[str] = Future()
    original = q._cond.wait

    def wait(timeout: float | None = None) -> bool:
        waiting.set()
        return original(timeout)

    q._cond.wait = wait  # type: ignore[method-assign]

    def consume() -> None:
        got.set_result(q.get(30))

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert waiting.wait(10)
    q.offer("x", notify=False)
    assert not got.done()  # not woken yet (it would have been with notify=True)
    q.flush()
    assert got.result(10) == "x"
    consumer.join(10)


def test_end_delivers_what_is_queued_then_ends_and_discard_drops_it() -> None:
    q: BoundedQueue[str] = BoundedQueue(10, None, marker)
    q.offer("a")
    assert q.end() and not q.end()
    assert not q.offer("late")
    assert q.get(0) == "a"
    with pytest.raises(QueueEnded):
        q.get(None)
    d: BoundedQueue[str] = BoundedQueue(10, None, marker)
    d.offer("a")
    d.end(discard=True)
    assert d.drained
    with pytest.raises(QueueEnded):
        d.get(0)
