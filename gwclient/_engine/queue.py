"""The one bounded queue type: drop-oldest, bounded by count and by bytes, with an
overflow count the consumer sees.

Used by :class:`~gwclient.Subscription` and by :class:`StateQueue` (below: the endpoint
store's and the tunnel manager's subscriptions, a queue of state values).
Producers (gwclient threads) never block in :meth:`BoundedQueue.offer`; consumers (user
threads) block in :meth:`BoundedQueue.get` with a deadline.

**Overflow policy**: when an offer would exceed ``maxsize`` items or ``max_bytes`` bytes,
the *oldest* items are dropped until it fits; the next :meth:`get` then returns
``on_overflow(dropped, dropped_bytes)`` (a marker) before the remaining items (with
``on_overflow=None`` nothing is returned: the drops are only counted, which suits a queue
of states, where the newest value is what matters).  An item
larger than ``max_bytes`` on its own is kept alone (a queue never refuses its newest item),
so one big event cannot be lost silently.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, Self, TypeVar

from .._core.deadline import check_timeout
from .._errors import ClientClosed, GatewayTimeout, check_caller
from .waiter import Deadline

__all__ = ["BoundedQueue", "QueueEmpty", "QueueEnded", "StateQueue"]

T = TypeVar("T")


class QueueEmpty(Exception):
    """Internal: nothing arrived before the deadline."""


class QueueEnded(Exception):
    """Internal: the queue was ended and is drained."""


class BoundedQueue(Generic[T]):
    def __init__(
        self,
        maxsize: int,
        max_bytes: int | None,
        on_overflow: Callable[[int, int], T] | None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1 or None")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._items: collections.deque[tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._dropped = 0
        self._dropped_bytes = 0
        self.dropped_total = 0
        self.dropped_bytes_total = 0
        self._ended = False
        self._deferred = False

    # -- producer side: never blocks ----------------------------------------------------

    def offer(self, item: T, size: int = 0, *, notify: bool = True) -> bool:
        """Queue ``item`` (``size`` bytes); drop the oldest items if full.  False if ended.
        With ``notify=False`` a waiting consumer is woken only by the next :meth:`flush`
        (the reader batches wake-ups per socket read: one wake-up for a burst of events)."""
        with self._cond:
            if self._ended:
                return False
            items = self._items
            limit = self.max_bytes
            while items and (len(items) >= self.maxsize or (limit is not None and self._bytes + size > limit)):
                _, old_size = items.popleft()
                self._bytes -= old_size
                self._dropped += 1
                self._dropped_bytes += old_size
                self.dropped_total += 1
                self.dropped_bytes_total += old_size
            items.append((item, size))
            self._bytes += size
            if notify:
                self._cond.notify()
            else:
                self._deferred = True
            return True

    def flush(self) -> None:
        """Wake a consumer for items offered with ``notify=False``."""
        with self._cond:
            if self._deferred:
                self._deferred = False
                self._cond.notify()

    def end(self, *, discard: bool = False) -> bool:
        """No more items: waiting consumers wake; what is queued is still delivered unless
        ``discard``.  Returns True the first time."""
        with self._cond:
            first = not self._ended
            self._ended = True
            if discard:
                self._items.clear()
                self._bytes = 0
                self._dropped = self._dropped_bytes = 0
            self._cond.notify_all()
            return first

    # -- consumer side ------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended

    @property
    def drained(self) -> bool:
        """Ended, and nothing (not even an overflow marker) left to deliver."""
        with self._cond:
            return self._ended and not self._items and not (self._dropped and self._on_overflow is not None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def queued_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def get(self, timeout: float | None) -> T:
        """The next item (an overflow marker first if items were dropped); raises
        :class:`QueueEmpty` at the deadline, :class:`QueueEnded` once ended and drained."""
        deadline = Deadline(timeout)
        with self._cond:
            while True:
                if self._dropped and self._on_overflow is not None:
                    marker = self._on_overflow(self._dropped, self._dropped_bytes)
                    self._dropped = self._dropped_bytes = 0
                    return marker
                if self._items:
                    item, size = self._items.popleft()
                    self._bytes -= size
                    return item
                if self._ended:
                    raise QueueEnded
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise QueueEmpty
                self._cond.wait(remaining)


# ------------------------------------------------------------------------ state queues
#
# A bounded, drop-oldest queue of state values for user threads (endpoint states, tunnel
# statuses): the producer never blocks; when full the oldest value is dropped (and counted),
# so the newest one, which is what a state consumer needs, is always kept.


class StateQueue(Generic[T]):
    """Values in order; iterable; :meth:`get` with a timeout; :meth:`close`; a context
    manager.  Thread-safe; usually drained by one thread.  ``dropped`` counts the values
    lost to overflow (oldest first)."""

    def __init__(self, maxsize: int, *, what: str, on_close: Callable[[StateQueue[T]], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._what = what
        self._on_close = on_close
        self._queue: BoundedQueue[T] = BoundedQueue(maxsize, None, None)

    @property
    def dropped(self) -> int:
        return self._queue.dropped_total

    def _offer(self, value: T) -> None:
        """Producer side (any thread, never blocks)."""
        self._queue.offer(value)

    def get(self, timeout: float | None = None) -> T:
        """The next value; raises :class:`GatewayTimeout` after ``timeout`` seconds
        (``None``: wait forever) and :class:`ClientClosed` once the queue is closed."""
        check_caller(f"{type(self).__name__}.get()")
        seconds = check_timeout(timeout)
        try:
            return self._queue.get(seconds)
        except QueueEmpty:
            raise GatewayTimeout(f"no {self._what} change within {seconds:g} s") from None
        except QueueEnded:
            raise ClientClosed(f"{self._what} closed") from None

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.get()
            except ClientClosed:
                return

    @property
    def closed(self) -> bool:
        return self._queue.ended

    def close(self) -> None:
        """Stop receiving: queued values are discarded and iteration ends."""
        if self._queue.end(discard=True) and self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} queued={len(self._queue)} dropped={self.dropped}>"
