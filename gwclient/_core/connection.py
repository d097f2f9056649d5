"""The socket-free connection core of one gateway channel (in the spirit of websockets'
``protocol.py``): inputs in, effects out; no sockets, no threads, no clock reads.

The threaded shell (:mod:`gwclient._engine.channel`) owns a lock around it and executes
the effects it returns, in order: send these bytes, settle these waiters, publish these
pushes, arm or cancel this timer, close the socket, open a socket for attempt *n*.

Inputs: :meth:`~ConnectionCore.connect` (someone needs the socket),
:meth:`~ConnectionCore.opened` (the upgrade succeeded), :meth:`~ConnectionCore.received`
(one text frame), :meth:`~ConnectionCore.submit` (a request), :meth:`~ConnectionCore.closed`
/ :meth:`~ConnectionCore.open_failed` (the socket ended), :meth:`~ConnectionCore.timer` (a
timer fired), :meth:`~ConnectionCore.retry` (connect now), :meth:`~ConnectionCore.shutdown`.

It owns the whole connection state machine: the phase, the :class:`ConnectionState`
(RECONNECTING included), the attempt count and the retry delay (computed from the injected
:class:`~gwclient.RetryPolicy`, as websockets keeps ``backoff()`` in its sans-I/O module),
the pending table, the hello checks and clamps, seq tracking, the pre-hello event bound,
the pause decision and the sticky requests (each counted once, here).  A reconnect, from
``Lost`` to the next attempt, is two inputs: :meth:`~ConnectionCore.closed` (state
RECONNECTING and ``Timer("reconnect", d)``), then :meth:`~ConnectionCore.timer`
``"reconnect"`` (state CONNECTING and :class:`OpenSocket`, which the shell runs).

State machine (published as :class:`StateChange` pushes)::

    IDLE --connect()--> CONNECTING --hello-ok--> CONNECTED
    CONNECTING --retryable failure--> RECONNECTING --timer "reconnect"--> CONNECTING
    CONNECTED --socket closed / liveness timeout--> RECONNECTING
    CONNECTING --non-recoverable refusal--> PAUSED --retry()--> CONNECTING
    any --shutdown()--> CLOSED
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import (
    ChannelRetired,
    ClientClosed,
    ConfigError,
    ConnectError,
    Disconnected,
    GatewayError,
    GatewayTimeout,
    ProtocolError,
    ProtocolMismatch,
    RequestError,
)
from .effects import (
    RESTART_HINT_MAX_MS,
    AttemptEnded,
    CloseSocket,
    Connected,
    Effect,
    Lost,
    OpenSocket,
    Ping,
    Publish,
    Send,
    SessionLimits,
    Settle,
    StickyAnswer,
    Timer,
    clamp_hello,
)
from .encode import encode_request
from .frames import PROTOCOL_VERSION, ConnectChallenge, EventFrame, HelloOk, ResponseFrame, decode_frame
from .held import held_size
from .observers import SUBSCRIBE, UNSUBSCRIBE, SessionObservers, answer_event_payload, sticky_params
from .protocol import PendingTable, SeqTracker, connect_error_from_close, error_from_shape, new_request_id
from .pushes import ConnectionState, Event, Snapshot, StateChange
from .stats import ChannelCounters, ConnectPhases

__all__ = ["ConnectionCore", "describe"]

log = logging.getLogger("gwclient.session")
_DISCONNECTED = Disconnected("")  # the key pending requests lost with the socket are counted under



@dataclass(frozen=True)
class _StickyWaiter:
    """The pending-table waiter of a sticky request: nobody blocks on it, but its answer
    goes to the subscribers of ``key`` (an error ends them: they must hear of a refusal)."""

    key: object
    first: bool
    params: Any = None


@dataclass
class _Waiting:
    method: str
    data: bytes
    waiter: Any
    expect_final: bool


class ConnectionCore:
    """One channel's protocol state across its sockets.  Not thread-safe: the shell holds
    its lock around every call."""

    def __init__(self, limits: SessionLimits, *,
                 retry_refusal: Callable[[ConnectError], bool] = lambda error: False) -> None:
        self.limits = limits
        #: Asked about a refused connect (under the shell's lock): True makes it a retry,
        #: not a pause (the one device-token retry on AUTH_TOKEN_MISMATCH,
        #: :mod:`gwclient._engine.auth_retry`).
        self.retry_refusal = retry_refusal
        self.phase = "idle"  # idle | opening | challenge | hello | connected | closed
        self.state = ConnectionState.IDLE
        self.pending: PendingTable[Any] = PendingTable()
        self.waiting: dict[str, _Waiting] = {}
        self.connect_waiters: list[Any] = []
        self.sticky: dict[object, tuple[str, Any]] = {}
        self._sticky_users: dict[object, int] = {}
        #: Session observers coalesced per canonical session, approvals as an upgrade of the
        #: plain subscription (the gateway keeps one entry per connection and session).
        self._observers = SessionObservers()
        self.seq = SeqTracker()
        self.hello: HelloOk | None = None
        self.paused: GatewayError | None = None
        self.ever_connected = False
        self.connections = 0
        self.last_rx = 0.0
        self._early: list[tuple[EventFrame, int]] = []
        self._early_dropped = 0
        self._connect_id: str | None = None
        self._build_connect: Callable[[ConnectChallenge, str], bytes] | None = None
        self._restart_ms: int | None = None
        self._closed_error: GatewayError | None = None
        #: Failed attempts since the last hello-ok (the retry policy's ``n``).
        self.attempts = 0
        #: Identifies the attempt in progress (an :class:`OpenSocket` for an older one is stale).
        self.attempt_token = 0
        self.stats = ChannelCounters()  # plain ints, written under the shell's lock (stats.py)

    # -- state ----------------------------------------------------------------------------

    def set_state(self, state: ConnectionState, detail: str = "", error: BaseException | None = None,
                  phases: ConnectPhases | None = None) -> list[Effect]:
        if state == self.state and error is None:
            return []
        self.state = state
        return [Publish(StateChange(state, detail, error, phases))]

    @property
    def liveness(self) -> float:
        if self.limits.liveness_timeout is not None:
            return self.limits.liveness_timeout
        tick = self.hello.policy.tick_interval_ms if self.hello is not None else 30_000
        return 2 * tick / 1000.0

    @property
    def ping_interval(self) -> float | None:
        if self.limits.ping_interval is not None:
            return self.limits.ping_interval
        tick = (self.hello.policy.tick_interval_ms if self.hello is not None else 30_000) / 1000.0
        if self.limits.liveness_timeout is not None and self.limits.liveness_timeout < 2 * tick:
            return self.limits.liveness_timeout / 3
        return None

    def refusal(self) -> GatewayError | None:
        if self.phase == "closed":
            if isinstance(self._closed_error, Disconnected):  # retired by a config change
                return ChannelRetired("this channel was retired by a config change")
            return ClientClosed("the gateway connection was shut down")
        if self.paused is not None:
            return copy.copy(self.paused)
        return None

    # -- attempts -------------------------------------------------------------------------

    def connect(self) -> list[Effect]:
        """Someone needs the socket: start an attempt if the channel was never started."""
        if self.phase == "idle" and self.state == ConnectionState.IDLE:
            return self._begin()
        return []

    def retry(self) -> list[Effect]:
        """Connect now: leave PAUSED, or cut a reconnect wait short (``reconnect()``)."""
        if self.phase == "idle" and self.state in (ConnectionState.PAUSED, ConnectionState.RECONNECTING,
                                                   ConnectionState.IDLE):
            return self._begin()
        return []

    def _begin(self) -> list[Effect]:
        """A new attempt starts: the shell opens a socket for it."""
        self.phase = "opening"
        self.paused = None
        self.attempt_token += 1
        self.stats.connects += 1
        attempt = self.attempts + 1
        return [Timer("reconnect", None),
                *self.set_state(ConnectionState.CONNECTING, f"attempt {attempt}"),
                Timer("handshake", self.limits.connect_timeout),
                OpenSocket(attempt, self.attempt_token)]

    def _schedule(self, delay: float, why: str) -> list[Effect]:
        """RECONNECTING: the next attempt starts when the ``reconnect`` timer fires."""
        return [*self.set_state(ConnectionState.RECONNECTING, f"retry in {delay:.2f} s: {why}"),
                Timer("reconnect", delay)]

    def opened(self, build_connect: Callable[[ConnectChallenge, str], bytes], now: float) -> list[Effect]:
        """The upgrade succeeded.  ``build_connect(challenge, request_id)`` encodes the
        ``connect`` request (it signs with the device key: impure, but given in)."""
        self.phase = "challenge"
        self._build_connect = build_connect
        self.seq.reset()
        self._early.clear()
        self._early_dropped = 0
        self._restart_ms = None
        self.last_rx = now
        return [Timer("handshake", self.limits.connect_timeout)]

    def open_failed(self, error: BaseException) -> list[Effect]:
        if self.phase != "opening":
            return []
        return self._attempt_failed(error, transport=True)

    def _attempt_failed(self, error: BaseException, *, transport: bool, close_code: int | None = None) -> list[Effect]:
        self.phase = "idle"
        out: list[Effect] = [Timer("handshake", None)]
        paused = (isinstance(error, ConnectError) and error.pauses_reconnect) or isinstance(error, ConfigError)
        if paused:
            assert isinstance(error, GatewayError)
            self.paused = error
            self.stats.pauses += 1
            log.warning("gateway connection paused: %s", error)
            out += self.set_state(ConnectionState.PAUSED, str(error), error)
            out += self._fail_waiting(error)
        elif transport and not self.ever_connected:
            # A script's first request should not wait out its whole timeout when nothing
            # listens: fail the callers now, keep retrying in the background.
            out += self._fail_waiting(Disconnected(f"cannot connect to the gateway at {self.limits.label}: "
                                                   f"{describe(error)}{self.limits.unreachable_hint}",
                                                   request_sent=False))
        retry_after = error.retry_after_ms if isinstance(error, ConnectError) else None
        if not paused:
            refused = isinstance(error, ConnectionRefusedError) or close_code in (1012, 1013)
            delay = self.limits.retry.after_failure(self.attempts, retry_after_ms=retry_after,
                                                    loopback=self.limits.loopback, refused=refused)
            self.attempts += 1
            out += self._schedule(delay, describe(error))
        out.append(AttemptEnded(error, paused, transport, retry_after, close_code))
        return out

    def _fail_waiting(self, error: BaseException) -> list[Effect]:
        self.stats.failed(error, len(self.waiting))
        out: list[Effect] = [Settle(w.waiter, copy.copy(error)) for w in self.waiting.values()]
        out += [Settle(fut, copy.copy(error)) for fut in self.connect_waiters]
        self.waiting.clear()
        self.connect_waiters = []
        return out

    # -- frames ---------------------------------------------------------------------------

    def received(self, data: bytes | str, now: float) -> list[Effect]:
        self.last_rx = now
        self.stats.bytes_in += len(data)
        try:
            frame = decode_frame(data)
        except ProtocolError as exc:  # (deep nesting included: the decoder says so)
            log.warning("ignoring a malformed frame from %s: %s", self.limits.label, exc)
            return []
        if isinstance(frame, EventFrame):
            return self._on_event(frame, held_size(data))  # memory held, not wire bytes
        if isinstance(frame, ResponseFrame):
            if self.phase == "hello" and frame.id == self._connect_id:
                return self._on_hello(frame)
            done = self.pending.resolve(frame)
            if done is None:
                return self._interim(frame)
            entry, outcome = done
            self.stats.answered(outcome)
            if isinstance(entry.waiter, _StickyWaiter):
                return self._sticky_answered(entry.waiter, entry.method, outcome)
            if entry.waiter is None:  # fire-and-forget (an unsubscribe)
                if isinstance(outcome, BaseException):
                    log.debug("%s failed: %s", entry.method, outcome)
                return []
            return [Settle(entry.waiter, outcome)]
        log.debug("ignoring a request frame from the gateway (%s)", frame.method)
        return []

    def _interim(self, frame: ResponseFrame) -> list[Effect]:
        """The first answer of a two-stage request, for a waiter that asks for it (the
        share relays both answers to the process that sent the request)."""
        entry = self.pending.get(frame.id)
        interim = getattr(entry.waiter, "interim", None) if entry is not None else None
        if interim is None or entry is None or entry.accepted is not frame.payload:
            return []
        return [Settle(interim, frame.payload)]

    def _on_event(self, frame: EventFrame, size: int) -> list[Effect]:
        if self.phase == "connected":
            return self._deliver(frame, size)
        if self.phase == "challenge" and frame.event == "connect.challenge":
            return self._on_challenge(frame)
        if self.phase in ("challenge", "hello"):
            if len(self._early) < self.limits.max_early_events:
                self._early.append((frame, size))
            else:
                self._early_dropped += 1
        return []

    def _on_challenge(self, frame: EventFrame) -> list[Effect]:
        assert self._build_connect is not None
        try:
            challenge = ConnectChallenge.from_event(frame)
            self._connect_id = new_request_id()
            data = self._build_connect(challenge, self._connect_id)
        except (ProtocolError, ConfigError) as exc:
            return [CloseSocket(1002, "bad challenge"), *self._attempt_failed(exc, transport=True)]
        self.phase = "hello"
        self.stats.challenged(self.last_rx)
        self.stats.bytes_out += len(data)
        return [Send(data), Timer("handshake", self.limits.connect_timeout)]

    def _on_hello(self, frame: ResponseFrame) -> list[Effect]:
        if not frame.ok:
            assert frame.error is not None
            error = error_from_shape(frame.error, method="connect", connect=True)
            if isinstance(error, ConnectError) and self.retry_refusal(error):
                error.pauses_reconnect = False
            return [CloseSocket(1000, ""), *self._attempt_failed(error, transport=False)]
        try:
            hello = clamp_hello(HelloOk.from_payload(frame.payload))
        except ProtocolError as exc:
            return [CloseSocket(1002, "bad hello-ok"), *self._attempt_failed(exc, transport=True)]
        if hello.protocol != PROTOCOL_VERSION:
            error = ProtocolMismatch("hello-ok announced another protocol", server_protocol=hello.protocol)
            return [CloseSocket(1002, "protocol mismatch"), *self._attempt_failed(error, transport=False)]
        if hello.auth is not None:
            missing = sorted(set(self.limits.scopes) - set(hello.auth.scopes))
            if missing and "operator.admin" not in hello.auth.scopes:
                log.warning("gateway granted fewer scopes than requested; missing: %s", ", ".join(missing))
        self.hello = hello
        self.phase = "connected"
        self.ever_connected = True
        self.connections += 1
        self.attempts = 0
        if self.connections > 1:
            log.info("reconnected to %s (connection %d)", self.limits.label, self.connections)
        out: list[Effect] = [Timer("handshake", None), Connected(hello)]
        phases = self.stats.connected(self.last_rx)
        out += self.set_state(ConnectionState.CONNECTED, f"connection {self.connections}", phases=phases)
        # Sticky requests (session subscriptions) go out before subscribers see the fresh
        # Snapshot, so a consumer that re-reads state on the Snapshot is already covered.
        for key, (method, params) in self.sticky.items():
            out += self._send_sticky(key, method, params, first=False)
        out.append(Publish(Snapshot(hello, self.connections)))
        if self._early_dropped:
            log.warning("dropped %d events sent before hello-ok (more than %d)",
                        self._early_dropped, self.limits.max_early_events)
        for event, size in self._early:
            out += self._deliver(event, size)
        self._early.clear()
        for request_id, w in list(self.waiting.items()):
            out += self._send(request_id, w.method, w.data, w.waiter, w.expect_final)
        self.waiting.clear()
        out += [Settle(fut, hello) for fut in self.connect_waiters]
        self.connect_waiters = []
        out.append(Timer("liveness", self.liveness))
        ping = self.ping_interval
        if ping is not None:
            out.append(Timer("ping", ping))
        return out

    def _deliver(self, frame: EventFrame, size: int) -> list[Effect]:
        out: list[Effect] = []
        self.stats.events += 1
        gap = self.seq.observe(frame.seq)
        if gap is not None:
            self.stats.gaps += 1
            log.info("event gap on %s: expected seq %d, got %d", self.limits.label, gap.expected, gap.received)
            out.append(Publish(gap))
        if frame.event == "shutdown" and isinstance(frame.payload, dict):
            hint = frame.payload.get("restartExpectedMs")
            if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 0:
                self._restart_ms = min(hint, RESTART_HINT_MAX_MS)
        out.append(Publish(Event(frame.event, frame.payload, frame.seq, frame.state_version), size))
        return out

    # -- requests -------------------------------------------------------------------------

    def submit(self, request_id: str, method: str, data: bytes, waiter: Any,
               expect_final: bool = False) -> list[Effect]:
        """A caller's encoded request: sent now if connected, else held until hello-ok
        (starting an attempt if the channel was never started)."""
        refusal = self.refusal()
        if refusal is not None:
            self.stats.failed(refusal)
            return [Settle(waiter, refusal)]
        if self.phase == "connected":
            return self._send(request_id, method, data, waiter, expect_final)
        self.waiting[request_id] = _Waiting(method, data, waiter, expect_final)
        return self.connect()

    def _send(self, request_id: str, method: str, data: bytes, waiter: Any, expect_final: bool) -> list[Effect]:
        assert self.hello is not None
        limit = self.hello.policy.max_payload
        if len(data) > limit:
            self.stats.failed(RequestError("", code="PAYLOAD_TOO_LARGE"))
            return [Settle(waiter, RequestError(
                f"{method} request is larger than the gateway's maxPayload ({limit} bytes)",
                code="PAYLOAD_TOO_LARGE", method=method))]
        self.pending.add(request_id, method, waiter, expect_final=expect_final)
        self.stats.requests += 1
        self.stats.bytes_out += len(data)
        return [Send(data)]

    def _send_sticky(self, key: object, method: str, params: Any, *, first: bool) -> list[Effect]:
        request_id = new_request_id()
        params = sticky_params(method, params, self.hello.features.events if self.hello is not None else None)
        data = encode_request(request_id, method, params)
        self.pending.add(request_id, method, _StickyWaiter(key, first, params) if key is not None else None)
        self.stats.requests += 1
        self.stats.bytes_out += len(data)
        return [Send(data)]

    def _sticky_answered(self, waiter: _StickyWaiter, method: str, outcome: Any) -> list[Effect]:
        if not isinstance(outcome, BaseException):
            if waiter.key not in self.sticky:
                return []
            out: list[Effect] = [StickyAnswer(waiter.key, outcome)]
            # A snapshot answer (the roster, an approval replay) goes to the subscribers.
            payload = answer_event_payload(method, waiter.params, outcome)
            if payload is not None:
                out.append(Publish(Event(method, payload)))
            return out
        what = "subscribing" if waiter.first else "re-subscribing after a reconnect"
        log.warning("%s with %s failed: %s", what, method, outcome)
        if self.sticky.pop(waiter.key, None) is None:
            return []  # released meanwhile
        self._sticky_users.pop(waiter.key, None)
        if _observed(waiter.key):
            self._observers.forget(waiter.key[1])  # type: ignore[index]
        return [StickyAnswer(waiter.key, outcome)]

    def add_sticky(self, key: object, method: str, params: Any) -> list[Effect]:
        """Count one more user of a request re-sent after every hello-ok (a session
        subscription); the first user sends it now if connected.  Session-message observers
        (``("sessions.messages", canonical, approvals)``) share one request per canonical
        session, upgraded to approvals while any observer wants them."""
        if method == SUBSCRIBE and _observed(key):
            return self._observe(key, params)
        count = self._sticky_users.get(key, 0)
        self._sticky_users[key] = count + 1
        if count:
            return []
        self.sticky[key] = (method, params)
        return self._send_sticky(key, method, params, first=True) if self.phase == "connected" else []

    def _observe(self, key: Any, params: Any) -> list[Effect]:
        base = {k: v for k, v in params.items() if k != "includeApprovals"} if isinstance(params, dict) else None
        change = self._observers.add(key[1], approvals=bool(key[2]), params=base)
        return self._observed_change(key[:2], change.subscribe, None, first=change.before is None)

    def _observed_change(self, group: object, subscribe: Any, unsubscribe: Any, *, first: bool) -> list[Effect]:
        if unsubscribe is not None:
            self.sticky.pop(group, None)
            return self.fire(UNSUBSCRIBE, unsubscribe)
        if subscribe is None:
            return []
        self.sticky[group] = (SUBSCRIBE, subscribe)
        return self._send_sticky(group, SUBSCRIBE, subscribe, first=first) if self.phase == "connected" else []

    def release_sticky(self, key: object, unsubscribe: tuple[str, Any] | None) -> list[Effect]:
        """One user of ``key`` fewer: the last one sends ``unsubscribe``; a session
        observer's departure may downgrade the shared subscription instead."""
        if _observed(key):
            assert isinstance(key, tuple)
            change = self._observers.remove(key[1], approvals=bool(key[2]))
            return self._observed_change(key[:2], change.subscribe, change.unsubscribe, first=False)
        last = self.remove_sticky(key)
        return self.fire(*unsubscribe) if last and unsubscribe is not None else []

    def remove_sticky(self, key: object) -> bool:
        """One user fewer; True when it was the last (the caller then unsubscribes)."""
        count = self._sticky_users.get(key, 0)
        if count <= 1:
            self._sticky_users.pop(key, None)
            return self.sticky.pop(key, None) is not None
        self._sticky_users[key] = count - 1
        return False

    def fire(self, method: str, params: Any) -> list[Effect]:
        """A request nobody waits for (an unsubscribe); dropped when not connected (the
        server forgets per-connection subscriptions with the socket anyway)."""
        return self._send_sticky(None, method, params, first=True) if self.phase == "connected" else []

    def await_connected(self, waiter: Any) -> list[Effect]:
        """``waiter`` gets the hello-ok once connected (starting an attempt if idle)."""
        refusal = self.refusal()
        if refusal is not None:
            return [Settle(waiter, refusal)]
        if self.phase == "connected" and self.hello is not None:
            return [Settle(waiter, self.hello)]
        self.connect_waiters.append(waiter)
        return self.connect()

    def cancel(self, request_id: str) -> bool:
        """A caller's deadline passed (request() or a submit() expiry): forget the request;
        True if its frame had been sent (it was pending an answer)."""
        waiting = self.waiting.pop(request_id, None) is not None
        sent = self.pending.remove(request_id) is not None
        if sent or waiting:
            self.stats.failed(GatewayTimeout(""))
        return sent

    # -- endings and timers ---------------------------------------------------------------

    def closed(self, code: int | None, reason: str) -> list[Effect]:
        """The current socket ended (close frame or drop)."""
        if self.phase in ("opening", "challenge", "hello"):
            error: BaseException = (
                connect_error_from_close(code, reason) if code is not None
                else ConnectionError(f"connection lost during the handshake ({reason or 'no close frame'})")
            )
            return self._attempt_failed(error, transport=not isinstance(error, ConnectError), close_code=code)
        if self.phase != "connected":
            return []
        what = f"{code} {reason}".strip() if code is not None else (reason or "connection lost")
        return self._lost(what, code, reason)

    def _lost(self, what: str, code: int | None, reason: str) -> list[Effect]:
        self.phase = "idle"
        out: list[Effect] = [Timer("liveness", None), Timer("ping", None)]
        for entry in self.pending.drain():
            self.stats.failed(_DISCONNECTED)
            if entry.waiter is not None and not isinstance(entry.waiter, _StickyWaiter):
                out.append(Settle(entry.waiter, Disconnected(
                    f"gateway connection closed ({what}) before {entry.method} was answered",
                    code=code, reason=reason, request_sent=True)))
        delay = self.limits.retry.after_loss(restart_expected_ms=self._restart_ms, loopback=self.limits.loopback)
        log.info("gateway connection to %s lost (%s); reconnecting in %.2f s", self.limits.label, what, delay)
        self.attempts = 1
        out += self._schedule(delay, f"connection closed ({what})")
        out.append(Lost(what, self._restart_ms))
        return out

    def timer(self, name: str, now: float) -> list[Effect]:
        if name == "reconnect":
            if self.phase == "idle" and self.state == ConnectionState.RECONNECTING:
                return self._begin()
            return []
        if name == "handshake" and self.phase in ("opening", "challenge", "hello"):
            what = {"opening": "complete the websocket upgrade", "challenge": "send connect.challenge",
                    "hello": "send hello-ok"}
            error = ConnectError(
                f"gateway at {self.limits.label} did not {what[self.phase]} within "
                f"{self.limits.connect_timeout:g} s", code="TIMEOUT", pauses_reconnect=False)
            return [CloseSocket(4000, "connect timeout"), *self._attempt_failed(error, transport=True)]
        if self.phase != "connected":
            return []
        if name == "liveness":
            silent = now - self.last_rx
            if silent >= self.liveness:
                log.warning("nothing from %s for %.1f s; replacing the socket", self.limits.label, silent)
                return [CloseSocket(4000, "liveness timeout"),
                        *self._lost(f"nothing received for {silent:.1f} s", None, "liveness timeout")]
            return [Timer("liveness", self.liveness - silent)]
        if name == "ping" and self.ping_interval is not None:
            return [Ping(), Timer("ping", self.ping_interval)]
        return []

    def shutdown(self, error: GatewayError) -> list[Effect]:
        """Final: fail everyone, close the socket, publish CLOSED."""
        if self.phase == "closed":
            return []
        self.phase = "closed"
        self._closed_error = error
        out: list[Effect] = [Timer("handshake", None), Timer("liveness", None), Timer("ping", None),
                             Timer("reconnect", None), CloseSocket(1000, "client shutdown")]
        out += [Settle(e.waiter, copy.copy(error)) for e in self.pending.drain()
                if e.waiter is not None and not isinstance(e.waiter, _StickyWaiter)]
        out += self._fail_waiting(error)
        out += self.set_state(ConnectionState.CLOSED, str(error))
        return out


def _observed(key: object) -> bool:
    """A session-message observer's sticky key: ``("sessions.messages", canonical, approvals)``
    (its group, the one request per canonical session, is the first two items)."""
    return isinstance(key, tuple) and len(key) == 3 and key[0] == "sessions.messages"


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
