"""Waiting for pairing approval: a function over the facade's public API (``connect()``,
``reconnect()``, a state subscription, ``closed``), which ``GatewayConnection.wait_for_pairing``
delegates to.  :meth:`shutdown` from another thread ends the wait at once (the
subscription ends) instead of after a poll interval."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ._core.deadline import check_timeout
from ._core.frames import HelloOk
from ._engine.waiter import Deadline
from ._errors import ClientClosed, GatewayTimeout, PairingRequired, check_caller

__all__ = ["wait_for_pairing"]

log = logging.getLogger("gwclient.connection")


class _Connection(Protocol):
    """What waiting for pairing needs of a connection: its public API."""

    @property
    def closed(self) -> bool: ...
    def connect(self, *, timeout: Any = ...) -> HelloOk: ...
    def reconnect(self) -> None: ...
    def subscribe(self, events: Iterable[str] | str | None = None, *, maxsize: int | None = None,
                  max_bytes: Any = ..., include_state: bool = True) -> Any: ...


def wait_for_pairing(conn: _Connection, *, timeout: float | None = 300.0, poll_interval: float = 3.0,
                     on_waiting: Callable[[PairingRequired], None] | None = None) -> HelloOk:
    """Connect, waiting for an operator to approve this device if pairing is required.

    Retries every ``poll_interval`` seconds (each retry is one connect attempt), calls
    ``on_waiting(error)`` and logs progress at INFO each time, and returns the hello-ok
    once approved (the device token is stored by then).  When ``timeout`` runs out it
    raises the last :class:`PairingRequired` (it carries the request id to approve), or
    :class:`GatewayTimeout` if no answer came at all.  Other connect errors are raised
    at once; :meth:`shutdown` from another thread ends the wait with
    :class:`ClientClosed`."""
    check_caller("GatewayConnection.wait_for_pairing()")
    deadline = Deadline(check_timeout(timeout))
    poll = check_timeout(poll_interval, "poll_interval") or 3.0
    last: PairingRequired | None = None
    while True:
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            if last is not None:
                raise last
            raise GatewayTimeout(f"not connected to the gateway {deadline.describe()}")
        try:
            if last is not None:
                conn.reconnect()
            return conn.connect(timeout=remaining)
        except PairingRequired as exc:
            last = exc
            log.info("waiting for pairing approval: %s", exc)
            if on_waiting is not None:
                on_waiting(exc)
        except GatewayTimeout:
            if last is not None:
                raise last from None
            raise
        remaining = deadline.remaining()
        wait = poll if remaining is None else min(poll, remaining)
        # Waits on the state of this connection: shutdown() publishes CLOSED and ends
        # the subscription, which wakes this wait at once.
        with conn.subscribe(events=[], include_state=True) as sub:
            try:
                sub.get(timeout=0)  # the current state (skipped)
            except GatewayTimeout:
                pass
            try:
                sub.get(timeout=wait)
            except (GatewayTimeout, ClientClosed):
                pass
        if conn.closed:
            raise ClientClosed("shut down while waiting for pairing")

