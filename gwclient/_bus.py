"""The process's channel registry (:class:`ConnectionActor`) and its event bus (:class:`Bus`).

The connection actor (``gwclient-connection``) enforces **one websocket per effective
config**: facades *bind* a slot to a config (an ``ask``: lifecycle, not per request), the
actor hands back the one channel for it (creating it on first use) and stops a channel
when its last slot moves to another config or shuts down.

The bus is a lock-protected structure the actor owns, not a mailbox: the channel's reader,
timer and actor threads publish into it directly, and :meth:`Bus.publish` offers each push
to every subscription of every slot bound to that channel under one lock.  Subscribing
takes the same lock, so a new subscriber sees the latest snapshot (or state) first and
then every later push in order.  Offers never block (bounded queues, drop-oldest).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from ._channel import GatewayChannelActor, Stop
from ._config import GatewayConfig
from ._link import Link
from ._pushes import ConnectionState, Push, Snapshot, StateChange
from ._subscription import Subscription
from ._transport import TransportFactory, open_transport

__all__ = ["Bus", "Channel", "ConnectionActor"]

log = logging.getLogger("gwclient.connection")


@dataclass(frozen=True)
class Channel:
    """What a facade holds for its config: the lifecycle actor and the data-plane link."""

    ref: pykka.ActorRef[GatewayChannelActor] = field(compare=False)
    link: Link = field(compare=False)
    number: int = 0


@dataclass
class _Feed:
    channel: Channel
    slots: set[int] = field(default_factory=set)
    snapshot: Snapshot | None = None
    state: ConnectionState = ConnectionState.IDLE


class Bus:
    """Pushes from channels to subscriptions.  Thread-safe; methods never block."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._feeds: dict[int, _Feed] = {}
        self._slot_feed: dict[int, int] = {}
        self._subs: dict[int, list[Subscription]] = {}
        self._complained = False
        self._unflushed: list[Subscription] = []

    def publisher(self, number: int) -> Callable[[Push, int, bool], None]:
        def publish(push: Push, size: int = 0, notify: bool = True) -> None:
            self.publish(number, push, size, notify=notify)

        return publish

    def publish(self, number: int, push: Push, size: int = 0, *, notify: bool = True) -> None:
        """Offer ``push`` to every subscription of the channel's slots.  ``notify=False``
        (the reader, in the middle of a burst) defers the consumers' wake-ups to
        :meth:`flush`: one wake-up per burst instead of one per event and subscriber."""
        with self.lock:
            feed = self._feeds.get(number)
            if feed is None:
                return  # a channel being retired
            if isinstance(push, Snapshot):
                feed.snapshot = push
            elif isinstance(push, StateChange):
                feed.state = push.state
            for slot in feed.slots:
                for sub in self._subs.get(slot, ()):
                    try:
                        if sub._offer(push, size, notify) and not notify:
                            self._unflushed.append(sub)
                    except Exception:  # pragma: no cover - a bug; never kill the publisher
                        if not self._complained:
                            self._complained = True
                            log.exception("a subscription refused a push")

    def flush(self) -> None:
        """Wake the consumers of pushes published with ``notify=False``."""
        with self.lock:
            subs, self._unflushed = self._unflushed, []
        for sub in dict.fromkeys(subs):  # each once, in order
            sub._flush()

    def subscribe(self, slot: int, sub: Subscription) -> None:
        with self.lock:
            self._subs.setdefault(slot, []).append(sub)
            number = self._slot_feed.get(slot)
            feed = self._feeds.get(number) if number is not None else None
            if feed is None:
                return
            if feed.state == ConnectionState.CONNECTED and feed.snapshot is not None:
                sub._offer(feed.snapshot)
            elif feed.state != ConnectionState.IDLE:
                sub._offer(StateChange(feed.state, "current state"))

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            for subs in self._subs.values():
                if sub in subs:
                    subs.remove(sub)

    def status(self, slot: int) -> tuple[ConnectionState, Snapshot | None]:
        with self.lock:
            number = self._slot_feed.get(slot)
            feed = self._feeds.get(number) if number is not None else None
            return (feed.state, feed.snapshot) if feed is not None else (ConnectionState.IDLE, None)

    # -- registry side (connection actor thread) ------------------------------------------

    def add_feed(self, channel: Channel) -> None:
        with self.lock:
            self._feeds[channel.number] = _Feed(channel)

    def bind(self, slot: int, number: int) -> None:
        with self.lock:
            self._slot_feed[slot] = number
            self._feeds[number].slots.add(slot)

    def unbind(self, slot: int) -> Channel | None:
        """Forget the slot's binding; returns the channel if the slot was its last user."""
        with self.lock:
            number = self._slot_feed.pop(slot, None)
            feed = self._feeds.get(number) if number is not None else None
            if feed is None:
                return None
            feed.slots.discard(slot)
            if feed.slots:
                return None
            del self._feeds[feed.channel.number]
            return feed.channel

    def end_slot(self, slot: int) -> None:
        with self.lock:
            subs = self._subs.pop(slot, [])
        for sub in subs:
            sub._end()

    def end_all(self) -> None:
        with self.lock:
            subs = [s for group in self._subs.values() for s in group]
            self._subs.clear()
        for sub in subs:
            sub._end()


