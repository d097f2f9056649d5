"""The endpoint store: the single publisher of the effective gateway endpoint."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from .._config.config import GatewayConfig
from .._engine.queue import StateQueue
from .._errors import ConfigError, EndpointNotReady, GatewayError, GatewayTimeout, UsageError

__all__ = [
    "EndpointConnecting",
    "EndpointReady",
    "EndpointState",
    "EndpointSubscription",
    "EndpointUnavailable",
    "GatewayEndpointStore",
]

log = logging.getLogger("gwclient.tunnel")


@dataclass(frozen=True)
class EndpointReady:
    """The gateway can be reached with ``config`` (for SSH: the tunnel is up)."""

    config: GatewayConfig
    kind: ClassVar[str] = "ready"

    def __str__(self) -> str:
        return f"ready ({self.config.redacted_url})"


@dataclass(frozen=True)
class EndpointConnecting:
    """The endpoint is being set up (an SSH tunnel is opening)."""

    detail: str
    kind: ClassVar[str] = "connecting"

    def __str__(self) -> str:
        return f"connecting: {self.detail}"


@dataclass(frozen=True)
class EndpointUnavailable:
    """No usable endpoint: ``reason`` says why; ``error`` is the typed error behind it
    (:class:`ConfigError`: fix the config; :class:`TunnelError`: retried in the background,
    or given up after the manager's ``max_failures``; ``None``: not configured or
    stopped).  ``error`` is not part of equality."""

    reason: str
    error: GatewayError | None = field(default=None, compare=False, repr=False)
    kind: ClassVar[str] = "unavailable"

    def __str__(self) -> str:
        return f"unavailable: {self.reason}"


EndpointState: TypeAlias = EndpointReady | EndpointConnecting | EndpointUnavailable


def _not_ready_error(state: EndpointConnecting | EndpointUnavailable) -> GatewayError:
    if isinstance(state, EndpointConnecting):
        return EndpointNotReady(f"remote endpoint not ready: {state.detail}", state=state)
    message = f"remote endpoint unavailable: {state.reason}"
    if isinstance(state.error, ConfigError):
        # Not something a retry fixes: keep the "fix the config" category.
        return ConfigError(message)
    return EndpointNotReady(message, state=state)


class EndpointSubscription(StateQueue[EndpointState]):
    """A queue of endpoint states: first the state current at
    :meth:`GatewayEndpointStore.subscribe`, then every change.  Overflow policy: the oldest
    queued state is dropped (the newest one, which is what matters, is always kept).
    Iterate it, or call :meth:`get`."""


class GatewayEndpointStore:
    r"""The single publisher of the effective gateway endpoint.

    A :data:`~gwclient.ConfigProvider`: calling it (or :meth:`config`) returns the ready
    :class:`GatewayConfig` or raises at once (:class:`EndpointNotReady`, or
    :class:`ConfigError` when the endpoint is unusable until the config is fixed); it
    never blocks and never starts a tunnel.  ``GatewayConnection.shared(provider=store)``
    follows it and reconnects once when the ready config changes: it :meth:`watch`\ es the
    store, so the change arrives without a request, also in a program that only listens.
    """

    def __init__(self, initial: EndpointState | None = None) -> None:
        self._cond = threading.Condition()
        self._state: EndpointState = initial if initial is not None else EndpointUnavailable("not configured")
        self._subs: list[EndpointSubscription] = []
        self._watchers: list[Callable[[], None]] = []

    def current(self) -> EndpointState:
        with self._cond:
            return self._state

    def publish(self, state: EndpointState) -> bool:
        """Make ``state`` current and tell subscribers; a state equal to the current one is
        ignored.  Returns whether it changed."""
        if not isinstance(state, (EndpointReady, EndpointConnecting, EndpointUnavailable)):
            raise UsageError("publish() takes an EndpointReady, EndpointConnecting or EndpointUnavailable")
        with self._cond:
            if state == self._state:
                return False
            self._state = state
            for sub in self._subs:  # under the lock: every subscriber sees one order
                sub._offer(state)
            self._cond.notify_all()
            watchers = list(self._watchers)
        log.debug("endpoint %s", state)
        for notify in watchers:  # outside the lock: a watcher may read the store
            notify()
        return True

    def watch(self, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify()`` (on the publishing thread, after the change) whenever the state
        changes; returns the function that stops it.  ``notify`` must not block: the
        connection registry's only arms a timer.  Prefer :meth:`subscribe` in programs."""
        with self._cond:
            self._watchers.append(notify)

        def unwatch() -> None:
            with self._cond:
                if notify in self._watchers:
                    self._watchers.remove(notify)

        return unwatch

    def subscribe(self, *, maxsize: int = 64) -> EndpointSubscription:
        """A queue of states, starting with the current one."""
        with self._cond:
            sub = EndpointSubscription(max(1, maxsize), what="endpoint subscription", on_close=self._unsubscribe)
            sub._offer(self._state)
            self._subs.append(sub)
            return sub

    def _unsubscribe(self, sub: StateQueue[EndpointState]) -> None:
        with self._cond:
            if sub in self._subs:
                self._subs.remove(sub)  # type: ignore[arg-type]

    def config(self) -> GatewayConfig:
        """The ready config, else raise (see the class docstring)."""
        state = self.current()
        if isinstance(state, EndpointReady):
            return state.config
        raise _not_ready_error(state) from getattr(state, "error", None)

    def __call__(self) -> GatewayConfig:
        return self.config()

    def wait_ready(self, timeout: float | None = None) -> GatewayConfig:
        """Block until the endpoint is ready and return its config; raises
        :class:`GatewayTimeout` (chained to the current state's error) after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not isinstance(self._state, EndpointReady):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    state = self._state
                    raise GatewayTimeout(f"remote endpoint not ready within {timeout:g} s ({state})") \
                        from getattr(state, "error", None)
                self._cond.wait(remaining)
            return self._state.config

    def __repr__(self) -> str:
        return f"<GatewayEndpointStore {self.current()}>"
