"""GatewayChannelActor: the thread lifecycle of one gateway websocket (one per effective
config).

Runs on ``gwclient-channel-<host:port>`` and never blocks.  It is not on the per-request
or per-event path (those go through the :class:`~gwclient._engine.channel.Channel`), and it
decides nothing: the connection core decides when an attempt starts (first use, the
``reconnect`` timer, ``reconnect()``) and the channel hands that :class:`OpenSocket` here;
the actor starts the attempt's reader thread, and on :class:`Stop` closes the channel and
names the threads to join.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import pykka

from .._core.effects import OpenSocket
from .._errors import ClientClosed, Disconnected, GatewayError
from .channel import Channel

__all__ = ["GatewayChannelActor", "RunAttempt", "Stop", "tell"]

log = logging.getLogger("gwclient.channel")


# ----------------------------------------------------------------------- messages
# Frozen dataclasses: pykka does not copy messages.


@dataclass(frozen=True)
class RunAttempt:
    """Start the reader of the attempt the core asked for."""

    attempt: OpenSocket


@dataclass(frozen=True)
class Stop:
    """Close the socket and stop.  ``retired`` means the config changed (the facade moved
    to another channel): pending callers get :class:`Disconnected`, which they may retry,
    rather than :class:`ClientClosed`."""

    reason: str = "shutdown"
    retired: bool = False


class GatewayChannelActor(pykka.ThreadingActor):
    """Thread lifecycle of one websocket for one config.  Methods run on the actor thread."""

    use_daemon_thread = True  # interpreter exit never waits for us (atexit shuts down)

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel
        self._label = channel.label
        self._thread: threading.Thread | None = None

    def on_start(self) -> None:
        self._thread = threading.current_thread()
        self._thread.name = f"gwclient-channel-{self._label}"

    def on_failure(self, *args: Any) -> None:  # pragma: no cover - a bug
        log.error("channel %s crashed; failing every caller", self._label)
        self.channel.stop(ClientClosed("gwclient channel crashed (see the log)"))

    def on_receive(self, message: Any) -> Any:
        # Supervised: an unexpected error while handling a message is logged once and the
        # socket is replaced; the actor stays alive (pykka would stop it on a tell).
        try:
            if isinstance(message, RunAttempt):
                self.channel.start_reader(message.attempt)
            elif isinstance(message, Stop):
                return self._on_stop(message.reason, retired=message.retired)
        except Exception:
            log.exception("channel %s failed to handle %s; replacing the socket", self._label,
                          type(message).__name__)
            if not isinstance(message, Stop):
                self.channel.abandon_current()
        return None

    def _on_stop(self, reason: str, *, retired: bool = False) -> list[threading.Thread]:
        error: GatewayError
        if retired:
            error = Disconnected(f"gateway connection closed ({reason}); retry to use the new one")
        else:
            error = ClientClosed(f"the gateway connection was shut down ({reason})")
        threads: list[threading.Thread] = []
        try:
            threads = self.channel.stop(error)
        except Exception:  # a bug: still stop, and still say which threads to join
            log.exception("channel %s failed to close cleanly", self._label)
            self.channel.timer.stop()
            threads = [*self.channel.readers, self.channel.timer.thread]
        finally:
            if self._thread is not None:
                threads.append(self._thread)  # exits right after this message: stop() is queued
            self.stop()
        return threads


def tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    """``tell`` from a reader/timer/user thread: the actor may already have stopped
    (shutdown racing a late frame), which is fine: the message no longer matters."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
