"""ConnectionActor (one per process) and the blocking facade :class:`GatewayConnection`.

The connection actor (``gwclient-connection``) is the registry that enforces **one
websocket per effective config**: facades *bind* to a config, the actor hands back the one
channel actor for it (creating it on first use), and stops a channel when its last facade
moves to another config or shuts down.  It is also the event bus: channels publish pushes
to it, it caches the latest snapshot and fans pushes out to subscriptions, so a new
subscriber sees the latest snapshot first and then every later push in order.

Only facade methods block, on the caller's thread, always with a deadline.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import pykka

from ._bus import Subscription
from ._channel import GatewayChannelActor
from ._config import GatewayConfig
from ._errors import ClientClosed, GatewayError, GatewayTimeout, PairingRequired, UsageError, check_caller
from ._frames import HelloOk
from ._messages import AwaitConnected, Cancel, Request, Retry, Stop
from ._protocol import TWO_STAGE_METHODS, new_request_id
from ._provider import ConfigProvider, EnvironmentConfigProvider
from ._pushes import ConnectionState, Push, Snapshot, StateChange
from ._runs import RunsMixin
from ._transport import TransportFactory

__all__ = ["DEFAULT", "GatewayConnection"]

log = logging.getLogger("gwclient.connection")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: "Use the config's value" (``request_timeout`` / ``connect_timeout``); ``None`` = forever.
DEFAULT: Any = _Default()


# ------------------------------------------------------------------ actor messages


@dataclass(frozen=True)
class _Bind:
    slot: int
    config: GatewayConfig


@dataclass(frozen=True)
class _Publish:
    config: GatewayConfig
    channel: int
    push: Push


@dataclass(frozen=True)
class _Subscribe:
    slot: int
    sub: Subscription = field(compare=False)


@dataclass(frozen=True)
class _Unsubscribe:
    sub: Subscription = field(compare=False)


@dataclass(frozen=True)
class _Release:
    slot: int


@dataclass(frozen=True)
class _ReleaseAll:
    pass


@dataclass(frozen=True)
class _State:
    slot: int


@dataclass(frozen=True)
class _Retire:
    """Stop the bus; answers with the actor's thread so the caller can join it."""


@dataclass
class _ChannelEntry:
    ref: pykka.ActorRef[GatewayChannelActor]
    number: int
    slots: set[int] = field(default_factory=set)
    snapshot: Snapshot | None = None
    state: ConnectionState = ConnectionState.IDLE


