"""The protocol faults a :class:`~gwclient.testing.DevGateway` injects (:class:`Faults`):
queued connect rejections, method delays and never-answered methods.  The handshake
asks :meth:`Faults.next_rejection`, the request dispatch asks :meth:`Faults.plan`; a new
fault is a field here, a control method here (delegated from ``DevGateway`` in one line)
and the one place of the handshake or the dispatch that obeys it.  Transport faults
(dropped sockets, close frames, seq gaps) are the server's
(:mod:`gwclient.testing._devgw_server`)."""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from gwclient.testing._devgw_proto import error_shape

__all__ = ["Faults", "Rejection"]


@dataclass(frozen=True)
class Rejection:
    """One queued connect rejection: the error response (None: close without one), then
    close ``(close_code, close_reason)``."""

    error: dict[str, Any] | None
    close_code: int
    close_reason: str


class Faults:
    """The injected protocol faults; thread-safe (its own lock)."""

    def __init__(self, cond: threading.Condition | None = None) -> None:
        #: The gateway's condition (``wait_for`` wakes on a busy answer); its own otherwise.
        self._lock = cond if cond is not None else threading.Condition()
        self._rejections: deque[Rejection] = deque()
        self._delays: dict[str, float] = {}
        self._never: set[str] = set()
        self._busy: dict[str | None, list[Any]] = {}  # method (None: any) -> [n, retryAfterMs, message]
        self._busy_answers = 0

    # -- asked by the protocol ---------------------------------------------------------

    def next_rejection(self) -> Rejection | None:
        """The rejection for this (schema-valid) connect, if one is queued (consumed)."""
        with self._lock:
            return self._rejections.popleft() if self._rejections else None

    def plan(self, method: str) -> tuple[bool, float]:
        """``(answer, delay)`` for a request of ``method``: whether to answer it at all and
        after how many seconds."""
        with self._lock:
            return method not in self._never, self._delays.get(method, 0.0)

    def busy(self, method: str) -> dict[str, Any] | None:
        """The busy error shape to answer a request of ``method`` with, if one is queued
        by :meth:`answer_busy` (consumed)."""
        with self._lock:
            entry = self._busy.get(method) or self._busy.get(None)
            if entry is None or entry[0] <= 0:
                return None
            entry[0] -= 1
            self._busy_answers += 1
            self._lock.notify_all()
        return error_shape("UNAVAILABLE", entry[2], retryable=True, retry_after_ms=entry[1])

    @property
    def busy_answers(self) -> int:
        with self._lock:
            return self._busy_answers

    # -- controls ----------------------------------------------------------------------

    def answer_busy(self, n: int, method: str | None = None, *, retry_after_ms: int | None = None,
                    message: str = "The server is busy. Please try again in a moment.") -> None:
        with self._lock:
            self._busy[method] = [n, retry_after_ms, message]

    def reject_next_connects(
        self,
        n: int,
        *,
        code: str,
        message: str,
        details: Any = None,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
        close_code: int = 1008,
        close_reason: str = "",
        respond: bool = True,
    ) -> None:
        error = error_shape(code, message, details, retryable=retryable, retry_after_ms=retry_after_ms)
        with self._lock:
            for _ in range(n):
                self._rejections.append(Rejection(copy.deepcopy(error) if respond else None, close_code, close_reason))

    def reject_next_like_protocol_3(self, n: int, *, respond: bool) -> None:
        self.reject_next_connects(
            n,
            code="INVALID_REQUEST",
            message="protocol mismatch",
            details={"expectedProtocol": 3},
            close_code=1002,
            close_reason="protocol mismatch",
            respond=respond,
        )

    def reject_next_unavailable(self, n: int, retry_after_ms: int) -> None:
        self.reject_next_connects(
            n,
            code="UNAVAILABLE",
            message="gateway starting; retry shortly",
            details={"reason": "startup-sidecars"},
            retryable=True,
            retry_after_ms=retry_after_ms,
            close_code=1013,
            close_reason="gateway starting",
        )

    def set_method_delay(self, method: str, seconds: float | None) -> None:
        with self._lock:
            if seconds:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def never_answer(self, method: str) -> None:
        with self._lock:
            self._never.add(method)

    def clear(self) -> None:
        """Drop every method delay, never-answered method and queued rejection."""
        with self._lock:
            self._delays.clear()
            self._never.clear()
            self._busy.clear()
            self._rejections.clear()
