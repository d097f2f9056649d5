"""Waiting for pairing approval (a mixin of :class:`GatewayConnection`): built on
``connect()``, ``reconnect()`` and a state subscription, so :meth:`shutdown` from another
thread ends the wait at once (the subscription ends) instead of after a poll interval."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._core.deadline import check_timeout
from ._core.frames import HelloOk
from ._engine.waiter import Deadline
from ._errors import ClientClosed, GatewayTimeout, PairingRequired, check_caller

if TYPE_CHECKING:
    from ._engine.subscription import Subscription

__all__ = ["PairingMixin"]

log = logging.getLogger("gwclient.connection")


def _check_caller(what: str) -> None:
    check_caller(f"GatewayConnection.{what}()")


class PairingMixin:
    _closed: bool

    def connect(self, *, timeout: Any = ...) -> HelloOk:  # provided by GatewayConnection
        raise NotImplementedError

    def reconnect(self) -> None:  # provided by GatewayConnection
        raise NotImplementedError

    def subscribe(self, events: Iterable[str] | str | None = None, *, maxsize: int | None = None,
                  max_bytes: Any = ..., include_state: bool = True) -> Subscription:  # provided
        raise NotImplementedError

    def wait_for_pairing(self, *, timeout: float | None = 300.0, poll_interval: float = 3.0,
                         on_waiting: Callable[[PairingRequired], None] | None = None) -> HelloOk:
        """Connect, waiting for an operator to approve this device if pairing is required.

        Retries every ``poll_interval`` seconds (each retry is one connect attempt), calls
        ``on_waiting(error)`` and logs progress at INFO each time, and returns the hello-ok
        once approved (the device token is stored by then).  When ``timeout`` runs out it
        raises the last :class:`PairingRequired` (it carries the request id to approve), or
        :class:`GatewayTimeout` if no answer came at all.  Other connect errors are raised
        at once; :meth:`shutdown` from another thread ends the wait with
        :class:`ClientClosed`."""
        _check_caller("wait_for_pairing")
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
                    self.reconnect()
                return self.connect(timeout=remaining)
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
            with self.subscribe(events=[], include_state=True) as sub:
                try:
                    sub.get(timeout=0)  # the current state (skipped)
                except GatewayTimeout:
                    pass
                try:
                    sub.get(timeout=wait)
                except (GatewayTimeout, ClientClosed):
                    pass
            if self._closed:
                raise ClientClosed("shut down while waiting for pairing")

