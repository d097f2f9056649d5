"""The timeouts of ``submit()`` requests: one heap and one armed timer per channel.

A timer entry plus a done-callback per request cost a fifth of a pipelined ``submit()``
(BENCHMARKS.md); here a submit is one heap push under a short lock, and the timer thread
is woken only when a new earliest deadline arrives.  Entries of answered requests are
dropped when they come due, or in a compaction once they pile up.  Runs on the caller's
thread (:meth:`Expiries.add`) and the channel's timer thread (the sweep).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ._errors import GatewayTimeout
from ._timer import Timer, TimerHandle

__all__ = ["Expiries"]

_ids = itertools.count(1)


class Expiries:
    def __init__(self, timer: Timer, cancel: Callable[[str], bool]) -> None:
        self._timer = timer
        self._cancel = cancel  # forgets the request in the session (takes the link's lock)
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, str, str, float, Future[Any]]] = []
        self._handle: TimerHandle | None = None
        self._due = 0.0
        self._compact_at = 4096

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)

    def add(self, seconds: float, request_id: str, method: str, fut: Future[Any]) -> None:
        """Fail ``fut`` with :class:`GatewayTimeout` after ``seconds`` unless answered."""
        due = time.monotonic() + seconds
        with self._lock:
            heapq.heappush(self._heap, (due, next(_ids), request_id, method, seconds, fut))
            if len(self._heap) > self._compact_at:  # answered entries still waiting for their due time
                self._heap = [e for e in self._heap if not e[5].done()]
                heapq.heapify(self._heap)
                self._compact_at = max(4096, 2 * len(self._heap))
            if self._handle is None or due < self._due:
                self._timer.cancel(self._handle)
                self._due = due
                self._handle = self._timer.call_later(seconds, self._sweep)

    def _sweep(self) -> None:
        """Timer thread: fail the submitted requests whose time ran out."""
        now = time.monotonic()
        expired = []
        with self._lock:
            self._handle = None
            heap = self._heap
            while heap and (heap[0][5].done() or heap[0][0] <= now):
                entry = heapq.heappop(heap)
                if not entry[5].done():
                    expired.append(entry)
            if heap:
                self._due = heap[0][0]
                self._handle = self._timer.call_later(self._due - now, self._sweep)
        for _, _, request_id, method, seconds, fut in expired:
            # A busy-retried submit() has sent the request again under a newer id.
            sent = self._cancel(getattr(fut, "current_id", request_id))
            if not fut.done():
                error = GatewayTimeout(f"{method} got no answer within {seconds:g} s")
                error.request_sent = sent
                try:
                    fut.set_exception(error)
                except Exception:  # InvalidStateError: answered meanwhile
                    pass