# ------------------------------------------------------------------ actor messages


@dataclass(frozen=True)
class Bind:
    slot: int
    config: GatewayConfig


@dataclass(frozen=True)
class Release:
    slot: int


@dataclass(frozen=True)
class ReleaseAll:
    pass


@dataclass(frozen=True)
class Retire:
    """Stop the registry; answers with the actor's thread so the caller can join it."""


class ConnectionActor(pykka.ThreadingActor):
    """The process's channel registry.  Runs on ``gwclient-connection``; never blocks."""

    use_daemon_thread = True

    def __init__(self, bus: Bus, transport_factory: TransportFactory | None = None) -> None:
        super().__init__()
        self._factory = transport_factory
        self.bus = bus
        self._channels: dict[GatewayConfig, Channel] = {}
        self._slots: dict[int, GatewayConfig] = {}
        self._numbers = itertools.count(1)

    def on_start(self) -> None:
        threading.current_thread().name = "gwclient-connection"

    def on_receive(self, message: Any) -> Any:
        # Only asks arrive here (a bug in one is reported to its asker by pykka, and the
        # actor keeps running): publishing never goes through this mailbox.
        if isinstance(message, Bind):
            return self._on_bind(message.slot, message.config)
        if isinstance(message, Release):
            return self._on_release(message.slot)
        if isinstance(message, ReleaseAll):
            refs: list[pykka.ActorRef[GatewayChannelActor]] = []
            for slot in list(self._slots):
                refs.extend(self._on_release(slot))
            self.bus.end_all()
            return refs
        if isinstance(message, Retire):
            self.stop()
            return threading.current_thread()
        return None

    def _on_bind(self, slot: int, config: GatewayConfig) -> Channel:
        old = self._slots.get(slot)
        if old == config:
            return self._channels[config]
        if old is not None:
            for ref in self._unbind(slot, "config changed"):
                ref.tell(Stop("config changed", retired=True))
        channel = self._channels.get(config)
        if channel is None:
            number = next(self._numbers)
            factory = self._factory or open_transport
            if config.share != "off":  # attach to the local share (gwclient/share/)
                from .share._attach import share_factory

                factory = share_factory(config, factory)
            link = Link(config, self.bus.publisher(number), factory, self.bus.flush)
            actor = GatewayChannelActor.start(link, retry_policy=config.retry)
            channel = Channel(actor, link, number)
            self._channels[config] = channel
            self.bus.add_feed(channel)
        self.bus.bind(slot, channel.number)
        self._slots[slot] = config
        return channel

    def _unbind(self, slot: int, why: str) -> list[pykka.ActorRef[GatewayChannelActor]]:
        config = self._slots.pop(slot, None)
        retired = self.bus.unbind(slot)
        if retired is None or config is None:
            return []
        log.debug("closing the channel to %s (%s)", config.redacted_url, why)
        self._channels.pop(config, None)
        return [retired.ref]

    def _on_release(self, slot: int) -> list[pykka.ActorRef[GatewayChannelActor]]:
        self.bus.end_slot(slot)
        return self._unbind(slot, "shutdown") if slot in self._slots else []
