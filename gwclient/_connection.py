"""The blocking facade :class:`GatewayConnection`.

Only facade methods block, on the caller's thread, always with a deadline.  The hot path
has no mailbox: :meth:`GatewayConnection.request` validates and encodes in the caller's
thread, hands the frame to the channel's link (a short lock, then a send from this very
thread) and waits on a future that the reader thread settles.  Binding a facade to its
channel (an ``ask`` of the connection actor) happens once per config, not per request.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, Final, cast

import pykka

from . import _runtime as _runtime_module
from ._bus import Bind, Channel, Release, ReleaseAll
from ._channel import Retry
from ._config import GatewayConfig
from ._deadline import MAX_TIMEOUT, check_timeout
from ._encode import check_method, encode_request
from ._errors import (
    ChannelRetired,
    ClientClosed,
    ConfigError,
    GatewayError,
    GatewayTimeout,
    UsageError,
    check_caller,
)
from ._frames import HelloOk
from ._pairing import PairingMixin
from ._protocol import TWO_STAGE_METHODS, new_request_id
from ._provider import ConfigProvider, EnvironmentConfigProvider
from ._pushes import ConnectionState, Event, Snapshot
from ._run_start import RunsMixin
from ._runtime import ask, current_runtime, join, retire, stop_channels
from ._sessions import SessionsMixin
from ._subscription import Subscription
from ._waiter import Waiter

__all__ = ["DEFAULT", "Default", "GatewayConnection"]


class Default(enum.Enum):
    """The type of :data:`DEFAULT`."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


#: "Use the config's value" (``request_timeout`` / ``connect_timeout``); ``None`` = forever.
DEFAULT: Final = Default.DEFAULT

log = logging.getLogger("gwclient.connection")

_slot_numbers = itertools.count(1)
_resolving = threading.local()
_default_provider: EnvironmentConfigProvider | None = None


def _environment_provider() -> EnvironmentConfigProvider:
    global _default_provider
    if _default_provider is None:
        _default_provider = EnvironmentConfigProvider()
    return _default_provider


def _check_caller(what: str) -> None:
    check_caller(f"GatewayConnection.{what}()")