class ConnectionActor(pykka.ThreadingActor):
    """The process's channel registry and event bus.  Runs on ``gwclient-connection``;
    every method runs there and never blocks."""

    use_daemon_thread = True

    def __init__(self, transport_factory: TransportFactory | None = None) -> None:
        super().__init__()
        self._factory = transport_factory
        self._channels: dict[GatewayConfig, _ChannelEntry] = {}
        self._slots: dict[int, GatewayConfig] = {}
        self._subs: dict[int, list[Subscription]] = {}
        self._numbers = itertools.count(1)

    def on_start(self) -> None:
        threading.current_thread().name = "gwclient-connection"

    def on_receive(self, message: Any) -> Any:
        try:
            return self._dispatch(message)
        except Exception:  # pragma: no cover - a bug: keep the bus alive, say so
            log.exception("connection actor failed to handle %s", type(message).__name__)
            raise

    def _dispatch(self, message: Any) -> Any:
        if isinstance(message, _Publish):
            self._on_publish(message)
        elif isinstance(message, _Bind):
            return self._on_bind(message.slot, message.config)
        elif isinstance(message, _Subscribe):
            self._on_subscribe(message.slot, message.sub)
        elif isinstance(message, _Unsubscribe):
            for subs in self._subs.values():
                if message.sub in subs:
                    subs.remove(message.sub)
        elif isinstance(message, _Release):
            return self._on_release(message.slot)
        elif isinstance(message, _State):
            config = self._slots.get(message.slot)
            entry = self._channels.get(config) if config is not None else None
            return (entry.state, entry.snapshot) if entry is not None else (ConnectionState.IDLE, None)
        elif isinstance(message, _Retire):
            self.stop()
            return threading.current_thread()
        elif isinstance(message, _ReleaseAll):
            refs: list[pykka.ActorRef[GatewayChannelActor]] = []
            for slot in list(self._slots):
                refs.extend(self._on_release(slot))
            for subs in self._subs.values():
                for sub in subs:
                    sub._end()
            self._subs.clear()
            return refs
        return None

    def _on_bind(self, slot: int, config: GatewayConfig) -> pykka.ActorRef[GatewayChannelActor]:
        old = self._slots.get(slot)
        if old == config:
            return self._channels[config].ref
        if old is not None:
            for ref in self._unbind(slot, old, "config changed"):
                ref.tell(Stop("config changed", retired=True))
        entry = self._channels.get(config)
        if entry is None:
            me = self.actor_ref
            number = next(self._numbers)

            def publish(push: Push, _config: GatewayConfig = config, _n: int = number) -> None:
                try:
                    me.tell(_Publish(_config, _n, push))
                except pykka.ActorDeadError:  # the bus stopped first (shutdown_all)
                    pass

            ref = GatewayChannelActor.start(config, publish, transport_factory=self._factory,
                                            retry_policy=config.retry)
            entry = _ChannelEntry(ref, number)
            self._channels[config] = entry
        entry.slots.add(slot)
        self._slots[slot] = config
        return entry.ref

    def _unbind(self, slot: int, config: GatewayConfig, why: str) -> list[pykka.ActorRef[GatewayChannelActor]]:
        entry = self._channels.get(config)
        self._slots.pop(slot, None)
        if entry is None:
            return []
        entry.slots.discard(slot)
        if entry.slots:
            return []
        log.debug("closing the channel to %s (%s)", config.redacted_url, why)
        del self._channels[config]
        return [entry.ref]

    def _on_release(self, slot: int) -> list[pykka.ActorRef[GatewayChannelActor]]:
        for sub in self._subs.pop(slot, []):
            sub._end()
        config = self._slots.get(slot)
        return self._unbind(slot, config, "shutdown") if config is not None else []

    def _on_subscribe(self, slot: int, sub: Subscription) -> None:
        self._subs.setdefault(slot, []).append(sub)
        config = self._slots.get(slot)
        entry = self._channels.get(config) if config is not None else None
        if entry is None:
            return
        if entry.state == ConnectionState.CONNECTED and entry.snapshot is not None:
            sub._offer(entry.snapshot)
        elif entry.state != ConnectionState.IDLE:
            sub._offer(StateChange(entry.state, "current state"))

    def _on_publish(self, message: _Publish) -> None:
        entry = self._channels.get(message.config)
        if entry is None or entry.number != message.channel:
            return  # a channel that is being retired
        push = message.push
        if isinstance(push, Snapshot):
            entry.snapshot = push
        elif isinstance(push, StateChange):
            entry.state = push.state
        for slot in entry.slots:
            for sub in self._subs.get(slot, ()):
                sub._offer(push)


# ------------------------------------------------------------------------- runtime


