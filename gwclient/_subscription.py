"""Subscriptions: bounded, queue-based event streams for user threads.

The bus offers pushes with :meth:`Subscription._offer` from gwclient threads (the reader,
the timer, the channel actor); it never blocks, so a slow subscriber cannot stall the
socket or other subscribers.  **Overflow policy** (:mod:`gwclient._queue`): when the queue
holds ``maxsize`` items or ``max_bytes`` bytes, the *oldest* items are dropped; the next
:meth:`~Subscription.get` returns an :class:`Overflow` marker saying how many items and
bytes were dropped, before the remaining items.  The bytes are the memory the decoded
events hold, estimated from each frame (:func:`gwclient._held.held_size`: an upper
estimate, 1-3x the real size for the shapes measured), not the frame's length: decoded
JSON takes up to ~30 times its wire size.

**Dropped without close()**: the bus holds subscriptions weakly, so one the user drops is
collected with its queue; its finalizer (which the collector may run on any thread, in the
middle of any gwclient code, even under the bus lock) only hands the release (the bus
entry, a session subscription's unsubscribe) to the bus, which does it outside its lock
(:meth:`gwclient._bus.Bus.drain`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from ._deadline import check_timeout
from ._errors import ClientClosed, GatewayTimeout, UsageError, check_caller
from ._pushes import Event, Overflow, Push, StateChange
from ._queue import BoundedQueue, QueueEmpty, QueueEnded

__all__ = ["Subscription"]


def _overflow(dropped: int, dropped_bytes: int) -> Push:
    return Overflow(dropped, dropped_bytes)


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
        max_bytes: int | None = None,
        include_state: bool = True,
        on_close: Callable[[Subscription | None], None] | None = None,
        accept: Callable[[Event], bool] | None = None,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise UsageError("maxsize must be an integer >= 1")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                      or max_bytes < 1):
            raise UsageError("max_bytes must be an integer >= 1 or None")
        self.events = frozenset(events) if events is not None else None
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.include_state = include_state
        self._on_close = on_close
        self._accept = accept
        self._queue: BoundedQueue[Push] = BoundedQueue(maxsize, max_bytes, _overflow)
        self._closed_by_user = False
        self._dropped: weakref.finalize[..., Subscription] | None = None
        self._defer: Callable[[Callable[[], None]], None] | None = None

    def _hand_over(self, defer: Callable[[Callable[[], None]], None]) -> None:
        """Called by the owner (the bus) when it registers this subscription: if it is
        collected without :meth:`close`, ``defer`` receives the release work
        (``on_close(None)``).  The finalizer only appends; it takes no lock."""
        on_close = self._on_close
        if on_close is None or self._dropped is not None:
            return
        self._defer = defer
        self._dropped = weakref.finalize(self, defer, lambda: on_close(None))
        self._dropped.atexit = False

    def _close_with(self, owner: object) -> None:
        """``owner`` (a Run) holds this subscription: when ``owner`` is collected, hand
        :meth:`close` over to the bus (the finalizer only appends; it takes no lock)."""
        if self._defer is not None:
            weakref.finalize(owner, self._defer, self.close).atexit = False

    # -- producer side (gwclient threads; never blocks) ---------------------------------

    def _wants(self, push: Push) -> bool:
        if isinstance(push, Event):
            if self.events is not None and push.event not in self.events:
                return False
            return self._accept is None or self._accept(push)
        if isinstance(push, StateChange):
            return self.include_state
        return True

    def _offer(self, push: Push, size: int = 0, notify: bool = True) -> bool:
        """True if queued (a deferred wake-up then needs :meth:`_flush`)."""
        return self._wants(push) and self._queue.offer(push, size, notify=notify)

    def _flush(self) -> None:
        self._queue.flush()

    def _end(self) -> None:
        """The connection is gone: deliver what is queued, then stop."""
        self._queue.end()

    # -- consumer side ------------------------------------------------------------------

    @property
    def dropped_total(self) -> int:
        """Items dropped by the overflow policy so far."""
        return self._queue.dropped_total

    @property
    def dropped_bytes_total(self) -> int:
        return self._queue.dropped_bytes_total

    @property
    def closed(self) -> bool:
        return self._queue.drained

    def get(self, timeout: float | None = None) -> Push:
        """Next item; waits up to ``timeout`` seconds (``None`` = forever).  Raises
        :class:`GatewayTimeout` when nothing arrived in time, :class:`ClientClosed` when
        the subscription has ended and is drained."""
        check_caller("Subscription.get()")
        seconds = check_timeout(timeout)
        try:
            return self._queue.get(seconds)
        except QueueEmpty:
            raise GatewayTimeout(f"no gateway push within {seconds:g} s") from None
        except QueueEnded:
            raise ClientClosed("subscription closed") from None

    def __iter__(self) -> Iterator[Push]:
        return self

    def __next__(self) -> Push:
        try:
            return self.get()
        except ClientClosed:
            raise StopIteration from None

    def close(self) -> None:
        """Stop receiving; pending items are discarded and iteration ends."""
        first = not self._closed_by_user
        self._closed_by_user = True
        if self._dropped is not None:
            self._dropped.detach()  # released here, not again when collected
        self._queue.end(discard=True)
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
        events = "all" if self.events is None else ",".join(sorted(self.events))
        return f"<Subscription events={events} queued={len(self._queue)} dropped={self.dropped_total}>"
