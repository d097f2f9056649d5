"""A tiny timer thread for one channel (actors cannot sleep), and the expiry heap of
``submit()`` timeouts that it sweeps.

Due callbacks run on the ``gwclient-timer-<label>`` thread; they only take the channel's
short lock or ``tell`` an actor, never block.  The thread is supervised: a callback that
raises is logged once with its traceback and reported to ``on_fault`` (the channel then
abandons its socket and reconnects); the thread itself carries on.  Delays are clamped to
:data:`~gwclient._core.deadline.MAX_TIMEOUT` (a gateway value of 1e13 ms used to kill it).

Cancelled entries are removed eagerly when they pile up, so a long-lived connection that
re-arms timers forever keeps a bounded heap.  Waits use a ``Condition`` so :meth:`stop`
interrupts them at once; the clock is injectable for tests.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .._core.deadline import MAX_TIMEOUT
from .._errors import GatewayTimeout

__all__ = ["Expiries", "Timer", "TimerHandle"]

log = logging.getLogger("gwclient.timer")


class TimerHandle:
    __slots__ = ("cancelled", "due", "fn")

    def __init__(self, due: float, fn: Callable[[], None]) -> None:
        self.due = due
        self.fn = fn
        self.cancelled = False


class Timer:
    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic,
                 on_fault: Callable[[BaseException], None] | None = None) -> None:
        self._clock = clock
        self._on_fault = on_fault
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._cancelled = 0
        self._ids = itertools.count(1)
        self._stopped = False
        self.thread = threading.Thread(target=self._run, name=f"gwclient-timer-{label}", daemon=True)
        self.thread.start()

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle:
        """Run ``fn`` after ``delay`` seconds (clamped to [0, MAX_TIMEOUT])."""
        if not delay >= 0 or math.isnan(delay):
            delay = 0.0
        delay = min(delay, MAX_TIMEOUT)
        with self._cond:
            handle = TimerHandle(self._clock() + delay, fn)
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (handle.due, next(self._ids), handle))
            if earliest is None or handle.due < earliest:
                self._cond.notify()  # only a new earliest deadline changes the thread's wait
            return handle

    def cancel(self, handle: TimerHandle | None) -> None:
        if handle is None:
            return
        with self._cond:
            if handle.cancelled:
                return
            handle.cancelled = True
            self._cancelled += 1
            if self._cancelled > 32 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def stop(self) -> None:
        """Stop the thread (does not wait for it; join ``thread`` for that)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, _, handle = self._heap[0]
                    if handle.cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                        continue
                    wait = due - self._clock()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        handle.cancelled = True  # fired: a later cancel() is a no-op
                        break
                    self._cond.wait(wait)
            try:
                handle.fn()
            except Exception as exc:
                log.exception("timer callback failed")
                if self._on_fault is not None:
                    try:
                        self._on_fault(exc)
                    except Exception:  # pragma: no cover - last resort
                        log.exception("timer fault handler failed")


# --------------------------------------------------------------------- submit() expiries
#
# The timeouts of ``submit()`` requests: one heap and one armed timer per channel.  A
# timer entry plus a done-callback per request cost a fifth of a pipelined ``submit()``
# (BENCHMARKS.md); here a submit is one heap push under a short lock, and the timer thread
# is woken only when a new earliest deadline arrives.  Entries of answered requests are
# dropped when they come due, or in a compaction once they pile up.  Runs on the caller's
# thread (:meth:`Expiries.add`) and the channel's timer thread (the sweep).

_expiry_ids = itertools.count(1)


class Expiries:
    def __init__(self, timer: Timer, cancel: Callable[[str], bool]) -> None:
        self._timer = timer
        self._cancel = cancel  # forgets the request in the core (takes the channel's lock)
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
            heapq.heappush(self._heap, (due, next(_expiry_ids), request_id, method, seconds, fut))
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
