"""The process's one map of bindings (:class:`Registry`) and its writer for lifecycle
changes (:class:`ConnectionActor`).

**One owner.**  The registry holds, under one lock, every *feed* (one per effective
config and transport: its channel, its actor, the slots bound to it, its latest snapshot
and state) and every *slot* (one per facade: the feed it is bound to, its subscriptions,
each carrying its sticky spec, and the config provider it follows).  A facade's own
``(config, channel)`` pair is a documented cache of its slot's binding, checked on every
request.  Nothing else keeps a binding.

**One socket per effective config**: facades *bind* their slot to a config (an ``ask`` of
the connection actor, ``gwclient-connection``: once per config, not per request); the
registry hands back the one channel for it, creating it on first use, and stops a channel
when its last slot moves to another config or shuts down.  A rebind moves the slot's
subscriptions along: their sticky session subscriptions are released on the old channel
and re-added on the new one (each counted once, by the channel's core), and each
subscriber is told (``StateChange(RECONNECTING, "config changed")``, then the new feed's
Snapshot or state), so a program that only listens follows a config change too.

**Config changes arrive without a request.**  While a slot that follows a provider has a
subscription or a live connection, its provider is re-read on the feed's timer every
:data:`PROVIDER_POLL_INTERVAL` seconds (and at once when a provider that publishes, such
as :class:`gwclient.remote.GatewayEndpointStore`, says it changed); a new answer rebinds.

**Pushes** go straight from the channel's reader (or timer, or a caller's thread) into
:meth:`Registry.publish`, which offers each to every subscription of every slot bound to
that feed under the lock; subscribing takes the same lock, so a new subscriber sees the
latest snapshot (or state) first and then every later push in order.  Offers never block
(bounded queues, drop-oldest).

**No user code and no finalizer runs under the lock.**  The registry holds only the
producer half of a subscription (its :class:`~gwclient._engine.subscription.Inlet`); a
subscription dropped without ``close()`` is collected, and its finalizer only appends the
inlet to a deque that the registry drains (outside its lock) on its next publish or
subscribe.  Channel work that follows a decision (sending a subscribe or unsubscribe) is
decided under the lock and executed after it is released.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from .._config.config import GatewayConfig
from .._core.effects import OpenSocket
from .._core.pushes import ConnectionState, Push, Snapshot, StateChange
from .._core.stats import ConnectionStats
from .._errors import GatewayError
from ..share._attach import share_factory
from .actor import GatewayChannelActor, RunAttempt, Stop, tell
from .channel import Channel, ChannelHooks
from .subscription import Inlet, Subscription
from .transport import TransportFactory, open_transport

__all__ = ["PROVIDER_POLL_INTERVAL", "Bind", "ConnectionActor", "Feed", "Registry", "Release", "ReleaseAll",
           "Retire"]

log = logging.getLogger("gwclient.connection")

#: Seconds between re-reads of a followed config provider while its slot is live.
PROVIDER_POLL_INTERVAL = 1.0

Provider = Callable[[], GatewayConfig]


class Feed(ChannelHooks):
    """One effective config (and transport): the channel's hooks into the registry."""

    def __init__(self, registry: Registry, config: GatewayConfig, transport: TransportFactory | None,
                 number: int) -> None:
        self._registry = registry
        self.config = config
        self.transport = transport
        self.number = number
        factory = transport or open_transport
        if config.share != "off":  # attach to the local share (docs/share.md)
            factory = share_factory(config, factory)
        self.channel = Channel(config, self, factory)
        self.ref: pykka.ActorRef[GatewayChannelActor] = GatewayChannelActor.start(self.channel)
        self.slots: set[int] = set()
        self.snapshot: Snapshot | None = None
        self.state = ConnectionState.IDLE
        self.retired = False
        self.polling = False

    # -- ChannelHooks (called by the channel, outside its lock) ----------------------------

    def publish(self, push: Push, size: int, notify: bool) -> None:
        self._registry.publish(self, push, size, notify)

    def flush(self) -> None:
        self._registry.flush()

    def sticky_answer(self, key: object, outcome: Any) -> None:
        self._registry.sticky_answer(self, key, outcome)

    def run_attempt(self, attempt: OpenSocket) -> None:
        tell(self.ref, RunAttempt(attempt))


