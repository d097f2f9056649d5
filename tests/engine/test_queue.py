"""The one bounded queue type: count and byte bounds, drop-oldest with an overflow marker,
deferred wake-ups, end and discard.  Threads are synchronised by events, never by sleep."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from gwclient._engine.queue import BoundedQueue, QueueEmpty, QueueEnded


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


def test_bounds_are_checked_with_their_own_messages() -> None:
    with pytest.raises(ValueError, match=r"^maxsize must be >= 1$"):
        BoundedQueue(0, None, marker)
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 1 or None$"):
        BoundedQueue(1, 0, marker)
    q: BoundedQueue[str] = BoundedQueue(1, 1, marker)
    assert q.offer("a", 1) is True and q.get(0) == "a"


def test_a_fresh_queue_is_empty_and_has_dropped_nothing() -> None:
    q: BoundedQueue[str] = BoundedQueue(5, 100, marker)
    assert len(q) == 0 and q.queued_bytes == 0 and q.dropped_total == 0 and q.dropped_bytes_total == 0
    assert not q.ended and not q.drained
    with pytest.raises(QueueEmpty):
        q.get(0)


def test_the_byte_bound_is_inclusive() -> None:
    q: BoundedQueue[str] = BoundedQueue(10, 100, marker)
    q.offer("a", 60)
    q.offer("b", 40)  # exactly 100: nothing dropped
    assert q.queued_bytes == 100 and q.dropped_total == 0
    assert q.get(0) == "a" and q.get(0) == "b"


def test_discard_forgets_the_bytes_and_the_pending_overflow() -> None:
    q: BoundedQueue[str] = BoundedQueue(1, None, marker)
    q.offer("a", 10)
    q.offer("b", 20)
    q.end(discard=True)
    assert q.queued_bytes == 0 and len(q) == 0 and q.drained
    with pytest.raises(QueueEnded):
        q.get(0)


def test_an_offer_wakes_a_waiting_consumer_by_default() -> None:
    q: BoundedQueue[str] = BoundedQueue(10, None, marker)
    waiting = threading.Event()
    got: Future[str] = Future()
    original = q._cond.wait

    def wait(timeout: float | None = None) -> bool:
        waiting.set()
        return original(timeout)

    q._cond.wait = wait  # type: ignore[method-assign]
    consumer = threading.Thread(target=lambda: got.set_result(q.get(30)))
    consumer.start()
    assert waiting.wait(10)
    q.offer("x")
    assert got.result(10) == "x"  # well before the consumer's own 30 s deadline
    consumer.join(10)


def test_a_short_timeout_waits_before_giving_up() -> None:
    q: BoundedQueue[str] = BoundedQueue(10, None, marker)
    waits: list[float | None] = []
    original = q._cond.wait

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout)
        return original(timeout)

    q._cond.wait = wait  # type: ignore[method-assign]
    with pytest.raises(QueueEmpty):
        q.get(0.2)
    assert waits and all(t is not None and 0 < t <= 0.2 for t in waits)


def test_flush_notifies_once_per_deferred_burst_and_never_otherwise() -> None:
    q: BoundedQueue[str] = BoundedQueue(10, None, marker)
    notified: list[int] = []
    original = q._cond.notify

    def notify(n: int = 1) -> None:
        notified.append(n)
        original(n)

    q._cond.notify = notify  # type: ignore[method-assign]
    q.flush()
    assert notified == []  # nothing deferred: no wake-up
    q.offer("a", notify=False)
    q.offer("b", notify=False)
    assert notified == []
    q.flush()
    q.flush()
    assert notified == [1]  # one wake-up for the burst, none for the second flush
    q.offer("c")
    assert notified == [1, 1]
