"""A one-shot result slot for a caller blocked in ``request()``.

Cheaper to settle than a ``concurrent.futures.Future`` (measured: ``Future.set_result``
with its Condition and ``notify_all`` was about a third of the reader thread's time with
16 requesting threads): settling is one lock release, waiting one lock acquire with a
timeout.  ``submit()`` still hands out real Futures.  Settling twice is refused
atomically (a second settler, e.g. a shutdown racing the answer, gets ``InvalidStateError``,
which the channel ignores).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

__all__ = ["Deadline", "Waiter"]


class Waiter:
    __slots__ = ("_claim", "_error", "_ready", "_value")

    def __init__(self) -> None:
        self._claim = threading.Lock()  # taken by the one settler
        self._ready = threading.Lock()  # held until settled
        self._ready.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._claim.locked()

    def _settle(self, value: Any, error: BaseException | None) -> None:
        if not self._claim.acquire(False):
            raise InvalidStateError("already settled")
        self._value, self._error = value, error
        self._ready.release()

    def set_result(self, value: Any) -> None:
        self._settle(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._settle(None, error)

    def exception(self) -> BaseException | None:
        return self._error if self.done() else None

    def result(self, timeout: float | None = None) -> Any:
        if not self._ready.acquire(True, -1 if timeout is None else timeout):
            raise FutureTimeout
        self._ready.release()  # later calls return at once
        if self._error is not None:
            raise self._error
        return self._value


class Deadline:
    """A monotonic deadline; ``None`` timeout means never.  ``remaining()`` is what to pass
    to the next wait (``None`` = forever, never negative)."""

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        if self._end is None:
            return None
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end

    def describe(self) -> str:
        """``within 5 s`` / ``in time`` for error messages."""
        return "in time" if self.timeout is None else f"within {self.timeout:g} s"
