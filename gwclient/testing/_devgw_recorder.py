"""What a :class:`~gwclient.testing.DevGateway` records about the requests it got
(:class:`Recorder`): the per-method counts, the ``connect`` attempts and their params,
completed handshakes and invalid frames.  The protocol parts call the ``note_*`` methods;
the gateway's counters read the rest."""

from __future__ import annotations

import collections
import copy
import threading
from typing import Any

__all__ = ["Recorder"]


class Recorder:
    """Request counters and the ``connect`` log.  Thread-safe: every change takes ``cond``
    (the gateway's monitor) and notifies it, so ``DevGateway.wait_for`` predicates see it."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._requests_by_method: dict[str, int] = {}
        self._connect_attempts = 0
        self._connect_log: list[Any] = []
        self._handshakes_completed = 0
        self._invalid_frames = 0
        self._request_frames: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)

    # -- recording (called on the connection threads) ------------------------------------

    def note_request(self, method: str, frame: dict[str, Any] | None = None) -> None:
        """A request frame for ``method`` arrived (``connect`` included); its envelope (every
        key but ``params``) is kept among the last 10 000."""
        with self._cond:
            self._requests_by_method[method] = self._requests_by_method.get(method, 0) + 1
            if frame is not None:
                self._request_frames.append({k: v for k, v in frame.items() if k != "params"})
            self._cond.notify_all()

    @property
    def request_frames(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(f) for f in self._request_frames]

    def note_connect(self, params: Any) -> None:
        """A ``connect`` request with these params arrived (kept as a deep copy)."""
        with self._cond:
            self._connect_attempts += 1
            self._connect_log.append(copy.deepcopy(params))
            self._cond.notify_all()

    def note_handshake(self) -> None:
        """A connection got hello-ok."""
        with self._cond:
            self._handshakes_completed += 1
            self._cond.notify_all()

    def note_invalid_frame(self) -> None:
        """A frame after hello-ok was not a valid request frame."""
        with self._cond:
            self._invalid_frames += 1
            self._cond.notify_all()

    # -- reading -----------------------------------------------------------------------

    @property
    def requests_by_method(self) -> dict[str, int]:
        with self._cond:
            return dict(self._requests_by_method)

    @property
    def connect_attempts(self) -> int:
        with self._cond:
            return self._connect_attempts

    @property
    def connect_requests(self) -> list[Any]:
        with self._cond:
            return copy.deepcopy(self._connect_log)

    @property
    def handshakes_completed(self) -> int:
        with self._cond:
            return self._handshakes_completed

    @property
    def invalid_frames(self) -> int:
        with self._cond:
            return self._invalid_frames