class _Slot:
    __slots__ = ("dropped_closed", "feed", "inlets", "number", "provider", "unwatch")

    def __init__(self, number: int) -> None:
        self.number = number
        self.feed: Feed | None = None
        self.inlets: list[Inlet] = []
        self.provider: Provider | None = None
        #: Stops a publishing provider's notifications (see :meth:`Registry.bind`).
        self.unwatch: Callable[[], object] | None = None
        #: Events dropped by the full queues of this slot's subscriptions that are gone.
        self.dropped_closed = 0


class Registry:
    """Thread-safe; its methods never block.  Lifecycle methods (:meth:`bind`,
    :meth:`release`, :meth:`release_all`) run on the connection actor's thread."""

    def __init__(self, actor: pykka.ActorRef[Any]) -> None:
        self.lock = threading.Lock()
        self._actor = actor
        self._feeds: dict[tuple[GatewayConfig, TransportFactory | None], Feed] = {}
        self._slots: dict[int, _Slot] = {}
        self._numbers = itertools.count(1)
        self._unflushed: list[Inlet] = []
        #: Inlets of subscriptions collected without close(): appended by finalizers
        #: (``deque.append`` takes no lock), released by :meth:`_release_dropped`.
        self._dropped: collections.deque[Inlet] = collections.deque()
        self._complained = False

    # -- the data plane (any thread) ----------------------------------------------------

    def publish(self, feed: Feed, push: Push, size: int = 0, notify: bool = True) -> None:
        """Offer ``push`` to every subscription of the feed's slots.  ``notify=False``
        (the reader, in the middle of a burst) defers the consumers' wake-ups to
        :meth:`flush`: one wake-up per burst instead of one per event and subscriber."""
        if self._dropped:
            self._release_dropped()
        with self.lock:
            if feed.retired:
                return
            if isinstance(push, Snapshot):
                feed.snapshot = push
            elif isinstance(push, StateChange):
                feed.state = push.state
            slots = self._slots
            for number in feed.slots:
                for inlet in slots[number].inlets:
                    try:
                        if inlet.offer(push, size, notify) and not notify:
                            self._unflushed.append(inlet)
                    except Exception:  # pragma: no cover - a bug; never kill the publisher
                        if not self._complained:
                            self._complained = True
                            log.exception("a subscription refused a push")

    def flush(self) -> None:
        """Wake the consumers of pushes published with ``notify=False``."""
        with self.lock:
            inlets, self._unflushed = self._unflushed, []
        for inlet in dict.fromkeys(inlets):  # each once, in order
            inlet.flush()

    def subscribe(self, slot_number: int, sub: Subscription) -> None:
        """Register ``sub`` on the slot (bound by the facade first): it gets the feed's
        snapshot (or state) first; its sticky spec, if any, is counted on the feed's core."""
        if self._dropped:
            self._release_dropped()
        inlet = sub.inlet
        act: Callable[[], None] | None = None
        with self.lock:
            slot = self._slots.get(slot_number)
            if slot is None:  # shut down meanwhile
                inlet.end()
                return
            slot.inlets.append(inlet)
            # Dropped without close(): hand the inlet over (no lock, no call into gwclient).
            sub.finalizer = weakref.finalize(sub, self._dropped.append, inlet)
            feed = slot.feed
            if feed is not None:
                self._offer_status(feed, inlet)
                if inlet.sticky is not None:
                    inlet.holder = feed
                    act = feed.channel.add_sticky(inlet.sticky)
        if act is not None:
            act()

    def attach(self, slot_number: int, inlet: Inlet) -> None:
        """Register a producer that is not a :class:`Subscription` (the local share's
        stream to an attached process): no finalizer, no sticky; :meth:`unsubscribe` ends
        it.  It gets the feed's snapshot (or state) first, like a subscription."""
        with self.lock:
            slot = self._slots.get(slot_number)
            if slot is None:
                inlet.end()
                return
            slot.inlets.append(inlet)
            if slot.feed is not None:
                self._offer_status(slot.feed, inlet)

    def unsubscribe(self, inlet: Inlet) -> None:
        """A subscription closed (or was collected): forget it, and release its sticky on the
        channel that counts it now (the slot's current one)."""
        act: Callable[[], None] | None = None
        with self.lock:
            for slot in self._slots.values():
                if inlet in slot.inlets:
                    slot.inlets.remove(inlet)
                    slot.dropped_closed += inlet.queue.dropped_total
                    break
            holder, inlet.holder = inlet.holder, None
            if isinstance(holder, Feed) and inlet.sticky is not None and not holder.retired:
                act = holder.channel.remove_sticky(inlet.sticky)
        if act is not None:
            act()

    def _release_dropped(self) -> None:
        while True:
            try:
                inlet = self._dropped.popleft()
            except IndexError:
                return
            inlet.end()
            self.unsubscribe(inlet)

    def sticky_answer(self, feed: Feed, key: object, outcome: Any) -> None:
        """Reader thread: a sticky request was refused (the core dropped it): its
        subscribers end with the gateway's error instead of waiting for pushes that never
        come.  A successful answer needs nothing here."""
        if not isinstance(outcome, GatewayError):
            return
        with self.lock:
            ended = []
            for number in feed.slots:
                slot = self._slots[number]
                for inlet in list(slot.inlets):
                    if inlet.sticky is not None and inlet.sticky.group == key and inlet.holder is feed:
                        inlet.holder = None  # the core no longer counts it
                        slot.inlets.remove(inlet)
                        ended.append(inlet)
        for inlet in ended:
            inlet.end(outcome)

    def inlets(self) -> list[Inlet]:
        """Every registered subscription's inlet (introspection: tests, stats)."""
        with self.lock:
            return [inlet for slot in self._slots.values() for inlet in slot.inlets]

    def stats(self, slot_number: int) -> ConnectionStats | None:
        """The counters of the slot's channel, with the events its subscriptions dropped
        (closed ones included); None if the slot is not bound."""
        with self.lock:
            slot = self._slots.get(slot_number)
            feed = slot.feed if slot is not None else None
            if slot is None or feed is None:
                return None
            dropped = slot.dropped_closed + sum(inlet.queue.dropped_total for inlet in slot.inlets)
        return feed.channel.stats(dropped)

    def stats_all(self) -> dict[str, ConnectionStats]:
        """Every channel's counters, keyed by its gateway's redacted URL (a second channel
        for the same URL, another token say, gets ``" #2"``)."""
        with self.lock:
            feeds = [(feed, sum(self._slots[n].dropped_closed + sum(i.queue.dropped_total
                                                                    for i in self._slots[n].inlets)
                                for n in feed.slots))
                     for feed in sorted(self._feeds.values(), key=lambda f: f.number)]
        out: dict[str, ConnectionStats] = {}
        for feed, dropped in feeds:
            key = url = feed.config.redacted_url
            n = 1
            while key in out:
                n += 1
                key = f"{url} #{n}"
            out[key] = feed.channel.stats(dropped)
        return out

    def status(self, slot_number: int) -> tuple[ConnectionState, Snapshot | None]:
        with self.lock:
            slot = self._slots.get(slot_number)
            feed = slot.feed if slot is not None else None
            return (feed.state, feed.snapshot) if feed is not None else (ConnectionState.IDLE, None)

    def _offer_status(self, feed: Feed, inlet: Inlet) -> None:
        """Under the lock: what a subscriber of ``feed`` sees first."""
        if feed.state == ConnectionState.CONNECTED and feed.snapshot is not None:
            inlet.offer(feed.snapshot)
        elif feed.state != ConnectionState.IDLE:
            inlet.offer(StateChange(feed.state, "current state"))

    # -- lifecycle (the connection actor's thread) -------------------------------------

    def bind(self, slot_number: int, config: GatewayConfig, provider: Provider | None,
             transport: TransportFactory | None) -> Channel:
        """Bind the slot to the one channel for ``config`` (creating it), moving the slot's
        subscriptions (and their stickies) from the channel it had, which is stopped when
        this was its last slot."""
        acts: list[Callable[[], None]] = []
        retired: Feed | None = None
        with self.lock:
            slot = self._slots.get(slot_number)
            if slot is None:
                slot = self._slots[slot_number] = _Slot(slot_number)
            slot.provider = provider
            old = slot.feed
            if old is not None and old.config == config and old.transport is transport:
                return old.channel
            feed = self._feeds.get((config, transport))
            if feed is None:
                feed = Feed(self, config, transport, next(self._numbers))
                self._feeds[(config, transport)] = feed
            slot.feed = feed
            feed.slots.add(slot_number)
            if old is not None:
                log.info("config changed: moving %d subscription(s) from %s to %s", len(slot.inlets),
                         old.config.redacted_url, config.redacted_url)
                old.slots.discard(slot_number)
                if not old.slots:
                    retired = old
                    old.retired = True
                    del self._feeds[(old.config, old.transport)]
            for inlet in slot.inlets:
                if inlet.sticky is not None and inlet.holder is not feed:
                    holder = inlet.holder
                    if isinstance(holder, Feed) and not holder.retired:
                        acts.append(holder.channel.remove_sticky(inlet.sticky))
                    inlet.holder = feed
                    acts.append(feed.channel.add_sticky(inlet.sticky))
                if old is not None:
                    inlet.offer(StateChange(ConnectionState.RECONNECTING, "config changed"))
                    self._offer_status(feed, inlet)
            live = bool(slot.inlets)
            poll = provider is not None and not feed.polling
            if poll:
                feed.polling = True
            watch = getattr(provider, "watch", None) if slot.unwatch is None else None
        for act in acts:
            act()
        if retired is not None:
            log.debug("closing the channel to %s (config changed)", retired.config.redacted_url)
            tell(retired.ref, Stop("config changed", retired=True))
        if live:
            feed.channel.connect()  # a listener follows the change: connect now
        if poll:
            self._arm_poll(feed)
        if callable(watch):
            # A provider that publishes its changes (the remote endpoint store) wakes the
            # poll at once; its callback only arms a timer (no lock, no provider call).
            unwatch = watch(lambda: self._poke(slot_number))
            with self.lock:
                slot.unwatch = unwatch if callable(unwatch) else None
        return feed.channel

    def _poke(self, slot_number: int) -> None:
        """A watched provider changed: re-read it on its feed's timer (any thread)."""
        with self.lock:
            slot = self._slots.get(slot_number)
            feed = slot.feed if slot is not None else None
        if feed is not None and not feed.retired:
            feed.channel.timer.call_later(0, lambda: self._poll(feed, once=True))

    def release(self, slot_number: int) -> list[pykka.ActorRef[GatewayChannelActor]]:
        """The facade shut down: end its subscriptions and unbind; returns the channel
        actors to stop (the slot was their last user)."""
        acts: list[Callable[[], None]] = []
        refs: list[pykka.ActorRef[GatewayChannelActor]] = []
        with self.lock:
            slot = self._slots.pop(slot_number, None)
            if slot is None:
                return []
            unwatch, slot.unwatch = slot.unwatch, None
            feed = slot.feed
            if feed is not None:
                feed.slots.discard(slot_number)
                if not feed.slots:
                    feed.retired = True
                    del self._feeds[(feed.config, feed.transport)]
                    refs.append(feed.ref)
            for inlet in slot.inlets:
                holder, inlet.holder = inlet.holder, None
                if isinstance(holder, Feed) and inlet.sticky is not None and not holder.retired:
                    acts.append(holder.channel.remove_sticky(inlet.sticky))
            inlets = slot.inlets
        if unwatch is not None:
            unwatch()
        for act in acts:
            act()
        for inlet in inlets:
            inlet.end()
        if feed is not None and refs:
            log.debug("closing the channel to %s (shutdown)", feed.config.redacted_url)
        return refs

    def release_all(self) -> list[pykka.ActorRef[GatewayChannelActor]]:
        with self.lock:
            numbers = list(self._slots)
        refs: list[pykka.ActorRef[GatewayChannelActor]] = []
        for number in numbers:
            refs.extend(self.release(number))
        return refs

    # -- following providers (the feed's timer thread) ---------------------------------

    def _arm_poll(self, feed: Feed) -> None:
        feed.channel.timer.call_later(PROVIDER_POLL_INTERVAL, lambda: self._poll(feed))

    def _poll(self, feed: Feed, *, once: bool = False) -> None:
        """Re-read the providers of the feed's live slots; a new answer rebinds the slot
        (through the connection actor).  Runs on the feed's timer thread: a provider must
        answer quickly (gwclient's own do: a few environment reads and a ``stat``)."""
        with self.lock:
            if feed.retired:
                feed.polling = False
                return
            live = feed.state not in (ConnectionState.IDLE, ConnectionState.CLOSED)
            targets = [(slot.number, slot.provider) for number in feed.slots
                       if (slot := self._slots[number]).provider is not None and (live or slot.inlets)]
            again = any(self._slots[n].provider is not None for n in feed.slots)
            if not again and not once:
                feed.polling = False
        for number, provider in targets:
            assert provider is not None
            try:
                config = provider()
            except Exception as exc:  # a provider that cannot answer now: keep the binding
                log.debug("config provider failed (%s); keeping the current config", type(exc).__name__)
                continue
            if isinstance(config, GatewayConfig) and config != feed.config:
                tell(self._actor, Rebind(Bind(number, config, provider, feed.transport)))
        if again and not once:
            self._arm_poll(feed)


