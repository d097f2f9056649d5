"""Subscriptions: bounded, queue-based event streams for user threads.

A :class:`Subscription` is the consumer's half; the registry holds only its producer half,
an :class:`Inlet` (the filter, the bounded queue and the sticky spec), so a subscription
that its program drops without :meth:`~Subscription.close` is garbage-collected like any
object: its finalizer only appends the inlet to the registry's hand-off deque (no lock,
no call into gwclient), and the registry removes it on its next pass.

The registry offers pushes with :meth:`Inlet.offer` from gwclient threads (the reader, the
timer, the actors); it never blocks, so a slow subscriber cannot stall the socket or other
subscribers.  **Overflow policy** (:mod:`gwclient._engine.queue`): when the queue holds
``maxsize`` items or ``max_bytes`` bytes, the *oldest* items are dropped; the next
:meth:`~Subscription.get` returns an :class:`Overflow` marker saying how many items and
bytes were dropped, before the remaining items.  The bytes are the memory the decoded
events hold, estimated from each frame (:func:`gwclient._core.held.held_size`: an upper
estimate, 1-3x the real size for the shapes measured), not the frame's length: decoded
JSON takes up to ~30 times its wire size.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from .._core.deadline import check_timeout
from .._core.pushes import Event, Overflow, Push, StateChange
from .._core.sessions import Sticky
from .._errors import ClientClosed, GatewayError, GatewayTimeout, UsageError, check_caller
from .queue import BoundedQueue, QueueEmpty, QueueEnded

__all__ = ["Inlet", "Subscription"]


def _overflow(dropped: int, dropped_bytes: int) -> Push:
    return Overflow(dropped, dropped_bytes)


class Inlet:
    """The producer side of one subscription, as the registry holds it.  ``sticky`` is the
    session subscription it stands for (counted once by the channel's core); ``holder`` is
    the registry's bookkeeping: the feed whose core counts this inlet's sticky now (the
    registry changes it under its lock only)."""

    __slots__ = ("_accept", "error", "events", "holder", "include_state", "queue", "sticky")

    def __init__(self, events: frozenset[str] | None, include_state: bool, accept: Callable[[Event], bool] | None,
                 queue: BoundedQueue[Push], sticky: Sticky | None) -> None:
        self.events = events
        self.include_state = include_state
        self._accept = accept
        self.queue = queue
        self.sticky = sticky
        self.holder: object | None = None
        self.error: GatewayError | None = None

    def wants(self, push: Push) -> bool:
        if isinstance(push, Event):
            if self.events is not None and push.event not in self.events:
                return False
            return self._accept is None or self._accept(push)
        if isinstance(push, StateChange):
            return self.include_state
        return True

    def offer(self, push: Push, size: int = 0, notify: bool = True) -> bool:
        """True if queued (a deferred wake-up then needs :meth:`flush`).  Never blocks."""
        return self.wants(push) and self.queue.offer(push, size, notify=notify)

    def flush(self) -> None:
        self.queue.flush()

    def end(self, error: GatewayError | None = None) -> None:
        """The stream is over: deliver what is queued, then stop (raising ``error`` from
        ``get()`` if given: the gateway refused the session subscription)."""
        if error is not None and self.error is None:
            self.error = error
        self.queue.end()


class Subscription:
    """An iterable stream of :data:`Push` items (``Snapshot``, ``Event``, ``SeqGap``,
    ``StateChange``, ``Overflow``).  Thread-safe; usually consumed by one thread.

    Iteration ends (and :meth:`get` raises :class:`ClientClosed`) after :meth:`close` or
    when the connection is shut down; items queued before a shutdown are still delivered.
    A session subscription that the gateway refuses ends with that error instead: ``get()``
    raises it (a :class:`RequestError`) once the queue is drained, and so does iteration.
    """

    def __init__(
        self,
        events: Iterable[str] | None = None,
        *,
        maxsize: int = 1000,
        max_bytes: int | None = None,
        include_state: bool = True,
        on_close: Callable[[Inlet], None] | None = None,
        accept: Callable[[Event], bool] | None = None,
        sticky: Sticky | None = None,
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
        self._queue: BoundedQueue[Push] = BoundedQueue(maxsize, max_bytes, _overflow)
        self._inlet = Inlet(self.events, include_state, accept, self._queue, sticky)
        self._closed_by_user = False
        #: Set by the registry (hands the inlet over if this object is dropped unclosed);
        #: detached by close(), which releases at once instead.
        self.finalizer: weakref.finalize[..., object] | None = None

    @property
    def inlet(self) -> Inlet:
        """The producer side (what the registry holds)."""
        return self._inlet

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
        the subscription has ended and is drained (or the gateway's refusal of a session
        subscription)."""
        check_caller("Subscription.get()")
        seconds = check_timeout(timeout)
        try:
            return self._queue.get(seconds)
        except QueueEmpty:
            raise GatewayTimeout(f"no gateway push within {seconds:g} s") from None
        except QueueEnded:
            error = self._inlet.error
            if error is not None and not self._closed_by_user:
                raise copy.copy(error) from None
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
        self._queue.end(discard=True)
        finalizer, self.finalizer = self.finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if first and self._on_close is not None:
            self._on_close(self._inlet)

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
