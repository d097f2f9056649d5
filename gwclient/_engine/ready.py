"""Waiting for a request's answer, failing fast while not connected, and draining.

Helpers of :class:`~gwclient.GatewayConnection` kept out of the facade module:

* :func:`result` waits for one attempt's answer and turns a timeout into a
  :class:`GatewayTimeout` that says whether the frame had been sent (``request_sent``);
* :func:`fail_fast` is ``wait_for_ready=False`` (gRPC's default): while the connection is
  not up, a call fails at once with :class:`GatewayUnavailable` instead of waiting for the
  (re)connect, which it still starts;
* :func:`drain` stops taking requests, lets the requests in flight and the runs started
  on the connection finish within a deadline, then shuts the connection down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .._core.deadline import check_timeout
from .._core.pushes import ConnectionState
from .._errors import GatewayError, GatewayTimeout, GatewayUnavailable
from .channel import Channel
from .waiter import Deadline

__all__ = ["drain", "fail_fast", "result"]

_DRAIN_POLL = 0.01  # seconds between looks at the channel's in-flight table while draining


def result(fut: Any, seconds: float | None, request_id: str, cancel: Callable[[str], bool], *,
           method: str, budget: float | None) -> Any:
    """The answer of one attempt, waiting up to ``seconds``; ``budget`` is the caller's
    whole timeout (for the message)."""
    try:
        return fut.result(seconds)
    except FutureTimeout:
        sent = cancel(request_id)
        error = GatewayTimeout(f"{method} got no answer within {budget if budget is not None else seconds:g} s"
                               f"{'' if sent else ' (it was never sent: not connected)'}")
        error.request_sent = sent
        raise error from None


def fail_fast(channel: Channel, method: str) -> None:
    """Raise :class:`GatewayUnavailable` unless the channel is connected now (and start
    connecting an idle one, so a later call can succeed)."""
    state, _ = channel.status()
    if state == ConnectionState.CONNECTED:
        return
    channel.connect()
    state, _ = channel.status()
    raise GatewayUnavailable(
        f"{method} not sent: the gateway connection is {state.value} (wait_for_ready=False fails at once)",
        code="UNAVAILABLE", method=method)


def drain(runs: list[Any], channel: Channel | None, shutdown: Callable[..., None], timeout: object) -> bool:
    """:meth:`GatewayConnection.drain` (which refuses new requests from other threads
    first): wait for ``runs`` and the channel's requests in flight, then ``shutdown``.
    True when every request and run finished in time."""
    deadline = Deadline(check_timeout(timeout))
    finished = True
    for run in runs:
        if run.done:
            continue
        try:
            run.wait(timeout=deadline.remaining())
        except GatewayTimeout:
            finished = False
            break
        except GatewayError:
            pass  # the run ended without a reply: it has finished all the same
    if finished and channel is not None:
        while channel.in_flight():
            if deadline.expired:
                finished = False
                break
            time.sleep(_DRAIN_POLL)
    remaining = deadline.remaining()
    shutdown(timeout=5.0 if remaining is None else max(remaining, 0.5))
    return finished
