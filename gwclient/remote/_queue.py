"""A bounded, drop-oldest queue of state values for user threads (endpoint states, tunnel
statuses).  The producer never blocks: when the queue is full the oldest value is dropped,
so the newest one, which is what a state consumer needs, is always kept."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

from .._errors import ClientClosed, GatewayTimeout, check_caller

__all__ = ["StateQueue"]

T = TypeVar("T")


# TODO(lead): use the shared bounded queue
class StateQueue(Generic[T]):
    """Values in order; iterable; :meth:`get` with a timeout; :meth:`close`; a context
    manager.  Thread-safe; usually drained by one thread.  ``dropped`` counts the values
    lost to overflow (oldest first)."""

    def __init__(self, maxsize: int, *, what: str, on_close: Callable[[StateQueue[T]], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._what = what
        self._on_close = on_close
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def _offer(self, value: T) -> None:
        """Producer side (any thread, never blocks)."""
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(value)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T:
        """The next value; raises :class:`GatewayTimeout` after ``timeout`` seconds
        (``None``: wait forever) and :class:`ClientClosed` once the queue is closed."""
        check_caller(f"{type(self).__name__}.get()")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise ClientClosed(f"{self._what} closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise GatewayTimeout(f"no {self._what} change within {timeout:g} s")
                self._cond.wait(remaining)
            return self._items.popleft()

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.get()
            except ClientClosed:
                return

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def close(self) -> None:
        """Stop receiving: queued values are discarded and iteration ends."""
        with self._cond:
            first = not self._closed
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
        if first and self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> StateQueue[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        with self._cond:
            n = len(self._items)
        return f"<{type(self).__name__} queued={n} dropped={self.dropped}>"
