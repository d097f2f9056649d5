"""A bounded, drop-oldest queue of state values for user threads (endpoint states, tunnel
statuses), on the library's one bounded queue type (:mod:`gwclient._engine.queue`).  The producer
never blocks: when the queue is full the oldest value is dropped (and counted), so the
newest one, which is what a state consumer needs, is always kept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, Self, TypeVar

from .._core.deadline import check_timeout
from .._engine.queue import BoundedQueue, QueueEmpty, QueueEnded
from .._errors import ClientClosed, GatewayTimeout, check_caller

__all__ = ["StateQueue"]

T = TypeVar("T")


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
