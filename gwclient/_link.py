"""The data plane of one channel: the session core under one lock, the current socket and
its reader thread, and the execution of the session's effects.

Who calls what (every method says its thread):

* user threads: :meth:`Link.submit`, :meth:`Link.await_connected`, :meth:`Link.cancel`:
  encode in the caller's thread, decide under the lock, send from the caller's thread
  (websocket-client serialises sends with its own lock).  No mailbox on this path.
* ``gwclient-reader-<n>``: opens the socket, then ``recv()`` -> session -> settles futures
  and publishes pushes straight into the bus (lock-protected subscription queues).
* ``gwclient-timer-<label>``: handshake, liveness and ping timers -> session.
* ``gwclient-channel-<label>`` (the actor): :meth:`start_attempt`, :meth:`stop`; it is told
  about attempt and connection endings and owns the reconnect policy.

Why one lock around the session rather than an actor: the session's decisions are short
and pure; a lock costs ~0.1 us where a mailbox hop costs a thread wake-up.  Effects run
outside the lock, in order.  Every socket has a generation number; a reader, a timer or
a report about a replaced socket is ignored.

Supervision: an unexpected exception on the reader (or in a timer callback) is logged
once with its traceback, the socket is abandoned, pending requests fail with
:class:`Disconnected`, and the actor reconnects: never a live-looking dead connection.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ._config import GatewayConfig
from ._device import DeviceIdentity, DeviceTokenStore, StoredDeviceToken
from ._effects import (
    AttemptEnded,
    CloseSocket,
    Connected,
    Effect,
    Lost,
    Ping,
    Publish,
    Send,
    SessionLimits,
    Settle,
    Timer,
)
from ._encode import encode_request
from ._errors import AuthRejected
from ._expiry import Expiries
from ._frames import ConnectChallenge
from ._handshake import Credentials, build_connect_params
from ._pushes import Push, StateChange
from ._session import Session
from ._timer import Timer as TimerThread
from ._timer import TimerHandle
from ._transport import OpenGuard, Transport, TransportClosed, TransportFactory, TransportOptions

__all__ = ["Link"]

log = logging.getLogger("gwclient.channel")

_reader_numbers = itertools.count(1)


class Link:
    def __init__(
        self,
        config: GatewayConfig,
        publish: Callable[[Push, int, bool], None],
        factory: TransportFactory,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self._publish = publish
        self._flush = flush
        #: Tells the owning actor about AttemptEnded / Lost / Connected (set by the actor).
        self.report: Callable[[int, Any], None] = lambda gen, what: None
        self._factory = factory
        self.label = label = f"{config.host}:{config.port}"
        self.session = Session(SessionLimits(
            connect_timeout=config.connect_timeout,
            liveness_timeout=config.liveness_timeout,
            ping_interval=config.ping_interval,
            label=config.redacted_url,
            scopes=config.scopes,
            unreachable_hint="" if config.ssh is None else (
                f" (remote mode over SSH to {config.ssh.host}: is the tunnel up? start it with "
                "ConnectionModeCoordinator, see docs/remote.md)"),
        ))
        self._lock = threading.Lock()
        self._gen = 0
        self._transport: Transport | None = None
        self._guard: OpenGuard | None = None
        self._credentials: Credentials | None = None
        self._timers: dict[str, TimerHandle] = {}
        self._timers_lock = threading.Lock()
        self.readers: list[threading.Thread] = []
        self.timer = TimerThread(label, on_fault=self._timer_fault)
        self.expiries = Expiries(self.timer, self.cancel)
        self.on_connect_needed: Callable[[], None] = lambda: None

    # -- user threads -----------------------------------------------------------------------

    def submit(self, request_id: str, method: str, data: bytes, waiter: Any,
               expect_final: bool = False) -> None:
        with self._lock:
            effects, need_connect = self.session.submit(request_id, method, data, waiter, expect_final)
            transport, gen = self._transport, self._gen
        if effects:
            self._run(effects, transport, gen)
        if need_connect:
            self.on_connect_needed()

    def await_connected(self, waiter: Future[Any]) -> None:
        with self._lock:
            effects, need_connect = self.session.await_connected(waiter)
            transport, gen = self._transport, self._gen
        self._run(effects, transport, gen)
        if need_connect:
            self.on_connect_needed()

    def cancel(self, request_id: str) -> None:
        with self._lock:
            self.session.cancel(request_id)

    def expire_later(self, seconds: float, request_id: str, method: str, fut: Future[Any]) -> None:
        """The timeout of a ``submit()`` (:mod:`gwclient._expiry`)."""
        self.expiries.add(seconds, request_id, method, fut)

    def add_sticky(self, key: object, method: str, params: Any) -> None:
        with self._lock:
            effects = self.session.add_sticky(key, method, params)
            transport, gen = self._transport, self._gen
        self._run(effects, transport, gen)

    def remove_sticky(self, key: object, unsubscribe: tuple[str, Any] | None = None) -> None:
        """One user of ``key`` fewer; the last one sends ``unsubscribe`` (method, params)."""
        with self._lock:
            last = self.session.remove_sticky(key)
            effects = self.session.fire(*unsubscribe) if last and unsubscribe is not None else []
            transport, gen = self._transport, self._gen
        self._run(effects, transport, gen)

    # -- actor thread -----------------------------------------------------------------------

    def start_attempt(self, attempt: int) -> None:
        guard = OpenGuard()
        with self._lock:
            if self.session.phase == "closed":
                return
            self._gen += 1
            gen = self._gen
            self._guard = guard
            effects = self.session.begin(attempt)
        reader = threading.Thread(target=self._read, args=(gen, guard),
                                  name=f"gwclient-reader-{next(_reader_numbers)}", daemon=True)
        self.readers = [t for t in self.readers if t.is_alive()] + [reader]
        self._run(effects, None, gen)
        reader.start()  # started last, after everything it reads exists

    def stop(self, error: Any) -> list[threading.Thread]:
        """Final: fail everyone, close the socket; returns the threads to join."""
        with self._lock:
            effects = self.session.shutdown(error)
            transport, gen = self._transport, self._gen
            guard = self._guard
        self._run(effects, transport, gen)
        if guard is not None:
            guard.abort()
        self.timer.stop()
        return [*self.readers, self.timer.thread]

    def publish(self, effects: list[Effect]) -> None:
        """Run effects the actor got from the session (state changes)."""
        with self._lock:
            transport, gen = self._transport, self._gen
        self._run(effects, transport, gen)

    def locked(self) -> threading.Lock:
        return self._lock

    # -- reader thread ----------------------------------------------------------------------

    def _read(self, gen: int, guard: OpenGuard) -> None:
        config = self.config
        options = TransportOptions(config.url, config.connect_timeout, config.tls_fingerprint,
                                   max_frame=config.max_frame_bytes, proxy=config.proxy)
        transport: Transport | None = None
        try:
            transport = self._factory(options, guard)
            # Through the share the identity and its signature are the share's business.
            creds = Credentials(None, None) if getattr(transport, "via_share", False) else _load_credentials(config)
        except BaseException as exc:  # network, TLS, upgrade, identity errors: all reported
            if transport is not None:
                transport.abort()
                transport.release()
            with self._lock:
                effects = self.session.open_failed(exc) if gen == self._gen else []
            self._run(effects, None, gen)
            return
        with self._lock:
            stale = gen != self._gen or guard.aborted
            if not stale:
                self._transport = transport
                self._credentials = creds
                effects = self.session.opened(self._connect_builder(creds), time.monotonic())
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
                        self.session.last_rx = now
                        effects = []
                    else:
                        effects = self.session.received(data, now)
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
                    effects = self.session.closed(code, reason)
            if current:
                self._run(effects, None, gen)

    def _connect_builder(self, creds: Credentials) -> Callable[[ConnectChallenge, str], bytes]:
        config = self.config
        via_share = creds.identity is None and getattr(self._transport, "via_share", False)

        def build(challenge: ConnectChallenge, request_id: str) -> bytes:
            if via_share:  # the share answers with its own connection's hello-ok
                return encode_request(request_id, "connect", {"share": True})
            params = build_connect_params(config, challenge, creds)
            return encode_request(request_id, "connect", params.to_wire())

        return build

    # -- timers -----------------------------------------------------------------------------

    def _on_timer(self, gen: int, name: str) -> None:
        with self._lock:
            if gen != self._gen:
                return
            transport = self._transport
            if transport is not None:  # bytes of a frame still arriving count as life
                self.session.last_rx = max(self.session.last_rx, transport.last_activity)
            effects = self.session.timer(name, time.monotonic())
        self._run(effects, transport, gen)

    def _timer_fault(self, exc: BaseException) -> None:
        """A timer callback raised (a bug): abandon the socket so nothing hangs."""
        self.abandon_current()

    def abandon_current(self) -> None:
        """Shut the current socket (or the open in progress) down; its reader reports the
        end, pending requests fail, and the actor reconnects (any thread)."""
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
                if transport is not None:
                    transport.set_max_frame(max(effect.hello.policy.max_payload, self.config.max_frame_bytes))
                self._persist_device_token(effect.hello)
                self.report(gen, effect)
            elif isinstance(effect, CloseSocket):
                self._abandon(gen, effect)
            elif isinstance(effect, Ping):
                if transport is not None:
                    transport.ping_nowait()
            elif isinstance(effect, (AttemptEnded, Lost)):
                self.report(gen, effect)
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
        try:
            DeviceTokenStore(cfg.effective_state_dir).save(
                cfg.gateway_key, creds.identity.device_id, role, auth.device_token, scopes, auth.issued_at_ms)
        except OSError as exc:
            log.warning("could not store the device token: %s", exc)

    def forget_device_token(self) -> None:
        """The gateway rejected the stored device token (actor thread, rare path)."""
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
    stored = None
    if not (config.token or config.password):
        stored = DeviceTokenStore(state_dir).load(config.gateway_key, identity.device_id, config.role)
    return Credentials(identity, stored)
