"""The data plane of one channel: the connection core under one lock, the current socket
and its reader thread, and the execution of the core's effects.

Who calls what (every method says its thread):

* user threads: :meth:`Channel.submit`, :meth:`Channel.await_connected`,
  :meth:`Channel.connect`, :meth:`Channel.cancel`, :meth:`Channel.retry`: encode in the
  caller's thread, decide under the lock (:meth:`Channel._decide`), send from the caller's
  thread (the transport serialises sends, combining the frames queued meanwhile).  No
  mailbox on this path.
* ``gwclient-reader-<n>``: opens the socket, then ``recv()`` -> core -> settles futures and
  publishes pushes straight into the registry (lock-protected subscription queues).
* ``gwclient-timer-<label>``: handshake, liveness, ping and **reconnect** timers -> core.
* ``gwclient-channel-<label>`` (the actor): :meth:`start_reader` when the core asks for an
  attempt (:class:`OpenSocket`), :meth:`stop`.

The core decides everything, reconnects included (it computes the delay from the retry
policy and arms the ``reconnect`` timer); this shell only runs what it is told.  Nothing
outside this class touches the core or its lock.

Why one lock around the core rather than an actor: its decisions are short and pure; a
lock costs ~0.1 us where a mailbox hop costs a thread wake-up.  Effects run outside the
lock, in order.  Every socket has a generation number; a reader or a timer of a replaced
socket is ignored.

Supervision: an unexpected exception on the reader (or in a timer callback) is logged
once with its traceback, the socket is abandoned, pending requests fail with
:class:`Disconnected`, and the core reconnects: never a live-looking dead connection.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .._config.config import GatewayConfig
from .._config.device import DeviceIdentity, DeviceTokenStore, StoredDeviceToken
from .._core.connection import ConnectionCore
from .._core.effects import (
    AttemptEnded,
    CloseSocket,
    Connected,
    Effect,
    OpenSocket,
    Ping,
    Publish,
    Send,
    SessionLimits,
    Settle,
    StickyAnswer,
    Timer,
)
from .._core.encode import encode_request
from .._core.frames import ConnectChallenge
from .._core.handshake import Credentials, build_connect_params
from .._core.protocol import takes_traceparent
from .._core.pushes import ConnectionState, Push, StateChange
from .._core.retry import RetryPolicy
from .._core.sessions import Sticky
from .._core.stats import ConnectionStats
from .._errors import AuthRejected
from .auth_retry import DeviceTokenRetry, is_trusted_endpoint
from .timer import Expiries, TimerHandle
from .timer import Timer as TimerThread
from .transport import OpenGuard, Transport, TransportClosed, TransportFactory, TransportOptions

__all__ = ["Channel", "ChannelHooks"]

log = logging.getLogger("gwclient.channel")

_reader_numbers = itertools.count(1)


class ChannelHooks:
    """What a channel calls outside itself, handed in at construction (all called outside
    the channel's lock, never with user code on the stack).  The defaults do nothing."""

    def publish(self, push: Push, size: int, notify: bool) -> None:
        """A push for this channel's subscribers (reader, timer or user thread)."""

    def flush(self) -> None:
        """Wake the consumers of pushes published with ``notify=False`` (reader thread)."""

    def sticky_answer(self, key: object, outcome: Any) -> None:
        """The gateway answered (or refused) the sticky request ``key`` (reader thread)."""

    def run_attempt(self, attempt: OpenSocket) -> None:
        """The core asked for an attempt: start :meth:`Channel.start_reader` on the actor."""


class Channel:
    def __init__(self, config: GatewayConfig, hooks: ChannelHooks, factory: TransportFactory) -> None:
        self.config = config
        self._hooks = hooks
        self._publish = hooks.publish
        self._flush = hooks.flush
        self._factory = factory
        self.label = label = f"{config.host}:{config.port}"
        self._token_retry = DeviceTokenRetry(config)
        self._core = ConnectionCore(SessionLimits(
            connect_timeout=config.connect_timeout,
            liveness_timeout=config.liveness_timeout,
            ping_interval=config.ping_interval,
            label=config.redacted_url,
            scopes=config.scopes,
            unreachable_hint="" if config.ssh is None else (
                f" (remote mode over SSH to {config.ssh.host}: is the tunnel up? start it with "
                "ConnectionModeCoordinator, see docs/remote.md)"),
            retry=config.retry or RetryPolicy(),
            loopback=config.is_loopback,
        ), retry_refusal=self._retry_refusal)
        self._lock = threading.Lock()
        self._gen = 0
        self._transport: Transport | None = None
        self._guard: OpenGuard | None = None
        self._credentials: Credentials | None = None
        self._timers: dict[str, TimerHandle] = {}
        self._attempt_token = 0
        self._timers_lock = threading.Lock()
        self.readers: list[threading.Thread] = []
        self.timer = TimerThread(label, on_fault=self._timer_fault)
        self.expiries = Expiries(self.timer, self.cancel)
        #: Scopes granted by a scope upgrade (_scopes.py): asked for instead of config.scopes.
        self.granted_scopes: tuple[str, ...] | None = None
        #: submit() futures waiting to be re-sent after a busy refusal (_engine/busy.py):
        #: failed by stop(), since the timer that would re-send them stops too.
        self.parked: set[Future[Any]] = set()
        #: Whether the gateway takes a ``traceparent`` on request frames, from its hello-ok
        #: (releases before 2026.9 refuse one); True before the first hello.
        self.takes_traceparent = True

    # -- user threads -----------------------------------------------------------------------

    def _decide(self, decide: Callable[..., list[Effect]], *args: Any) -> None:
        """Ask the core under the lock (starting the attempt it began, if any), then run
        its effects outside the lock: the one way user threads drive the channel."""
        with self._lock:
            effects = decide(*args)
            if self._core.attempt_token != self._attempt_token:
                self._new_attempt()
            transport, gen = self._transport, self._gen
        if effects:
            self._run(effects, transport, gen)

    def submit(self, request_id: str, method: str, data: bytes, waiter: Any,
               expect_final: bool = False) -> None:
        self._decide(self._core.submit, request_id, method, data, waiter, expect_final)

    def await_connected(self, waiter: Future[Any]) -> None:
        """``waiter`` gets the hello-ok once connected (or the refusal); starts connecting."""
        self._decide(self._core.await_connected, waiter)

    def cancel(self, request_id: str) -> bool:
        """Forget a request (its caller gave up); True if its frame had been sent."""
        with self._lock:
            return self._core.cancel(request_id)

    def connect(self) -> None:
        """Start connecting if the channel was never started (nobody waits for it)."""
        self._decide(self._core.connect)

    def retry(self) -> None:
        """Connect now (leave PAUSED, or cut a reconnect wait short)."""
        self._decide(self._core.retry)

    def stats(self, dropped: int) -> ConnectionStats:
        """A frozen snapshot of this channel's counters (``dropped``: the registry's count of
        events its subscribers' queues dropped); any thread, never blocks on the network."""
        with self._lock:
            core = self._core
            return core.stats.snapshot(state=core.state.value, connection=core.connections,
                                       pending=len(core.pending) + len(core.waiting), dropped=dropped,
                                       now=time.monotonic(), wall=time.time())

    def in_flight(self) -> int:
        """Requests sent and not answered, plus those waiting for the connect; any thread."""
        with self._lock:
            return len(self._core.pending) + len(self._core.waiting)

    def adopt_scopes(self, scopes: tuple[str, ...], device_token: str | None) -> None:
        """A scope upgrade was approved: store the rotated device token, ask for ``scopes``
        from the next connect on, and replace the socket (user thread; _scopes.py)."""
        creds = self._credentials
        config = self.config
        if device_token and creds is not None and creds.identity is not None:
            try:
                DeviceTokenStore(config.effective_state_dir).save(
                    config.gateway_key, creds.identity.device_id, config.role, device_token, scopes, None)
            except OSError as exc:
                log.warning("could not store the device token: %s", exc)
        self.granted_scopes = scopes
        self.abandon_current()

    def status(self) -> tuple[ConnectionState, int]:
        """The state now and the number of the current (or last) socket; any thread."""
        with self._lock:
            return self._core.state, self._core.connections

    def expire_later(self, seconds: float, request_id: str, method: str, fut: Future[Any]) -> None:
        """The timeout of a ``submit()`` (:mod:`gwclient._engine.timer`)."""
        self.expiries.add(seconds, request_id, method, fut)

    def add_sticky(self, sticky: Sticky) -> Callable[[], None]:
        """One more user of ``sticky`` (counted by the core, which sends it if it is the
        first and the socket is up).  Returns what is left to do, outside any caller lock:
        the registry decides under its own lock and sends after releasing it."""
        with self._lock:
            effects = self._core.add_sticky(sticky.key, sticky.method, sticky.params)
            transport, gen = self._transport, self._gen
        return self._later(effects, transport, gen)

    def remove_sticky(self, sticky: Sticky) -> Callable[[], None]:
        """One user fewer; the last one sends the unsubscribe (a session observer's departure
        may downgrade the shared subscription instead).  Returns the sending, like
        :meth:`add_sticky`."""
        with self._lock:
            effects = self._core.release_sticky(sticky.key, sticky.unsubscribe)
            transport, gen = self._transport, self._gen
        return self._later(effects, transport, gen)

    def _retry_refusal(self, error: Any) -> bool:
        """The core asks (under the lock) whether a refused connect is the one device-token
        retry after ``AUTH_TOKEN_MISMATCH`` (_engine/auth_retry.py)."""
        creds = self._credentials
        return self._token_retry.should_retry(error, creds.stored if creds is not None else None)

    def _later(self, effects: list[Effect], transport: Transport | None, gen: int) -> Callable[[], None]:
        def run() -> None:
            self._run(effects, transport, gen)

        return run

    # -- actor thread -----------------------------------------------------------------------

    def _new_attempt(self) -> None:
        """Under the lock, right after the core began an attempt: the attempt's socket gets
        its generation now, so the effects that come with it (the handshake timer) belong
        to it, before its reader even starts."""
        self._attempt_token = self._core.attempt_token
        self._gen += 1
        self._guard = OpenGuard()

    def start_reader(self, attempt: OpenSocket) -> None:
        """Run the attempt the core asked for: a new reader thread opens the socket.  An
        attempt the core has given up meanwhile (shutdown, a newer attempt) is dropped."""
        with self._lock:
            if self._core.phase != "opening" or self._attempt_token != attempt.token or self._guard is None:
                return
            gen, guard = self._gen, self._guard
        reader = threading.Thread(target=self._read, args=(gen, guard),
                                  name=f"gwclient-reader-{next(_reader_numbers)}", daemon=True)
        self.readers = [t for t in self.readers if t.is_alive()] + [reader]
        reader.start()  # started last, after everything it reads exists

    def stop(self, error: Any) -> list[threading.Thread]:
        """Final: fail everyone, close the socket; returns the threads to join."""
        with self._lock:
            effects = self._core.shutdown(error)
            transport, gen = self._transport, self._gen
            guard = self._guard
        self._run(effects, transport, gen)
        for fut in list(self.parked):
            _settle(fut, copy.copy(error))
        if guard is not None:
            guard.abort()
        self.timer.stop()
        return [*self.readers, self.timer.thread]

    # -- reader thread ----------------------------------------------------------------------

    def _read(self, gen: int, guard: OpenGuard) -> None:
        config = self.config
        options = TransportOptions(config.url, config.connect_timeout, config.tls_fingerprint,
                                   max_frame=config.max_frame_bytes, proxy=config.proxy, headers=config.headers)
        transport: Transport | None = None
        try:
            # The state files first (a broken one is a paused ConfigError before any socket
            # opens); through the share the identity and its signature are the share's
            # business, so with the share on they are read only for a direct socket.
            creds = _load_credentials(config) if config.share == "off" else None
            started = time.monotonic()
            transport = self._factory(options, guard)
            if creds is None:
                creds = Credentials(None, None) if getattr(transport, "via_share", False) \
                    else _load_credentials(config)
        except BaseException as exc:  # network, TLS, upgrade, identity errors: all reported
            if transport is not None:
                transport.abort()
                transport.release()
            with self._lock:
                effects = self._core.open_failed(exc) if gen == self._gen else []
            self._run(effects, None, gen)
            return
        with self._lock:
            stale = gen != self._gen or guard.aborted
            if not stale:
                self._transport = transport
                self._credentials = creds
                opened = time.monotonic()
                self._core.stats.opened(started, guard.marks, opened)
                effects = self._core.opened(self._connect_builder(creds), opened)
        if stale:
            transport.abort()
            transport.release()
            return
        code: int | None = None
        reason = ""
        deferred = 0  # frames whose pushes still wait for their consumers' wake-up
        try:
            self._run(effects, transport, gen)
            while True:
                data = transport.recv()
                now = time.monotonic()
                with self._lock:
                    if gen != self._gen:
                        break
                    if data is None:
                        self._core.last_rx = now
                        self._core.stats.control_frame(getattr(transport, "pong_at", 0.0))
                        effects = []
                    else:
                        effects = self._core.received(data, now)
                if effects and self._run(effects, transport, gen, defer=True):
                    deferred += 1
                # Why defer: with consumers that keep up, waking each one per event costs a
                # thread switch per event and subscriber; one wake-up per burst (once no
                # more bytes are waiting, or every 256 frames) keeps the latency bounded.
                if deferred and (deferred >= 256 or not transport.has_pending()):
                    self._flush()
                    deferred = 0
        except TransportClosed as closed:
            code, reason = closed.code, closed.reason
            if code in (1003, 1009):  # our refusal of a frame: tell the gateway why
                transport.close_nowait(code, reason)
                code, reason = None, f"closed by gwclient: {reason}"
        except BaseException as exc:
            # Supervision: a bug or a hostile frame must not leave a dead reader behind a
            # connection that looks alive.  Logged once; the socket is replaced.
            log.exception("reader for %s stopped by an unexpected error; reconnecting", self.label)
            code, reason = None, f"internal error: {type(exc).__name__}"
        finally:
            if deferred:
                self._flush()
            transport.abort()
            transport.release()
            with self._lock:
                current = gen == self._gen
                if current:
                    self._transport = None
                    effects = self._core.closed(code, reason)
            if current:
                self._run(effects, None, gen)

    def _connect_builder(self, creds: Credentials) -> Callable[[ConnectChallenge, str], bytes]:
        config = self.config
        via_share = creds.identity is None and getattr(self._transport, "via_share", False)

        def build(challenge: ConnectChallenge, request_id: str) -> bytes:
            if via_share:  # the share answers with its own connection's hello-ok
                return encode_request(request_id, "connect", {"share": True})
            params = build_connect_params(config, challenge, creds, scopes_override=self.granted_scopes,
                                          device_token_retry=self._token_retry.take())
            return encode_request(request_id, "connect", params.to_wire())

        return build

    # -- timers -----------------------------------------------------------------------------

    def _on_timer(self, gen: int, name: str) -> None:
        with self._lock:
            if gen != self._gen and name != "reconnect":  # the reconnect timer is the channel's, not a socket's
                return
            transport = self._transport
            if transport is not None:  # bytes of a frame still arriving count as life
                self._core.last_rx = max(self._core.last_rx, transport.last_activity)
            effects = self._core.timer(name, time.monotonic())
            if self._core.attempt_token != self._attempt_token:  # the reconnect timer began one
                self._new_attempt()
            gen = self._gen if name == "reconnect" else gen
        self._run(effects, transport, gen)

    def _timer_fault(self, exc: BaseException) -> None:
        """A timer callback raised (a bug): abandon the socket so nothing hangs."""
        self.abandon_current()

    def abandon_current(self) -> None:
        """Shut the current socket (or the open in progress) down; its reader reports the
        end, pending requests fail, and the core reconnects (any thread)."""
        with self._lock:
            transport, guard = self._transport, self._guard
        if transport is not None:
            transport.abort()
        elif guard is not None:
            guard.abort()

    # -- effects (never under the lock) -----------------------------------------------------

    def _run(self, effects: list[Effect], transport: Transport | None, gen: int, *, defer: bool = False) -> bool:
        """Execute ``effects`` in order; with ``defer`` pushes are published without waking
        their consumers (the reader flushes).  True if anything was published."""
        published = False
        for effect in effects:
            # A rejected device token is cleared before anyone hears of the refusal.
            if isinstance(effect, AttemptEnded) and isinstance(effect.error, AuthRejected) \
                    and effect.error.detail_code == "AUTH_DEVICE_TOKEN_MISMATCH":
                self.forget_device_token()
        for effect in effects:
            if isinstance(effect, Settle):
                _settle(effect.waiter, effect.outcome)
            elif isinstance(effect, Send):
                if transport is not None:
                    try:
                        transport.send(effect.data)
                    except TransportClosed:
                        transport.abort()  # the reader reports the close and fails pending
                    except Exception:
                        # A frame may be half written: the stream is unusable for everyone.
                        # Logged once; the reader reports the close, pending requests fail.
                        log.exception("sending on %s failed unexpectedly; replacing the socket", self.label)
                        transport.abort()
            elif isinstance(effect, Publish):
                if isinstance(effect.push, StateChange):
                    log.debug("channel %s -> %s %s", self.label, effect.push.state.value, effect.push.detail)
                self._publish(effect.push, effect.size, not defer)
                published = True
            elif isinstance(effect, Timer):
                self._arm(gen, effect.name, effect.delay)
            elif isinstance(effect, Connected):
                self.takes_traceparent = takes_traceparent(effect.hello.server.version)
                if transport is not None:
                    transport.set_max_frame(max(effect.hello.policy.max_payload, self.config.max_frame_bytes))
                self._token_retry.connected()
                self._persist_device_token(effect.hello)
            elif isinstance(effect, CloseSocket):
                self._abandon(gen, effect)
            elif isinstance(effect, Ping):
                if transport is not None:
                    self._core.stats.ping_sending(time.monotonic())  # the timer thread: the only writer
                    transport.ping_nowait()
            elif isinstance(effect, OpenSocket):
                self._hooks.run_attempt(effect)
            elif isinstance(effect, StickyAnswer):
                self._hooks.sticky_answer(effect.key, effect.outcome)
        return published

    def _arm(self, gen: int, name: str, delay: float | None) -> None:
        with self._timers_lock:
            self.timer.cancel(self._timers.pop(name, None))
            if delay is not None:
                self._timers[name] = self.timer.call_later(delay, lambda: self._on_timer(gen, name))

    def _abandon(self, gen: int, effect: CloseSocket) -> None:
        """The session gave this socket up: later reports about it are stale."""
        with self._lock:
            if gen != self._gen:
                return
            self._gen += 1
            transport, guard = self._transport, self._guard
            self._transport = None
        if transport is not None:
            transport.close_nowait(effect.code, effect.reason)
        elif guard is not None:
            guard.abort()

    def _persist_device_token(self, hello: Any) -> None:
        """On the reader thread, before connect() waiters are settled (they promise the
        token is stored when they return)."""
        creds = self._credentials
        auth = hello.auth
        if creds is None or creds.identity is None or auth is None or not auth.device_token:
            return
        cfg = self.config
        role = auth.role or cfg.role
        scopes = tuple(auth.scopes)
        creds.stored = StoredDeviceToken(auth.device_token, role, scopes, auth.issued_at_ms)
        # The handoff of a bootstrap connect (more roles' tokens) only over a trusted transport.
        extra = auth.device_tokens if is_trusted_endpoint(cfg) else []
        if auth.device_tokens and not extra:
            log.warning("not storing the %d handed-over device token(s): %s is not a trusted transport "
                        "(loopback, pinned wss:// or SSH tunnel)", len(auth.device_tokens), cfg.redacted_url)
        try:
            store = DeviceTokenStore(cfg.effective_state_dir)
            store.save(cfg.gateway_key, creds.identity.device_id, role, auth.device_token, scopes, auth.issued_at_ms)
            for entry in extra:
                issued = entry.get("issuedAtMs")
                store.save(cfg.gateway_key, creds.identity.device_id, entry["role"], entry["deviceToken"],
                           tuple(s for s in entry["scopes"] if isinstance(s, str)),
                           issued if isinstance(issued, int) else None)
        except OSError as exc:
            log.warning("could not store the device token: %s", exc)

    def forget_device_token(self) -> None:
        """The gateway rejected the stored device token (reader thread, rare path)."""
        creds = self._credentials
        if creds is None or creds.identity is None or creds.stored is None:
            return
        cfg = self.config
        role = creds.stored.role
        creds.stored = None
        log.warning("the gateway rejected the stored device token; it was cleared")
        try:
            DeviceTokenStore(cfg.effective_state_dir).clear(cfg.gateway_key, creds.identity.device_id, role)
        except OSError as exc:  # pragma: no cover - disk trouble
            log.warning("could not clear the device token: %s", exc)


def _settle(fut: Any, outcome: Any) -> None:
    """Complete a caller's future once (it may be done already: the caller timed out)."""
    if fut.done():
        return
    try:
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)
    except Exception:  # InvalidStateError: a racing cancel/timeout
        pass


def _load_credentials(config: GatewayConfig) -> Credentials:
    """Reader thread: device identity and stored device token (file I/O)."""
    if not config.device_identity:
        return Credentials(None, None)
    state_dir = config.effective_state_dir
    identity = DeviceIdentity.load_or_create(state_dir)
    # Loaded also with a shared token: the one retry after AUTH_TOKEN_MISMATCH needs it.  Strict
    # without a shared secret: the stored token is the credential then, so a broken file is
    # a ConfigError naming it (paused), not an anonymous connect; with one, a broken file
    # is only ignored (a warning), the shared secret connects.
    strict = not (config.token or config.password)
    stored = DeviceTokenStore(state_dir).load(config.gateway_key, identity.device_id, config.role, strict=strict)
    return Credentials(identity, stored)
