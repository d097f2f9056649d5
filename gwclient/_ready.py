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

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ._deadline import Deadline, check_timeout
from ._errors import GatewayError, GatewayTimeout, GatewayUnavailable

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


def fail_fast(channel: Any, method: str) -> None:
    """Raise :class:`GatewayUnavailable` unless the channel is connected now (and start
    connecting an idle one, so a later call can succeed)."""
    link = channel.link
    if link.session.phase == "connected":
        return
    link.await_connected(Future())
    state = link.session.state
    raise GatewayUnavailable(
        f"{method} not sent: the gateway connection is {state.value} (wait_for_ready=False fails at once)",
        code="UNAVAILABLE", method=method)


def _in_flight(channel: Any) -> int:
    link = channel.link
    with link.locked():
        return len(link.session.pending) + len(link.session.waiting)


def drain(conn: Any, timeout: object) -> bool:
    """:meth:`GatewayConnection.drain`: True when every request and run finished in time."""
    deadline = Deadline(check_timeout(timeout))
    conn._draining = threading.get_ident()  # this thread may still pump the runs' own requests
    finished = True
    for run in list(conn._runs):
        if run.done:
            continue
        try:
            run.wait(timeout=deadline.remaining())
        except GatewayTimeout:
            finished = False
            break
        except GatewayError:
            pass  # the run ended without a reply: it has finished all the same
    bound = conn._bound
    if finished and bound is not None:
        while _in_flight(bound[1]):
            if deadline.expired:
                finished = False
                break
            time.sleep(_DRAIN_POLL)
    remaining = deadline.remaining()
    conn.shutdown(timeout=5.0 if remaining is None else max(remaining, 0.5))
    return finished