# ------------------------------------------------------------------ actor messages


@dataclass(frozen=True)
class Bind:
    slot: int
    config: GatewayConfig
    provider: Provider | None = None
    transport: TransportFactory | None = None


@dataclass(frozen=True)
class Rebind:
    """A followed provider changed its answer (told from a feed's timer thread)."""

    bind: Bind


@dataclass(frozen=True)
class Release:
    slot: int


@dataclass(frozen=True)
class ReleaseAll:
    pass


@dataclass(frozen=True)
class Retire:
    """Stop the connection actor; answers with its thread so the caller can join it."""


@dataclass(frozen=True)
class GetRegistry:
    pass


class ConnectionActor(pykka.ThreadingActor):
    """The registry's writer for lifecycle changes.  Runs on ``gwclient-connection``; never
    blocks.  Only asks arrive here (and the providers' rebinds, told from a timer thread):
    publishing never goes through this mailbox."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry(self.actor_ref)

    def on_start(self) -> None:
        threading.current_thread().name = "gwclient-connection"

    def on_receive(self, message: Any) -> Any:
        try:
            if isinstance(message, Bind):
                return self.registry.bind(message.slot, message.config, message.provider, message.transport)
            if isinstance(message, Rebind):
                bind = message.bind
                self.registry.bind(bind.slot, bind.config, bind.provider, bind.transport)
                return None
            if isinstance(message, Release):
                return self.registry.release(message.slot)
            if isinstance(message, ReleaseAll):
                return self.registry.release_all()
            if isinstance(message, GetRegistry):
                return self.registry
            if isinstance(message, Retire):
                self.stop()
                return threading.current_thread()
        except Exception:
            # A bug must not stop the registry (pykka would, on a tell); an asker learns
            # of it through its future.
            log.exception("the connection registry failed to handle %s", type(message).__name__)
            if isinstance(message, Rebind):
                return None
            raise
        return None
