"""The blocking facade :class:`GatewayConnection`.

Only facade methods block, on the caller's thread, always with a deadline.  The hot path
has no mailbox: :meth:`GatewayConnection.request` validates and encodes in the caller's
thread, hands the frame to the channel (a short lock, then a send from this very thread)
and waits on a future that the reader thread settles.  Binding a facade to its channel (an
``ask`` of the connection actor, which owns the registry of bindings) happens once per
config, not per request; the facade keeps ``(config, channel)`` as a cache of that binding.

Features are composed, not mixed in: session subscriptions are a pure sticky spec
(:mod:`gwclient._core.sessions`) over :meth:`GatewayConnection.subscribe`'s machinery, runs
are :meth:`Run.chat` / :meth:`Run.agent` over ``request()`` and ``subscribe()``, waiting
for pairing is :func:`gwclient._pairing.wait_for_pairing` over the public API; each is
delegated here in one line.
"""

from __future__ import annotations

import atexit
import enum
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, Final, cast

import pykka

from ._config.config import GatewayConfig
from ._config.provider import ConfigProvider, EnvironmentConfigProvider
from ._core.deadline import MAX_TIMEOUT, check_timeout
from ._core.encode import check_method, encode_request
from ._core.frames import HelloOk
from ._core.protocol import TWO_STAGE_METHODS, new_request_id, refuses_field
from ._core.pushes import ConnectionState, Event, Snapshot
from ._core.sessions import Sticky, session_messages, sessions_list
from ._core.stats import ConnectionStats, idle_stats
from ._engine import otel as _otel
from ._engine import runtime as _runtime_module
from ._engine.busy import RetryingFuture, is_busy, retry_after
from ._engine.channel import Channel
from ._engine.ready import drain, fail_fast
from ._engine.ready import result as _result
from ._engine.registry import Bind, Release, ReleaseAll
from ._engine.runtime import ask, current_runtime, join, retire, stop_channels
from ._engine.subscription import Inlet, Subscription
from ._engine.transport import TransportFactory
from ._engine.waiter import Waiter
from ._errors import (
    ChannelRetired,
    ClientClosed,
    ConfigError,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
    PairingRequired,
    RequestError,
    UsageError,
    check_caller,
)
from ._pairing import wait_for_pairing
from ._runs import Run
from ._scopes import ScopeUpgrade, request_scopes

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


