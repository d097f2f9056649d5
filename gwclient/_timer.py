"""A tiny timer thread for the channel actor (actors cannot sleep).

Due callbacks run on the ``gwclient-timer-<label>`` thread and must only ``tell`` an actor.
Waits use a ``Condition`` so :meth:`Timer.stop` interrupts them at once; the clock is
injectable (``time.monotonic`` by default) for tests of the policy code.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["Timer"]


class Timer:
    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count(1)
        self._stopped = False
        self.thread = threading.Thread(target=self._run, name=f"gwclient-timer-{label}", daemon=True)
        self.thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> int:
        """Run ``fn`` after ``delay`` seconds; returns a handle for :meth:`cancel`."""
        with self._cond:
            handle = next(self._ids)
            heapq.heappush(self._heap, (self._clock() + max(0.0, delay), handle, fn))
            self._cond.notify()
            return handle

    def cancel(self, handle: int | None) -> None:
        if handle is None:
            return
        with self._cond:
            self._cancelled.add(handle)

    def stop(self) -> None:
        """Stop the thread (does not wait for it; join ``thread`` for that)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap:
                        due, handle, fn = self._heap[0]
                        wait = due - self._clock()
                        if wait <= 0:
                            heapq.heappop(self._heap)
                            if handle in self._cancelled:
                                self._cancelled.discard(handle)
                                continue
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                else:
                    return
            fn()
