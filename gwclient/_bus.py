"""Subscriptions: bounded, queue-based event streams for user threads.

The connection actor offers pushes with :meth:`Subscription._offer`, which never blocks:
a slow subscriber cannot stall the socket or other subscribers.  **Overflow policy**: when
the queue is full the *oldest* item is dropped; the next :meth:`~Subscription.get` then
returns an :class:`Overflow` marker with the number dropped, before the remaining items.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from ._errors import ClientClosed, GatewayTimeout, check_caller
from ._pushes import Event, Overflow, Push, StateChange

__all__ = ["Subscription"]


class Subscription:
    """An iterable stream of :data:`Push` items (``Snapshot``, ``Event``, ``SeqGap``,
    ``StateChange``, ``Overflow``).  Thread-safe; usually consumed by one thread.

    Iteration ends (and :meth:`get` raises :class:`ClientClosed`) after :meth:`close` or
    when the connection is shut down; items queued before a shutdown are still delivered.
    """

    def __init__(
        self,
        events: Iterable[str] | None = None,
        *,
        maxsize: int = 1000,
        include_state: bool = True,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.events = frozenset(events) if events is not None else None
        self.maxsize = maxsize
        self.include_state = include_state
        self._on_close = on_close
        self._items: collections.deque[Push] = collections.deque()
        self._cond = threading.Condition()
        self._dropped_pending = 0
        self.dropped_total = 0
        self._ended = False
        self._closed_by_user = False

    # -- producer side (connection actor thread; never blocks) ------------------------

    def _wants(self, push: Push) -> bool:
        if isinstance(push, Event):
            return self.events is None or push.event in self.events
        if isinstance(push, StateChange):
            return self.include_state
        return True

    def _offer(self, push: Push) -> None:
        if not self._wants(push):
            return
        with self._cond:
            if self._ended:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self._dropped_pending += 1
                self.dropped_total += 1
            self._items.append(push)
            self._cond.notify()

    def _end(self) -> None:
        """The connection is gone: deliver what is queued, then stop."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    # -- consumer side ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._ended and not self._items and not self._dropped_pending

    def get(self, timeout: float | None = None) -> Push:
        """Next item; waits up to ``timeout`` seconds (``None`` = forever).  Raises
        :class:`GatewayTimeout` when nothing arrived in time, :class:`ClientClosed` when
        the subscription has ended and is drained."""
        check_caller("Subscription.get()")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._dropped_pending:
                    marker = Overflow(self._dropped_pending)
                    self._dropped_pending = 0
                    return marker
                if self._items:
                    return self._items.popleft()
                if self._ended:
                    raise ClientClosed("subscription closed")
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise GatewayTimeout(f"no gateway push within {timeout:g} s")
                    self._cond.wait(remaining)

    def __iter__(self) -> Iterator[Push]:
        return self

    def __next__(self) -> Push:
        try:
            return self.get()
        except ClientClosed:
            raise StopIteration from None

    def close(self) -> None:
        """Stop receiving; pending items are discarded and iteration ends."""
        with self._cond:
            first = not self._closed_by_user
            self._closed_by_user = True
            self._ended = True
            self._items.clear()
            self._dropped_pending = 0
            self._cond.notify_all()
        if first and self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        with self._cond:
            n = len(self._items)
        events = "all" if self.events is None else ",".join(sorted(self.events))
        return f"<Subscription events={events} queued={n} dropped={self.dropped_total}>"