class _Runtime:
    """Per-process state: the connection actor and the facades.  Replaced after a fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.actor: pykka.ActorRef[ConnectionActor] | None = None
        self.facades: dict[object, GatewayConnection] = {}
        self.transport_factory: TransportFactory | None = None

    def connection_actor(self) -> pykka.ActorRef[ConnectionActor]:
        with self.lock:
            if self.actor is None or not self.actor.is_alive():
                self.actor = ConnectionActor.start(self.transport_factory)
            return self.actor


_runtime = _Runtime()
_runtime_lock = threading.Lock()
_slot_numbers = itertools.count(1)


def _current_runtime() -> _Runtime:
    global _runtime
    if _runtime.pid != os.getpid():
        with _runtime_lock:
            if _runtime.pid != os.getpid():
                _runtime = _Runtime()
    return _runtime


def _after_fork_in_child() -> None:
    # The parent's actor threads do not exist here; forget them (never close the parent's
    # sockets from the child).  The child connects afresh on first use.
    global _runtime
    _runtime = _Runtime()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_caller(what: str) -> None:
    check_caller(f"GatewayConnection.{what}()")


def _join(threads: Iterable[threading.Thread], deadline: float) -> None:
    me = threading.current_thread()
    for thread in threads:
        # A socket worker whose open failed (e.g. connection refused while the gateway
        # restarts) never starts its writer thread; join() on it would raise
        # RuntimeError("cannot join thread before it is started").  Skipping it is safe:
        # workers are listed reader first, and a reader starts its writer before it
        # exits and joins it, so once the reader is joined an unstarted writer never runs.
        if thread is me or thread.ident is None:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))


_default_provider: EnvironmentConfigProvider | None = None


def _environment_provider() -> EnvironmentConfigProvider:
    global _default_provider
    if _default_provider is None:
        _default_provider = EnvironmentConfigProvider()
    return _default_provider


# -------------------------------------------------------------------------- facade


class GatewayConnection(RunsMixin):
    """A blocking handle on the process's one gateway websocket for a config.

    Get it with :meth:`shared`; every part of a program that asks for an equal config gets
    the same object and shares one socket.  All methods may be called from any of your
    threads (not from gwclient's own threads: that raises :class:`UsageError`).
    """

    def __init__(self, *, config: GatewayConfig | None, provider: ConfigProvider | None,
                 key: object, _internal: bool = False) -> None:
        if not _internal:
            raise UsageError("use GatewayConnection.shared(config) to get a connection")
        self._config = config
        self._provider = provider
        self._key = key
        self._slot = next(_slot_numbers)
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._bound: tuple[GatewayConfig, pykka.ActorRef[GatewayChannelActor]] | None = None

    # -- construction -----------------------------------------------------------------

    @classmethod
    def shared(cls, config: GatewayConfig | None = None, *,
               provider: ConfigProvider | None = None) -> GatewayConnection:
        """The one connection object for ``config`` in this process.

        With no config, the connection follows ``provider`` (default: the environment and
        ``~/.openclaw/openclaw.json``, see :meth:`GatewayConfig.from_environment`) and
        reconnects once when the provider's answer changes.  Nothing connects until the
        first request or subscription."""
        if config is not None and provider is not None:
            raise UsageError("pass a config or a provider, not both")
        key: object = config if config is not None else ("provider", provider or "environment")
        rt = _current_runtime()
        with rt.lock:
            conn = rt.facades.get(key)
            if conn is None or conn._closed:
                conn = cls(config=config, provider=provider, key=key, _internal=True)
                rt.facades[key] = conn
            return conn

    # -- config and binding -----------------------------------------------------------

    @property
    def config(self) -> GatewayConfig:
        """The effective config now (the provider's current answer when following one)."""
        if self._config is not None:
            return self._config
        return (self._provider or _environment_provider())()

    def _channel(self, config: GatewayConfig | None = None) -> pykka.ActorRef[GatewayChannelActor]:
        if config is None:
            config = self.config
        with self._lock:
            if self._closed:
                raise ClientClosed("this GatewayConnection was shut down; call GatewayConnection.shared() again")
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._bound = None  # the parent's socket is not ours
            bound = self._bound
            if bound is not None and (bound[0] is config or bound[0] == config) and bound[1].is_alive():
                return bound[1]
            rt = _current_runtime()
            with rt.lock:
                rt.facades.setdefault(self._key, self)
            ref = cast("pykka.ActorRef[GatewayChannelActor]", _ask(rt.connection_actor(), _Bind(self._slot, config)))
            self._bound = (config, ref)
            return ref

    def _tell(self, message: Any, config: GatewayConfig | None = None) -> pykka.ActorRef[GatewayChannelActor]:
        for _ in range(3):
            ref = self._channel(config)
            try:
                ref.tell(message)
                return ref
            except pykka.ActorDeadError:
                # The channel was retired (config change) between binding and telling:
                # bind again to the config as it is now.
                with self._lock:
                    self._bound = None
                config = None
        raise ClientClosed("the gateway channel is shutting down")

    # -- requests ---------------------------------------------------------------------

    def request(self, method: str, params: Any = None, *, timeout: float | None = DEFAULT,
                expect_final: bool | None = None) -> Any:
        """Send one request and block until its answer (the decoded ``payload``).

        Waits for the shared connect if the socket is (re)connecting; never opens a socket
        of its own.  ``timeout`` defaults to ``config.request_timeout``; ``None`` waits
        forever.  ``expect_final`` (default: True for two-stage methods such as ``agent``)
        skips the interim ``{status: "accepted"}`` answer and returns the final one.

        Raises :class:`GatewayTimeout`, :class:`Disconnected` (socket dropped while
        pending; never replayed), :class:`RequestError` (``ok:false``), a
        :class:`ConnectError` subclass when connecting is paused (bad token, pairing...),
        or :class:`ClientClosed` after :meth:`shutdown`."""
        _check_caller("request")
        if not isinstance(method, str) or not method:
            raise UsageError("method must be a non-empty string")
        config = self.config  # once per request: a provider may do work to answer
        if timeout is DEFAULT:
            timeout = config.request_timeout
        if expect_final is None:
            expect_final = method in TWO_STAGE_METHODS
        request_id = new_request_id()
        fut: Future[Any] = Future()
        ref = self._tell(Request(request_id, method, params, fut, expect_final), config)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            try:
                ref.tell(Cancel(request_id))
            except pykka.ActorDeadError:
                pass
            raise GatewayTimeout(f"{method} got no answer within {timeout:g} s") from None

    def connect(self, *, timeout: float | None = DEFAULT) -> HelloOk:
        """Connect now (if not already) and return the hello-ok.  Default timeout: twice
        ``config.connect_timeout`` (challenge + hello).  Raises like :meth:`request`."""
        _check_caller("connect")
        if timeout is DEFAULT:
            timeout = 2 * self.config.connect_timeout
        fut: Future[HelloOk] = Future()
        self._tell(AwaitConnected(fut))
        try:
            return fut.result(timeout)
        except FutureTimeout:
            raise GatewayTimeout(f"not connected to the gateway within {timeout:g} s") from None

    def reconnect(self) -> None:
        """Leave the PAUSED state (e.g. after fixing credentials on the gateway side) or cut a
        backoff wait short: connect again now."""
        self._tell(Retry())

    def wait_for_pairing(self, *, timeout: float | None = 300.0, poll_interval: float = 3.0,
                         on_waiting: Callable[[PairingRequired], None] | None = None) -> HelloOk:
        """Connect, waiting for an operator to approve this device if pairing is required.

        Retries gently every ``poll_interval`` seconds (each retry is one connect attempt),
        calls ``on_waiting(error)`` and logs progress at INFO each time, and returns the
        hello-ok once approved (the device token is stored by then).  When ``timeout``
        runs out it raises the last :class:`PairingRequired` (it carries the request id
        to approve), or :class:`GatewayTimeout` if no answer came at all.  Other connect
        errors (bad token...) are raised at once."""
        _check_caller("wait_for_pairing")
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = threading.Event()  # never set: an interruptible wait, not a sleep
        last: PairingRequired | None = None
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if last is not None:
                    raise last
                raise GatewayTimeout(f"not connected to the gateway within {timeout:g} s")
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
            remaining = None if deadline is None else deadline - time.monotonic()
            wait = poll_interval if remaining is None else max(0.0, min(poll_interval, remaining))
            pause.wait(wait)
            if self._closed:
                raise ClientClosed("shut down while waiting for pairing")

    # -- events -----------------------------------------------------------------------

    def subscribe(self, events: Iterable[str] | str | None = None, *, maxsize: int | None = None,
                  include_state: bool = True) -> Subscription:
        """A :class:`Subscription` to this connection's pushes.

        First item: the latest :class:`Snapshot` if connected (or the current
        :class:`StateChange`), then :class:`Event` and :class:`SeqGap` items in wire order,
        a new Snapshot after every reconnect.  ``events`` limits which event names are
        delivered (snapshots, gaps and state changes always are; state changes unless
        ``include_state=False``).  Subscribing starts connecting.  The queue holds
        ``maxsize`` items (default ``config.max_queue``); see :mod:`gwclient._bus` for the
        drop-oldest overflow policy."""
        _check_caller("subscribe")
        if isinstance(events, str):
            events = [e for e in events.split(",") if e]
        rt_actor = None
        size = maxsize if maxsize is not None else self.config.max_queue

        def unsubscribe(sub: Subscription) -> None:
            if rt_actor is not None and rt_actor.is_alive():
                try:
                    rt_actor.tell(_Unsubscribe(sub))
                except pykka.ActorDeadError:  # pragma: no cover - shut down meanwhile
                    pass

        sub = Subscription(events, maxsize=size, include_state=include_state, on_close=unsubscribe)
        self._channel()  # bind first so the bus knows which channel feeds this slot
        rt_actor = _current_runtime().connection_actor()
        _ask(rt_actor, _Subscribe(self._slot, sub))
        self._tell(AwaitConnected(Future()))  # start connecting if idle
        return sub

    @property
    def state(self) -> ConnectionState:
        """The connection's state now (IDLE before first use, CLOSED after shutdown)."""
        return self._status()[0]

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The latest hello-ok snapshot of the current connection, if connected."""
        state, snapshot = self._status()
        return snapshot if state == ConnectionState.CONNECTED else None

    def _status(self) -> tuple[ConnectionState, Snapshot | None]:
        if self._closed:
            return ConnectionState.CLOSED, None
        actor = _current_runtime().actor
        if actor is None or self._bound is None:
            return ConnectionState.IDLE, None
        try:
            return cast("tuple[ConnectionState, Snapshot | None]", _ask(actor, _State(self._slot)))
        except ClientClosed:
            return ConnectionState.CLOSED, None

    # -- shutting down ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close this connection: no reconnect after it, pending requests fail at once with
        :class:`ClientClosed`, subscriptions end, the socket closes and the threads of its
        channel are joined (if no other config-equal user remains).  Idempotent."""
        _check_caller("shutdown")
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._bound = None
        rt = _current_runtime()
        with rt.lock:
            if rt.facades.get(self._key) is self:
                del rt.facades[self._key]
            actor = rt.actor
        if actor is None or not actor.is_alive():
            return
        try:
            refs = cast("list[pykka.ActorRef[GatewayChannelActor]]", _ask(actor, _Release(self._slot)))
        except ClientClosed:  # the bus is gone already (shutdown_all raced us)
            refs = []
        _stop_channels(refs, deadline)
        with rt.lock:
            # The last user is gone: stop the bus too, so no gwclient thread survives.
            retire = rt.actor if not rt.facades and rt.actor is actor else None
            if retire is not None:
                rt.actor = None
        if retire is not None:
            _retire(retire, deadline)

    @classmethod
    def shutdown_all(cls, timeout: float = 5.0) -> None:
        """Shut down every connection of this process and the connection actor; when it
        returns no gwclient thread is alive and no gateway socket is open."""
        _check_caller("shutdown_all")
        deadline = time.monotonic() + timeout
        rt = _current_runtime()
        with rt.lock:
            facades = list(rt.facades.values())
            rt.facades.clear()
            actor = rt.actor
            rt.actor = None
        for conn in facades:
            with conn._lock:
                conn._closed = True
                conn._bound = None
        if actor is not None and actor.is_alive():
            try:
                refs = cast("list[pykka.ActorRef[GatewayChannelActor]]", actor.ask(_ReleaseAll()))
            except pykka.ActorDeadError:  # pragma: no cover - racing exit
                refs = []
            _stop_channels(refs, deadline)
            _retire(actor, deadline)
        # Channels retired by config changes stop by themselves; wait for their threads.
        # (SSH tunnel threads belong to the ConnectionModeCoordinator: stop() it for those.)
        _join([t for t in threading.enumerate()
               if t.name.startswith("gwclient-") and not t.name.startswith("gwclient-tunnel-")], deadline)

    def __enter__(self) -> GatewayConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        what = repr(self._config) if self._config is not None else repr(self._provider or "environment")
        return f"<GatewayConnection {what}{' closed' if self._closed else ''}>"


def _ask(ref: pykka.ActorRef[Any], message: Any, timeout: float = 30.0) -> Any:
    """Ask one of our actors; they never block, so the timeout only guards against a bug or
    an actor that is already gone.  No pykka exception crosses the public API."""
    try:
        return ref.ask(message, timeout=timeout)
    except pykka.ActorDeadError as exc:
        raise ClientClosed("the gwclient connection actor has stopped") from exc
    except pykka.Timeout as exc:  # pragma: no cover - a bug
        raise GatewayTimeout(f"gwclient actor did not answer {type(message).__name__} in {timeout:g} s") from exc


def _stop_channels(refs: Iterable[pykka.ActorRef[GatewayChannelActor]], deadline: float) -> None:
    for ref in refs:
        try:
            threads = cast("list[threading.Thread]",
                           ref.ask(Stop(), timeout=max(0.1, deadline - time.monotonic())))
        except (pykka.ActorDeadError, pykka.Timeout):
            continue
        _join(threads, deadline)


def _retire(actor: pykka.ActorRef[ConnectionActor], deadline: float) -> None:
    try:
        thread = cast(threading.Thread, actor.ask(_Retire(), timeout=max(0.1, deadline - time.monotonic())))
    except (pykka.ActorDeadError, pykka.Timeout):  # pragma: no cover - already gone
        return
    _join([thread], deadline)


def _exit_handler() -> None:
    if _runtime.pid == os.getpid() and (_runtime.facades or _runtime.actor is not None):
        try:
            GatewayConnection.shutdown_all(timeout=2.0)
        except GatewayError:  # pragma: no cover - exiting anyway
            pass


atexit.register(_exit_handler)