class GatewayConnection(SessionsMixin, PairingMixin, RunsMixin):
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
        self._fork = _runtime_module.fork_generation
        self._bound: tuple[GatewayConfig, Channel] | None = None
        self._stickies: dict[object, list[Any]] = {}  # key -> [method, params, users]

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
        if config is not None and not isinstance(config, GatewayConfig):
            raise UsageError(f"config must be a GatewayConfig, not {type(config).__name__}")
        if provider is not None and not callable(provider):
            raise UsageError("provider must be a callable returning a GatewayConfig")
        key: object = config if config is not None else ("provider", provider or "environment")
        rt = current_runtime()
        with rt.lock:
            conn = rt.facades.get(key)
            if conn is None or conn._closed:
                conn = cls(config=config, provider=provider, key=key, _internal=True)
                rt.facades[key] = conn
            return conn

    # -- config and binding -------------------------------------------------------------

    @property
    def config(self) -> GatewayConfig:
        """The effective config now (the provider's current answer when following one)."""
        if self._config is not None:
            return self._config
        if getattr(_resolving, "active", False):
            raise UsageError("the config provider called back into GatewayConnection (it would recurse)")
        _resolving.active = True
        try:
            config = (self._provider or _environment_provider())()
        except GatewayError:
            raise
        except Exception as exc:
            raise ConfigError(f"the config provider failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _resolving.active = False
        if not isinstance(config, GatewayConfig):
            raise ConfigError(f"the config provider returned {type(config).__name__}, not a GatewayConfig")
        return config

    def _channel(self, config: GatewayConfig | None = None) -> Channel:
        if config is None:
            config = self.config
        bound = self._bound
        if bound is not None and (bound[0] is config or bound[0] == config) \
                and self._fork == _runtime_module.fork_generation:
            return bound[1]  # the hot path: no lock, no ask, no system call
        with self._lock:
            if self._closed:
                raise ClientClosed("this GatewayConnection was shut down; call GatewayConnection.shared() again")
            if self._fork != _runtime_module.fork_generation:
                self._fork = _runtime_module.fork_generation
                self._bound = None  # the parent's socket is not ours
            bound = self._bound
            rt = current_runtime()
            with rt.lock:
                rt.facades.setdefault(self._key, self)
            actor, _ = rt.connection_actor()
            channel = cast(Channel, ask(actor, Bind(self._slot, config)))
            if bound is not None and bound[1] is not channel:
                # Moved to another channel (a config change): bring the sticky session
                # subscriptions along.
                for key, (method, params, users) in list(self._stickies.items()):
                    for _ in range(users):
                        channel.link.add_sticky(key, method, params)
            self._bound = (config, channel)
            return channel

    def _submit(self, method: str, data: bytes, request_id: str, expect_final: bool,
                config: GatewayConfig, *, blocking: bool) -> Any:
        """Hand an encoded request to the channel.  A channel retired by a config change
        before the frame left refuses it; then bind to the new one and submit again."""
        for _ in range(3):
            channel = self._channel(config)
            fut: Any = Waiter() if blocking else Future()
            channel.link.submit(request_id, method, data, fut, expect_final)
            if not (fut.done() and isinstance(fut.exception(), ChannelRetired)):
                return fut
            with self._lock:
                if self._bound is not None and self._bound[1] is channel:
                    self._bound = None
            config = self.config
        raise ClientClosed("the gateway channel is shutting down")

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, params: Any = None, *, timeout: float | Default | None = DEFAULT,
                expect_final: bool | None = None) -> Any:
        """Send one request and block until its answer (the decoded ``payload``).

        Waits for the shared connect if the socket is (re)connecting; never opens a socket
        of its own.  ``timeout`` defaults to ``config.request_timeout``; ``None`` (or
        ``inf``) waits forever.  ``expect_final`` (default: True for two-stage methods such
        as ``agent``) skips the interim ``{status: "accepted"}`` answer.

        Raises :class:`UsageError` (bad method, params or timeout: nothing was sent),
        :class:`GatewayTimeout`, :class:`Disconnected` (socket dropped while pending; never
        replayed), :class:`RequestError` (``ok:false``), a :class:`ConnectError` subclass
        when connecting is paused (bad token, pairing...), or :class:`ClientClosed` after
        :meth:`shutdown`."""
        fut, seconds, request_id, link_cancel = self._start(method, params, timeout, expect_final, "request",
                                                            blocking=True)
        try:
            return fut.result(seconds)
        except FutureTimeout:
            link_cancel(request_id)
            raise GatewayTimeout(f"{method} got no answer within {seconds:g} s") from None

    def submit(self, method: str, params: Any = None, *, timeout: float | Default | None = DEFAULT,
               expect_final: bool | None = None) -> Future[Any]:
        """Like :meth:`request` without blocking: returns a ``concurrent.futures.Future``
        of the answer, so one thread can pipeline many requests and gather them.  Errors
        are delivered through the future (:class:`GatewayTimeout` after ``timeout``);
        argument errors raise :class:`UsageError` at once."""
        fut, seconds, request_id, _ = self._start(method, params, timeout, expect_final, "submit",
                                                            blocking=False)
        if seconds is not None and not fut.done():
            bound = self._bound
            if bound is not None:
                bound[1].link.expire_later(seconds, request_id, method, fut)
        return cast("Future[Any]", fut)

    def _start(self, method: str, params: Any, timeout: float | Default | None, expect_final: bool | None,
               what: str, *, blocking: bool) -> tuple[Any, float | None, str, Callable[[str], None]]:
        _check_caller(what)
        check_method(method)
        config = self.config  # once per request: a provider may do work to answer
        seconds = config.request_timeout if timeout is DEFAULT else check_timeout(timeout)
        if expect_final is None:
            expect_final = method in TWO_STAGE_METHODS
        request_id = new_request_id()
        data = encode_request(request_id, method, params)
        fut = self._submit(method, data, request_id, bool(expect_final), config, blocking=blocking)
        bound = self._bound
        cancel = bound[1].link.cancel if bound is not None else (lambda _rid: None)
        return fut, seconds, request_id, cancel

    def connect(self, *, timeout: float | Default | None = DEFAULT) -> HelloOk:
        """Connect now (if not already) and return the hello-ok.  Default timeout: twice
        ``config.connect_timeout`` (challenge + hello).  Raises like :meth:`request`."""
        _check_caller("connect")
        config = self.config
        seconds = 2 * config.connect_timeout if timeout is DEFAULT else check_timeout(timeout)
        fut: Future[HelloOk] = Future()
        self._channel(config).link.await_connected(fut)
        try:
            return fut.result(seconds)
        except FutureTimeout:
            raise GatewayTimeout(f"not connected to the gateway within {seconds:g} s") from None

    def reconnect(self) -> None:
        """Leave the PAUSED state (e.g. after fixing credentials on the gateway side) or cut a
        backoff wait short: connect again now."""
        try:
            self._channel().ref.tell(Retry())
        except pykka.ActorDeadError:
            raise ClientClosed("the gateway channel has stopped") from None

    # -- events -------------------------------------------------------------------------

    def subscribe(self, events: Iterable[str] | str | None = None, *, maxsize: int | None = None,
                  max_bytes: int | Default | None = DEFAULT, include_state: bool = True) -> Subscription:
        """A :class:`Subscription` to this connection's pushes.

        First item: the latest :class:`Snapshot` if connected (or the current
        :class:`StateChange`), then :class:`Event` and :class:`SeqGap` items in wire order,
        a new Snapshot after every reconnect.  ``events`` limits which event names are
        delivered (snapshots, gaps and state changes always are; state changes unless
        ``include_state=False``).  Subscribing starts connecting.  The queue holds
        ``maxsize`` items (default ``config.max_queue``) and ``max_bytes`` bytes of memory
        held by the decoded events (default ``config.max_queue_bytes``); see
        :mod:`gwclient._subscription` for the drop-oldest overflow policy."""
        _check_caller("subscribe")
        if isinstance(events, str):
            events = [e for e in events.split(",") if e]
        elif events is not None:
            events = list(events)
            if not all(isinstance(e, str) for e in events):
                raise UsageError("events must be event names (strings)")
        return self._subscribe(events, maxsize, max_bytes, include_state=include_state)

    def _subscribe(self, events: list[str] | None, maxsize: int | None, max_bytes: int | Default | None, *,
                   include_state: bool = True, accept: Callable[[Event], bool] | None = None,
                   on_close: Callable[[], None] | None = None) -> Subscription:
        config = self.config
        size = maxsize if maxsize is not None else config.max_queue
        limit = config.max_queue_bytes if max_bytes is DEFAULT else max_bytes
        channel = self._channel(config)  # bind first so the bus knows which channel feeds this slot
        _, bus = current_runtime().connection_actor()

        def closed(sub: Subscription | None) -> None:  # None: collected without close()
            bus.unsubscribe(sub)
            if on_close is not None:
                on_close()

        sub = Subscription(events, maxsize=size, max_bytes=limit, include_state=include_state,
                           on_close=closed, accept=accept)
        bus.subscribe(self._slot, sub)
        channel.link.await_connected(Future())  # start connecting if idle
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
        bus = current_runtime().bus
        if bus is None or self._bound is None:
            return ConnectionState.IDLE, None
        return bus.status(self._slot)

    # -- shutting down ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Close this connection: no reconnect after it, pending requests fail at once with
        :class:`ClientClosed`, subscriptions end, the socket closes and the threads of its
        channel are joined (if no other config-equal user remains) for up to ``timeout``
        seconds (``0``: do not wait for them; ``None``: as long as it takes).  Returns
        within ``timeout`` even against a frozen gateway.  Idempotent."""
        _check_caller("shutdown")
        deadline = time.monotonic() + _budget(timeout)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._bound = None
        rt = current_runtime()
        with rt.lock:
            if rt.facades.get(self._key) is self:
                del rt.facades[self._key]
            actor = rt.actor
        if actor is None or not actor.is_alive():
            return
        try:
            refs = ask(actor, Release(self._slot))
        except ClientClosed:  # the registry is gone already (shutdown_all raced us)
            refs = []
        stop_channels(refs, deadline)
        with rt.lock:
            # The last user is gone: stop the registry too, so no gwclient thread survives.
            last = rt.actor if not rt.facades and rt.actor is actor else None
            if last is not None:
                rt.actor = None
                rt.bus = None
        if last is not None:
            retire(last, deadline)

    @classmethod
    def shutdown_all(cls, timeout: float | None = 5.0) -> None:
        """Shut down every connection of this process and the connection actor; when it
        returns no gwclient thread is alive and no gateway socket is open."""
        _check_caller("shutdown_all")
        deadline = time.monotonic() + _budget(timeout)
        rt = current_runtime()
        with rt.lock:
            facades = list(rt.facades.values())
            rt.facades.clear()
            actor = rt.actor
            rt.actor = None
            rt.bus = None
        for conn in facades:
            with conn._lock:
                conn._closed = True
                conn._bound = None
        if actor is not None and actor.is_alive():
            try:
                refs = cast("list[Any]", actor.ask(ReleaseAll(), timeout=max(0.1, deadline - time.monotonic())))
            except (pykka.ActorDeadError, pykka.Timeout):  # pragma: no cover - racing exit
                refs = []
            stop_channels(refs, deadline)
            retire(actor, deadline)
        # Channels retired by config changes stop by themselves; wait for their threads.
        # (SSH tunnel threads belong to the ConnectionModeCoordinator: stop() it for those.)
        join([t for t in threading.enumerate()
              if t.name.startswith("gwclient-") and not t.name.startswith("gwclient-tunnel-")], deadline)

    def __enter__(self) -> GatewayConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        what = repr(self._config) if self._config is not None else repr(self._provider or "environment")
        return f"<GatewayConnection {what}{' closed' if self._closed else ''}>"


def _budget(timeout: object) -> float:
    """The seconds a shutdown may take: ``None``/``inf`` mean "as long as it takes" (still
    bounded by MAX_TIMEOUT), ``0`` means "do not wait for threads to end"."""
    seconds = check_timeout(timeout)
    return MAX_TIMEOUT if seconds is None else seconds


def _exit_handler() -> None:
    rt = current_runtime()
    if rt.facades or rt.actor is not None:
        try:
            GatewayConnection.shutdown_all(timeout=2.0)
        except GatewayError:  # pragma: no cover - exiting anyway
            pass


import atexit  # noqa: E402  (registered last, once everything above exists)

atexit.register(_exit_handler)
# Python joins the non-daemon threads before atexit handlers run: one of them blocked in
# ``sub.get()`` or ``request(timeout=None)`` would hang the exit forever.  This CPython
# hook (the one concurrent.futures uses) runs when the main thread has finished, before
# that join: the blocked callers get ClientClosed and the socket is closed cleanly.
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_exit_handler)