class _Shared:
    """The ``shared()`` table of this process: one facade per key (config, or provider,
    and transport).  Replaced after a fork, like the runtime."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.facades: dict[object, GatewayConnection] = {}


_shared = _Shared()


def _facades() -> _Shared:
    global _shared
    if _shared.pid != os.getpid():
        _shared = _Shared()
    return _shared


def _environment_provider() -> EnvironmentConfigProvider:
    global _default_provider
    if _default_provider is None:
        _default_provider = EnvironmentConfigProvider()
    return _default_provider


def _check_caller(what: str) -> None:
    check_caller(f"GatewayConnection.{what}()")


class GatewayConnection:
    """A blocking handle on the process's one gateway websocket for a config.

    Get it with :meth:`shared`; every part of a program that asks for an equal config gets
    the same object and shares one socket.  All methods may be called from any of your
    threads (not from gwclient's own threads: that raises :class:`UsageError`).
    """

    def __init__(self, *, config: GatewayConfig | None, provider: ConfigProvider | None,
                 key: object, transport: TransportFactory | None = None, _internal: bool = False) -> None:
        if not _internal:
            raise UsageError("use GatewayConnection.shared(config) to get a connection")
        self._config = config
        self._provider = provider
        self._transport = transport
        self._key = key
        self._slot = next(_slot_numbers)
        self._lock = threading.Lock()
        self._closed = False
        self._fork = _runtime_module.fork_generation
        #: A cache of this facade's binding in the registry (the one owner), checked on
        #: every request: valid while the config is the same and no fork happened.
        self._bound: tuple[GatewayConfig, Channel] | None = None
        self._draining: int | None = None  # the thread in drain(), which may still send
        self._runs: weakref.WeakSet[Run] = weakref.WeakSet()  # runs started here (drain waits for them)

    @classmethod
    def shared(cls, config: GatewayConfig | None = None, *, provider: ConfigProvider | None = None,
               transport: TransportFactory | None = None) -> GatewayConnection:
        """The one connection object for ``config`` in this process.

        With no config, the connection follows ``provider`` (default: the environment and
        ``~/.openclaw/openclaw.json``, see :meth:`GatewayConfig.from_environment`): the
        provider is asked on every request and re-read about once a second while the
        connection is subscribed or connected, and a new answer closes the old socket and
        connects once.  Nothing connects until the first request or subscription.

        ``transport`` is the seam that opens sockets (``(TransportOptions, OpenGuard) ->
        Transport``, default: TCP/TLS websocket); connections with another transport are
        other connections (tests count and break sockets through it)."""
        if config is not None and provider is not None:
            raise UsageError("pass a config or a provider, not both")
        if config is not None and not isinstance(config, GatewayConfig):
            raise UsageError(f"config must be a GatewayConfig, not {type(config).__name__}")
        if provider is not None and not callable(provider):
            raise UsageError("provider must be a callable returning a GatewayConfig")
        if transport is not None and not callable(transport):
            raise UsageError("transport must be a callable opening a transport")
        key: object = (config if config is not None else ("provider", provider or "environment"), transport)
        table = _facades()
        with table.lock:
            conn = table.facades.get(key)
            if conn is None or conn._closed:
                conn = cls(config=config, provider=provider, key=key, transport=transport, _internal=True)
                table.facades[key] = conn
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
            table = _facades()
            with table.lock:
                table.facades.setdefault(self._key, self)
            actor, _ = current_runtime().connection_actor()
            # The registry moves this slot's subscriptions (and their stickies) if the
            # config changed: the one place that knows every binding.
            provider = None if self._config is not None else (self._provider or _environment_provider())
            channel = cast(Channel, ask(actor, Bind(self._slot, config, provider, self._transport)))
            self._bound = (config, channel)
            return channel

    def _submit(self, method: str, data: bytes, request_id: str, expect_final: bool,
                config: GatewayConfig, *, channel: Channel, blocking: bool,
                retrying: tuple[str, Any, bool, float | None] | None = None) -> tuple[Any, Channel]:
        """Hand an encoded request to the channel: ``(its future, the channel that took
        it)``.  A channel retired by a config change before the frame left refuses it;
        then bind to the new one and submit again."""
        for _ in range(3):
            fut: Any = Waiter() if blocking else (
                Future() if retrying is None else RetryingFuture(channel, request_id, retrying))
            channel.submit(request_id, method, data, fut, expect_final)
            if not (fut.done() and isinstance(fut.exception(), ChannelRetired)):
                return fut, channel
            with self._lock:
                if self._bound is not None and self._bound[1] is channel:
                    self._bound = None
            config = self.config
            channel = self._channel(config)
        raise ClientClosed("the gateway channel is shutting down")

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, params: Any = None, *, timeout: float | Default | None = DEFAULT,
                expect_final: bool | None = None, wait_for_ready: bool | None = None,
                traceparent: str | None = None) -> Any:
        """Send one request and block until its answer (the decoded ``payload``).

        Waits for the shared connect if the socket is (re)connecting; never opens a socket
        of its own.  ``timeout`` defaults to ``config.request_timeout``; ``None`` (or
        ``inf``) waits forever.  ``expect_final`` (default: True for two-stage methods such
        as ``agent``) skips the interim ``{status: "accepted"}`` answer.
        ``wait_for_ready=False`` (default ``config.wait_for_ready``) fails at once with
        :class:`GatewayUnavailable` while the connection is not up instead of waiting.
        A busy refusal (``UNAVAILABLE``, ``retryable: true``, before the gateway accepted
        the request) is retried within ``timeout`` (:mod:`gwclient._engine.busy`).

        Raises :class:`UsageError` (bad method, params or timeout: nothing was sent),
        :class:`GatewayTimeout`, :class:`Disconnected` (socket dropped while pending; never
        replayed; both say ``request_sent``), :class:`RequestError` (``ok:false``;
        :class:`MissingScope` for a missing scope), a :class:`ConnectError` subclass
        when connecting is paused (bad token, pairing...), or :class:`ClientClosed` after
        :meth:`shutdown` or during :meth:`drain`.

        ``traceparent`` (a W3C string) is sent on the frame for the gateway to continue
        that trace; with OpenTelemetry configured the request's own span is sent instead,
        a child of it or of your current span (docs/observability.md)."""
        probe = _otel.probe()  # None unless OpenTelemetry or the request log is on
        if probe is not None:
            return probe.request(self, method, traceparent, lambda tp: self._request(
                method, params, timeout, expect_final, wait_for_ready=wait_for_ready, traceparent=tp))
        return self._request(method, params, timeout, expect_final, wait_for_ready=wait_for_ready,
                             traceparent=traceparent)

    def _request(self, method: str, params: Any, timeout: float | Default | None, expect_final: bool | None, *,
                 wait_for_ready: bool | None, traceparent: str | None) -> Any:
        started = time.monotonic()
        fut, seconds, request_id, channel = self._start(method, params, timeout, expect_final, "request",
                                                            blocking=True, ready=wait_for_ready,
                                                            traceparent=traceparent)
        try:
            return _result(fut, seconds, request_id, channel.cancel, method=method, budget=seconds)
        except GatewayUnavailable as exc:
            if not is_busy(exc):
                raise
            first = exc
        except RequestError as exc:
            if traceparent is None or not refuses_field(exc, "traceparent"):
                raise
            # Sent before the hello said which release this is, to one older than 2026.9:
            # the frame was refused before anything ran; send it again without the trace.
            log.debug("%s: the gateway takes no traceparent; sent again without", method)
            left = None if seconds is None else max(0.0, seconds - (time.monotonic() - started))
            return self._request(method, params, left, expect_final,
                                 wait_for_ready=wait_for_ready, traceparent=None)

        def again(remaining: float | None) -> Any:
            fut, _, request_id, channel = self._start(method, params, remaining, expect_final, "request",
                                                          blocking=True, ready=wait_for_ready,
                                                          traceparent=traceparent)
            return _result(fut, remaining, request_id, channel.cancel, method=method, budget=seconds)

        return retry_after(first, again, started, seconds)

    def submit(self, method: str, params: Any = None, *, timeout: float | Default | None = DEFAULT,
               expect_final: bool | None = None, wait_for_ready: bool | None = None,
               traceparent: str | None = None) -> Future[Any]:
        """Like :meth:`request` without blocking: returns a ``concurrent.futures.Future``
        of the answer, so one thread can pipeline many requests and gather them.  Errors
        are delivered through the future (:class:`GatewayTimeout` after ``timeout``);
        argument errors raise :class:`UsageError` at once.  Busy refusals are retried
        within ``timeout`` like :meth:`request`'s, from gwclient's timer thread."""
        probe = _otel.probe()
        if probe is not None:
            return probe.submit(self, method, traceparent, lambda tp: self._submit_request(
                method, params, timeout, expect_final, wait_for_ready=wait_for_ready, traceparent=tp))
        return self._submit_request(method, params, timeout, expect_final, wait_for_ready=wait_for_ready,
                                    traceparent=traceparent)

    def _submit_request(self, method: str, params: Any, timeout: float | Default | None,
                        expect_final: bool | None, *, wait_for_ready: bool | None,
                        traceparent: str | None) -> Future[Any]:
        fut, seconds, request_id, channel = self._start(method, params, timeout, expect_final, "submit",
                                                        blocking=False, ready=wait_for_ready, traceparent=traceparent)
        if seconds is not None and not fut.done():
            channel.expire_later(seconds, request_id, method, fut)  # on the channel that took it
        return cast("Future[Any]", fut)

    def _start(self, method: str, params: Any, timeout: float | Default | None, expect_final: bool | None,
               what: str, *, blocking: bool,
               ready: bool | None = None,
               traceparent: str | None = None) -> tuple[Any, float | None, str, Channel]:
        _check_caller(what)
        if self._draining is not None and self._draining != threading.get_ident():
            raise ClientClosed(f"{what}() refused: this GatewayConnection is draining (drain() was called)")
        check_method(method)
        config = self.config  # once per request: a provider may do work to answer
        seconds = config.request_timeout if timeout is DEFAULT else check_timeout(timeout)
        if expect_final is None:
            expect_final = method in TWO_STAGE_METHODS
        request_id = new_request_id()
        channel = self._channel(config)
        if traceparent is not None and method != "connect" and channel.takes_traceparent:
            # never on connect (the gateway ignores it), nor to a release that refuses it
            # (known from its hello; a blocking request refused before it is sent again)
            data = encode_request(request_id, method, params, _otel.check_traceparent(traceparent))
        else:
            data = encode_request(request_id, method, params)
        if not (config.wait_for_ready if ready is None else ready):
            fail_fast(channel, method)
        retrying = None if blocking else (method, params, bool(expect_final), seconds)
        fut, channel = self._submit(method, data, request_id, bool(expect_final), config, channel=channel,
                                    blocking=blocking, retrying=retrying)
        return fut, seconds, request_id, channel

    def connect(self, *, timeout: float | Default | None = DEFAULT) -> HelloOk:
        """Connect now (if not already) and return the hello-ok.  Default timeout: twice
        ``config.connect_timeout`` (challenge + hello).  Raises like :meth:`request`."""
        _check_caller("connect")
        config = self.config
        seconds = 2 * config.connect_timeout if timeout is DEFAULT else check_timeout(timeout)
        fut: Future[HelloOk] = Future()
        self._channel(config).await_connected(fut)
        try:
            return fut.result(seconds)
        except FutureTimeout:
            raise GatewayTimeout(f"not connected to the gateway within {seconds:g} s") from None

    def reconnect(self) -> None:
        """Leave the PAUSED state (e.g. after fixing credentials on the gateway side) or cut a
        backoff wait short: connect again now."""
        self._channel().retry()

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
        :mod:`gwclient._engine.subscription` for the drop-oldest overflow policy."""
        _check_caller("subscribe")
        if isinstance(events, str):
            events = [e for e in events.split(",") if e]
        elif events is not None:
            events = list(events)
            if not all(isinstance(e, str) for e in events):
                raise UsageError("events must be event names (strings)")
        return self._subscribe(events, maxsize, max_bytes, include_state=include_state)

    def _subscribe(self, events: Iterable[str] | None, maxsize: int | None, max_bytes: int | Default | None, *,
                   include_state: bool = True, accept: Callable[[Event], bool] | None = None,
                   sticky: Sticky | None = None) -> Subscription:
        config = self.config
        size = maxsize if maxsize is not None else config.max_queue
        limit = config.max_queue_bytes if max_bytes is DEFAULT else max_bytes
        channel = self._channel(config)  # bind first so the registry knows which channel feeds this slot
        _, registry = current_runtime().connection_actor()

        def closed(inlet: Inlet) -> None:
            registry.unsubscribe(inlet)

        sub = Subscription(events, maxsize=size, max_bytes=limit, include_state=include_state,
                           on_close=closed, accept=accept, sticky=sticky)
        registry.subscribe(self._slot, sub)
        channel.await_connected(Future())  # start connecting if idle
        return sub

    # -- composed features: each delegated in one line -----------------------------------

    def subscribe_session(self, session_key: str, *, agent_id: str | None = None, include_approvals: bool = False,
                          maxsize: int | None = None) -> Subscription:
        """A :class:`Subscription` of ``session.message`` events (and ``session.approval``
        with ``include_approvals``) for one session, kept across reconnects.

        Yields like :meth:`subscribe` (a Snapshot first, state changes, a new Snapshot after
        every reconnect: by then the subscription has been re-issued).  ``session_key`` is
        the gateway's key (``agent:main:work``; ``"main"`` means ``agent:main:main``).
        Closing the last subscription for a key unsubscribes on the gateway; if the gateway
        refuses the subscription, ``get()`` raises its error.

        All subscriptions of one canonical session share one server subscription (the
        gateway keeps one per connection and session), with approvals while any of them
        wants approvals (:mod:`gwclient._core.observers`).  An approvals subscription also
        gets the subscribe answer after every (re)connect, as an
        ``Event("sessions.messages.subscribe", {..., "approvalReplay": [...]})`` (2026.9;
        on older releases, which have no approvals, it is a plain subscription)."""
        _check_caller("subscribe_session")
        spec = session_messages(session_key, agent_id=agent_id, include_approvals=include_approvals)
        return self._subscribe(spec.events, maxsize, DEFAULT, accept=spec.accept, sticky=spec.sticky)

    def subscribe_sessions(self, *, maxsize: int | None = None,
                           list_params: dict[str, Any] | None = None) -> Subscription:
        """A :class:`Subscription` of ``sessions.changed`` events (the session list changed),
        kept across reconnects (``sessions.subscribe`` is re-issued on every new socket;
        the gateway has no unsubscribe for it: after the last close it is simply not
        re-issued).  After every (re)connect it also yields the subscribe answer, the
        roster snapshot, as an ``Event("sessions.subscribe", {"subscribed": True, "list":
        {...}})``, read with ``list_params`` (``sessions.list`` params; default
        ``{"limit": 60}``); releases before 2026.9 answer without a ``list``."""
        _check_caller("subscribe_sessions")
        spec = sessions_list(list_params)
        return self._subscribe(spec.events, maxsize, DEFAULT, sticky=spec.sticky)

    def chat(self, session_key: str, message: str, *, timeout: float | None = None,
             idempotency_key: str | None = None, queue_mode: str | None = None, **params: Any) -> Run:
        """Start a chat turn (``chat.send``) in ``session_key`` and return its :class:`Run`
        as soon as the gateway has started it.

        ``timeout`` (seconds) is the run's time limit, sent as ``timeoutMs``; the
        :class:`Run` never waits more than that plus ``GRACE_SECONDS``.
        ``idempotency_key`` defaults to a fresh UUID (it becomes the run id; re-sending the
        same key never starts a second run).  ``queue_mode`` (``"steer"``, ``"followup"``,
        ``"collect"``, ``"interrupt"``) overrides the session's queue mode for this message
        when the session is busy (openclaw 2026.9; an older gateway gets the message without
        it, with a warning): ``"followup"`` gives the message a turn and a reply of its own
        instead of steering it into the running turn (docs/runs.md, "Queued and steered
        messages").  Other keyword arguments are passed to ``chat.send`` as they are
        (gateway names: ``thinking``, ``attachments``...).
        Raises like ``request()`` if the run could not be started."""
        run = Run.chat(self, session_key, message, timeout=timeout, idempotency_key=idempotency_key,
                       queue_mode=queue_mode, **params)
        self._runs.add(run)  # drain() waits for it
        return run

    def agent(self, message: str, *, session_key: str | None = None, agent_id: str | None = None,
              timeout: float | None = None, idempotency_key: str | None = None, **params: Any) -> Run:
        """Start an agent turn (``agent``) and return its :class:`Run` as soon as the gateway
        has accepted it (the first of its two answers).

        ``session_key`` defaults to the agent's own; ``timeout`` (seconds, rounded up) is
        the run's time limit; other keyword arguments go to ``agent`` as they are
        (``provider``, ``model``, ``thinking``...).  Raises like ``request()``."""
        run = Run.agent(self, message, session_key=session_key, agent_id=agent_id, timeout=timeout,
                        idempotency_key=idempotency_key, **params)
        self._runs.add(run)  # drain() waits for it
        return run

    def wait_for_pairing(self, *, timeout: float | None = 300.0, poll_interval: float = 3.0,
                         on_waiting: Callable[[PairingRequired], None] | None = None) -> HelloOk:
        """Connect, waiting for an operator to approve this device if pairing is required
        (see :func:`gwclient._pairing.wait_for_pairing`): returns the hello-ok once approved,
        raises the last :class:`PairingRequired` when ``timeout`` runs out; ``shutdown()``
        from another thread ends the wait with :class:`ClientClosed`."""
        return wait_for_pairing(self, timeout=timeout, poll_interval=poll_interval, on_waiting=on_waiting)

    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters (:class:`ConnectionStats`): state,
        connects and reconnects, requests, answers and errors by code, pending requests,
        events, gaps, dropped events, bytes, the last connect's phases, the last ping's
        round trip.  Cheap (a copy under the channel's lock), never blocks on the network,
        callable from any thread, also from gwclient's own.  The counters belong to the
        socket of the current config; they start again at zero when a config change moves
        this connection to another socket."""
        if self._closed or self._bound is None:
            return idle_stats("closed" if self._closed else "idle")
        registry = current_runtime().registry
        stats = registry.stats(self._slot) if registry is not None else None
        return stats if stats is not None else idle_stats("idle")

    def _socket_number(self) -> int:
        """The number of the current socket (``stats().connection``; 0 before the first),
        for a request's span and log line: only the channel's lock, not a stats copy."""
        bound = self._bound
        return 0 if self._closed or bound is None else bound[1].status()[1]

    @classmethod
    def stats_all(cls) -> dict[str, ConnectionStats]:
        """The counters of every gateway socket of this process, keyed by its gateway's
        redacted URL (no credentials; a second socket for the same URL, another token say,
        gets ``" #2"`` appended)."""
        registry = current_runtime().registry
        return registry.stats_all() if registry is not None else {}

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
        registry = current_runtime().registry
        if registry is None or self._bound is None:
            return ConnectionState.IDLE, None
        return registry.status(self._slot)

    # -- shutting down ------------------------------------------------------------------

    def drain(self, timeout: float | None = 30.0) -> bool:
        """Stop taking requests (new ones raise :class:`ClientClosed`), let the requests in
        flight and the runs started on this connection finish within ``timeout`` seconds,
        then :meth:`shutdown`.  True if everything finished in time (False: the rest was
        cut off by the shutdown)."""
        _check_caller("drain")
        self._draining = threading.get_ident()  # this thread may still pump the runs' own requests
        bound = self._bound
        return drain(list(self._runs), bound[1] if bound is not None else None, self.shutdown, timeout)

    def request_scopes(self, scopes: Iterable[str], *, wait: bool = False, timeout: float | None = 300.0,
                       on_pending: Callable[[ScopeUpgrade], None] | None = None) -> ScopeUpgrade:
        """Ask the gateway's operator to grant this device more scopes; returns a
        :class:`~gwclient.ScopeUpgrade` (see :func:`gwclient._scopes.request_scopes`)."""
        return request_scopes(self, self._channel(), scopes, wait=wait, timeout=timeout, on_pending=on_pending)

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
        table = _facades()
        with table.lock:
            if table.facades.get(self._key) is self:
                del table.facades[self._key]
        rt = current_runtime()
        with rt.lock:
            actor = rt.actor
        if actor is None or not actor.is_alive():
            return
        try:
            refs = ask(actor, Release(self._slot))
        except ClientClosed:  # the registry is gone already (shutdown_all raced us)
            refs = []
        stop_channels(refs, deadline)
        with table.lock, rt.lock:
            # The last user is gone: stop the registry too, so no gwclient thread survives.
            last = rt.forget() if not table.facades and rt.actor is actor else None
        if last is not None:
            retire(last, deadline)

    @classmethod
    def shutdown_all(cls, timeout: float | None = 5.0) -> None:
        """Shut down every connection of this process and the connection actor; when it
        returns no gwclient thread is alive and no gateway socket is open."""
        _check_caller("shutdown_all")
        deadline = time.monotonic() + _budget(timeout)
        table = _facades()
        with table.lock:
            facades = list(table.facades.values())
            table.facades.clear()
        actor = current_runtime().forget()
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
    if _facades().facades or current_runtime().actor is not None:
        try:
            GatewayConnection.shutdown_all(timeout=2.0)
        except GatewayError:  # pragma: no cover - exiting anyway
            pass


atexit.register(_exit_handler)
# Python joins the non-daemon threads before atexit handlers run: one of them blocked in
# ``sub.get()`` or ``request(timeout=None)`` would hang the exit forever.  This CPython
# hook (the one concurrent.futures uses) runs when the main thread has finished, before
# that join: the blocked callers get ClientClosed and the socket is closed cleanly.
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_exit_handler)
