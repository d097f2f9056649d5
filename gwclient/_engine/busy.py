"""Retrying a request the gateway refused because it was busy.

Authenticated requests share the gateway's bounded start queue; when it is full the
gateway answers ``UNAVAILABLE`` with ``retryable: true`` *before the method runs* and
expects the client to retry within the request's budget (openclaw#112250).  gwclient
does, for ``request()``, ``submit()`` and the start request of ``chat()``/``agent()``
runs (which re-send the same params, so the same idempotency key):

* only ``UNAVAILABLE`` with ``retryable: true``, only before the gateway accepted the
  request (an error that follows a two-stage request's ``accepted`` answer is final),
  never any other code;
* after ``retryAfterMs`` (clamped to :data:`MIN_DELAY`..:data:`MAX_DELAY`) plus up to 25 %
  random jitter, else after an exponential backoff (100 ms doubling to 2 s) spread
  randomly over half to one and a half times it;
* within the caller's own timeout: when the next attempt would start after the deadline,
  the gateway's error is raised (its ``attempts`` says how often the request was sent).

:func:`retry_after` is the blocking loop (the caller's thread sleeps between
attempts); :class:`RetryingFuture` is the ``submit()`` form, re-sent from the channel's
timer thread.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .._core.encode import encode_request
from .._core.protocol import new_request_id, refuses_field
from .._errors import GatewayUnavailable

__all__ = ["MAX_DELAY", "MIN_DELAY", "RetryingFuture", "is_busy", "retry_after", "retry_delay"]

#: Bounds of an honoured ``retryAfterMs`` (seconds): a hostile or buggy hint can neither
#: spin the client nor park it for minutes.
MIN_DELAY = 0.01
MAX_DELAY = 5.0
#: Backoff without a hint: 100 ms, 200 ms, 400 ms ... up to 2 s, each spread over
#: 0.5-1.5 times that (a burst of refused requests must not come back all at once: the
#: real gateway's start queue refuses hundreds of a pipelined burst).
_FIRST_DELAY = 0.1
_MAX_BACKOFF = 2.0
_JITTER = 0.25  # on top of a hint: never earlier than the gateway asked

_random = random.Random()

T = TypeVar("T")


def is_busy(error: BaseException) -> bool:
    """True for the refusals that may be retried: ``UNAVAILABLE``, ``retryable: true``,
    before the gateway accepted the request."""
    return isinstance(error, GatewayUnavailable) and error.retryable and not error.after_accept


def retry_delay(error: GatewayUnavailable, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 were made)."""
    hint = error.retry_after_ms
    if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 0:
        base = min(MAX_DELAY, max(MIN_DELAY, hint / 1000))
        return base * (1 + _JITTER * _random.random())
    base = min(_MAX_BACKOFF, _FIRST_DELAY * 2.0 ** min(attempt - 1, 16))
    return base * (0.5 + _random.random())


def _give_up(error: GatewayUnavailable, attempts: int) -> GatewayUnavailable:
    error.attempts = attempts
    if attempts > 1 and error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} (gave up after {attempts} attempts within the request's timeout)",)
    return error


def retry_after(first: GatewayUnavailable, again: Callable[[float | None], T], started: float,
                seconds: float | None) -> T:
    """The blocking loop after a first busy refusal: sleep, then ``again(remaining)``,
    until it returns, fails otherwise, or the next attempt would start after the
    deadline (``started + seconds``; ``None``: none), which raises the gateway's error
    with its attempt count.  Runs on the caller's thread."""
    deadline = None if seconds is None else started + seconds
    error, attempts = first, 1
    while True:
        delay = retry_delay(error, attempts)
        if deadline is not None and time.monotonic() + delay >= deadline:
            raise _give_up(error, attempts) from None
        time.sleep(delay)
        attempts += 1
        try:
            return again(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except GatewayUnavailable as exc:
            if not is_busy(exc):
                raise
            error = exc


class RetryingFuture(Future[Any]):
    """The future of a ``submit()``: a busy refusal does not settle it but re-sends the
    request (new request id, same params) after the delay, from the channel's timer
    thread; anything else settles it as usual.  ``current_id`` is the id of the attempt
    in flight (the submit timeout forgets that one); ``attempts`` how often it was sent.
    While it waits to be re-sent it is in ``channel.parked`` (a shutdown fails it)."""

    def __init__(self, channel: Any, request_id: str, request: tuple[str, Any, bool, float | None]) -> None:
        """``request``: (method, params, expect_final, timeout seconds or None)."""
        super().__init__()
        self.current_id = request_id
        self.attempts = 1
        self._channel = channel
        self._request = request
        seconds = request[3]
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def set_exception(self, exception: BaseException | None) -> None:
        if exception is not None and self.attempts == 1 and refuses_field(exception, "traceparent") and not self.done():
            # A release before 2026.9 refused the first frame for its traceparent (sent
            # before the hello said which release it is), before anything ran: send it
            # again at once, without (re-sent frames carry none).
            self.attempts += 1
            self._channel.parked.add(self)
            self._channel.timer.call_later(0.0, self._again)
            return
        if exception is not None and is_busy(exception) and not self.done():
            assert isinstance(exception, GatewayUnavailable)
            delay = retry_delay(exception, self.attempts)
            if self._deadline is None or time.monotonic() + delay < self._deadline:
                self.attempts += 1
                self._channel.parked.add(self)
                self._channel.timer.call_later(delay, self._again)
                return
            exception = _give_up(exception, self.attempts)
        super().set_exception(exception)

    def _again(self) -> None:
        """Timer thread: send the request again (unless it timed out meanwhile)."""
        self._channel.parked.discard(self)
        if self.done():
            return
        method, params, expect_final, _ = self._request
        rid = new_request_id()
        self.current_id = rid
        self._channel.submit(rid, method, encode_request(rid, method, params), self, expect_final)

