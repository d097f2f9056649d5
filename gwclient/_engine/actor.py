"""GatewayChannelActor: the lifecycle owner of one gateway websocket (one per effective
config).

Runs on ``gwclient-channel-<host:port>`` and never blocks.  It is not on the per-request
path: requests and events go through the channel's :class:`~gwclient._engine.channel.Link` (the
session core under a lock, sends from callers' threads, a reader thread that settles and
publishes).  The actor keeps what only an actor should: starting attempts, the reconnect
policy and its timer, pausing, retry, and stopping.

State machine (the session publishes it as :class:`StateChange` pushes)::

    IDLE --first use--> CONNECTING --hello-ok--> CONNECTED
    CONNECTING --retryable failure--> RECONNECTING --delay--> CONNECTING
    CONNECTED --socket closed / liveness timeout--> RECONNECTING
    CONNECTING --non-recoverable refusal--> PAUSED --retry()/new config--> CONNECTING
    any --stop--> CLOSED
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import pykka

from .._core.connection import describe
from .._core.effects import AttemptEnded, Connected, Lost
from .._core.pushes import ConnectionState
from .._core.retry import RetryPolicy
from .._errors import ClientClosed, Disconnected, GatewayError
from .channel import Link
from .timer import TimerHandle

__all__ = ["Connect", "GatewayChannelActor", "Retry", "Stop"]

log = logging.getLogger("gwclient.channel")


# ----------------------------------------------------------------------- messages
# Frozen dataclasses: pykka does not copy messages.


@dataclass(frozen=True)
class Connect:
    """Start connecting if idle (sent by the link when a caller needs the socket)."""


@dataclass(frozen=True)
class Retry:
    """Leave PAUSED (or cut a backoff wait short) and connect now."""


@dataclass(frozen=True)
class Stop:
    """Close the socket and stop.  ``retired`` means the config changed (the facade moved
    to another channel): pending callers get :class:`Disconnected`, which they may retry,
    rather than :class:`ClientClosed`."""

    reason: str = "shutdown"
    retired: bool = False


@dataclass(frozen=True)
class _Report:
    gen: int
    what: Any = None


@dataclass(frozen=True)
class _Reconnect:
    token: int


class GatewayChannelActor(pykka.ThreadingActor):
    """Lifecycle of one websocket for one :class:`GatewayConfig`.  Methods run on the actor
    thread unless noted."""

    use_daemon_thread = True  # interpreter exit never waits for us (atexit shuts down)

    def __init__(self, link: Link, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.config = link.config
        self._retry = retry_policy or RetryPolicy()
        self._label = link.label
        me = self.actor_ref
        # The link reports from reader/timer/user threads: forward to this mailbox.
        self.link = link
        link.report = lambda gen, what: _tell(me, _Report(gen, what))
        link.on_connect_needed = lambda: _tell(me, Connect())
        self._attempt = 0
        self._reconnect: TimerHandle | None = None
        self._reconnect_token = 0
        self._thread: threading.Thread | None = None

    # -- pykka hooks ----------------------------------------------------------------

    def on_start(self) -> None:
        self._thread = threading.current_thread()
        self._thread.name = f"gwclient-channel-{self._label}"

    def on_failure(self, *args: Any) -> None:  # pragma: no cover - a bug
        log.error("channel %s crashed; failing every caller", self._label)
        self.link.stop(ClientClosed("gwclient channel crashed (see the log)"))

    def on_receive(self, message: Any) -> Any:
        # Supervised: an unexpected error while handling a message is logged once and the
        # socket is replaced; the actor stays alive (pykka would stop it on a tell).
        try:
            return self._dispatch(message)
        except Exception:
            log.exception("channel %s failed to handle %s; replacing the socket", self._label,
                          type(message).__name__)
            if not isinstance(message, Stop):
                self.link.abandon_current()
            return None

    def _dispatch(self, message: Any) -> Any:
        if isinstance(message, _Report):
            self._on_report(message.what)
        elif isinstance(message, _Reconnect):
            if message.token == self._reconnect_token and self._state() == ConnectionState.RECONNECTING:
                self._reconnect = None
                self._start()
        elif isinstance(message, Connect):
            if self._state() == ConnectionState.IDLE:
                self._start()
        elif isinstance(message, Retry):
            if self._state() in (ConnectionState.PAUSED, ConnectionState.RECONNECTING, ConnectionState.IDLE):
                self._start()
        elif isinstance(message, Stop):
            return self._on_stop(message.reason, retired=message.retired)
        return None

    # -- lifecycle ------------------------------------------------------------------

    def _state(self) -> ConnectionState:
        with self.link.locked():
            return self.link.session.state

    def _start(self) -> None:
        self._cancel_reconnect()
        self.link.start_attempt(self._attempt + 1)

    def _cancel_reconnect(self) -> None:
        self.link.timer.cancel(self._reconnect)
        self._reconnect = None
        self._reconnect_token += 1

    def _on_report(self, what: Any) -> None:
        if isinstance(what, Connected):
            self._attempt = 0
            connections = self.link.session.connections
            if connections > 1:
                log.info("reconnected to %s (connection %d)", self._label, connections)
        elif isinstance(what, AttemptEnded):
            error = what.error
            if what.paused:
                return
            refused = isinstance(error, ConnectionRefusedError) or what.close_code in (1012, 1013)
            delay = self._retry.after_failure(self._attempt, retry_after_ms=what.retry_after_ms,
                                              loopback=self.config.is_loopback, refused=refused)
            self._attempt += 1
            self._schedule(delay, describe(error))
        elif isinstance(what, Lost):
            delay = self._retry.after_loss(restart_expected_ms=what.restart_expected_ms,
                                           loopback=self.config.is_loopback)
            log.info("gateway connection to %s lost (%s); reconnecting in %.2f s", self._label, what.why, delay)
            self._attempt = 1
            self._schedule(delay, f"connection closed ({what.why})")

    def _schedule(self, delay: float, why: str) -> None:
        with self.link.locked():
            if self.link.session.phase == "closed":
                return
            effects = self.link.session.set_state(ConnectionState.RECONNECTING, f"retry in {delay:.2f} s: {why}")
        self.link.publish(effects)
        self._cancel_reconnect()
        me = self.actor_ref
        token = self._reconnect_token
        self._reconnect = self.link.timer.call_later(delay, lambda: _tell(me, _Reconnect(token)))



    # -- stopping -------------------------------------------------------------------

    def _on_stop(self, reason: str, *, retired: bool = False) -> list[threading.Thread]:
        error: GatewayError
        if retired:
            error = Disconnected(f"gateway connection closed ({reason}); retry to use the new one")
        else:
            error = ClientClosed(f"the gateway connection was shut down ({reason})")
        self._cancel_reconnect()
        threads: list[threading.Thread] = []
        try:
            threads = self.link.stop(error)
        except Exception:  # a bug: still stop, and still say which threads to join
            log.exception("channel %s failed to close cleanly", self._label)
            self.link.timer.stop()
            threads = [*self.link.readers, self.link.timer.thread]
        finally:
            if self._thread is not None:
                threads.append(self._thread)  # exits right after this message: stop() is queued
            self.stop()
        return threads


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    """``tell`` from a reader/timer thread: the actor may already have stopped (shutdown
    racing a late frame), which is fine: the message no longer matters."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
