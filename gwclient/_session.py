"""The socket-free session core of one gateway channel (in the spirit of websockets'
``protocol.py``): inputs in, effects out; no sockets, no threads, no clock reads.

The threaded shell (:mod:`gwclient._link`) owns a lock around it and executes the
effects it returns, in order: send these bytes, settle these waiters, publish these
pushes, arm or cancel this timer, close the socket, report the end of an attempt or of a
connection to the channel actor (which owns the reconnect policy).

Inputs: :meth:`Session.begin` (an attempt starts), :meth:`Session.opened` (the upgrade
succeeded), :meth:`Session.received` (one text frame), :meth:`Session.submit` (a request),
:meth:`Session.closed` / :meth:`Session.open_failed` (the socket ended),
:meth:`Session.timer` (a timer fired), :meth:`Session.shutdown`.

It owns the phase, the pending table, the hello checks and clamps, seq tracking, the
pre-hello event bound, the connection state and the pause decision.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._effects import (
    RESTART_HINT_MAX_MS,
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
    clamp_hello,
)
from ._encode import encode_request
from ._errors import (
    ChannelRetired,
    ClientClosed,
    ConfigError,
    ConnectError,
    Disconnected,
    GatewayError,
    ProtocolError,
    ProtocolMismatch,
    RequestError,
)
from ._frames import PROTOCOL_VERSION, ConnectChallenge, EventFrame, HelloOk, ResponseFrame, decode_frame
from ._observers import answer_event_payload, sticky_params
from ._protocol import PendingTable, SeqTracker, connect_error_from_close, error_from_shape, new_request_id
from ._pushes import ConnectionState, Event, Snapshot, StateChange

__all__ = ["Session", "describe"]

log = logging.getLogger("gwclient.session")



@dataclass
class _Waiting:
    method: str
    data: bytes
    waiter: Any
    expect_final: bool


class Session:
    """One channel's protocol state across its sockets.  Not thread-safe: the shell holds
    its lock around every call."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.phase = "idle"  # idle | opening | challenge | hello | connected | closed
        self.state = ConnectionState.IDLE
        self.pending: PendingTable[Any] = PendingTable()
        self.waiting: dict[str, _Waiting] = {}
        self.connect_waiters: list[Any] = []
        self.sticky: dict[object, tuple[str, Any]] = {}
        self._sticky_users: dict[object, int] = {}
        self.seq = SeqTracker()
        self.hello: HelloOk | None = None
        self._sticky_answers: dict[str, Any] = {}  # request id -> params of a sticky request
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

    # -- state ----------------------------------------------------------------------------

    def set_state(self, state: ConnectionState, detail: str = "", error: BaseException | None = None) -> list[Effect]:
        if state == self.state and error is None:
            return []
        self.state = state
        return [Publish(StateChange(state, detail, error))]

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

    def begin(self, attempt: int) -> list[Effect]:
        """A new attempt starts (the shell opens a socket)."""
        self.phase = "opening"
        self.paused = None
        return [*self.set_state(ConnectionState.CONNECTING, f"attempt {attempt}"),
                Timer("handshake", self.limits.connect_timeout)]

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
            log.warning("gateway connection paused: %s", error)
            out += self.set_state(ConnectionState.PAUSED, str(error), error)
            out += self._fail_waiting(error)
        elif transport and not self.ever_connected:
            # A script's first request should not wait out its whole timeout when nothing
            # listens: fail the callers now, keep retrying in the background.
            out += self._fail_waiting(Disconnected(f"cannot connect to the gateway at {self.limits.label}: "
                                                   f"{describe(error)}{self.limits.unreachable_hint}"))
        retry_after = error.retry_after_ms if isinstance(error, ConnectError) else None
        out.append(AttemptEnded(error, paused, transport, retry_after, close_code))
        return out

    def _fail_waiting(self, error: BaseException) -> list[Effect]:
        out: list[Effect] = [Settle(w.waiter, copy.copy(error)) for w in self.waiting.values()]
        out += [Settle(fut, copy.copy(error)) for fut in self.connect_waiters]
        self.waiting.clear()
        self.connect_waiters = []
        return out

    # -- frames ---------------------------------------------------------------------------

    def received(self, data: bytes | str, now: float) -> list[Effect]:
        self.last_rx = now
        try:
            frame = decode_frame(data)
        except ProtocolError as exc:  # (deep nesting included: the decoder says so)
            log.warning("ignoring a malformed frame from %s: %s", self.limits.label, exc)
            return []
        if isinstance(frame, EventFrame):
            return self._on_event(frame, len(data))
        if isinstance(frame, ResponseFrame):
            if self.phase == "hello" and frame.id == self._connect_id:
                return self._on_hello(frame)
            done = self.pending.resolve(frame)
            if done is None:
                return []
            entry, outcome = done
            if entry.waiter is None:  # a sticky request: nobody waits, say if it failed
                sticky = self._sticky_answers.pop(entry.request_id, None)
                if isinstance(outcome, BaseException):
                    log.warning("re-subscribing with %s failed: %s", entry.method, outcome)
                    return []
                # a snapshot answer (roster, approval replay) goes to subscribers (_observers)
                payload = None if sticky is None else answer_event_payload(entry.method, sticky, outcome)
                return [] if payload is None else [Publish(Event(entry.method, payload))]
            return [Settle(entry.waiter, outcome)]
        log.debug("ignoring a request frame from the gateway (%s)", frame.method)
        return []

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
        return [Send(data), Timer("handshake", self.limits.connect_timeout)]

    def _on_hello(self, frame: ResponseFrame) -> list[Effect]:
        if not frame.ok:
            assert frame.error is not None
            error = error_from_shape(frame.error, method="connect", connect=True)
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
        out: list[Effect] = [Timer("handshake", None), Connected(hello)]
        out += self.set_state(ConnectionState.CONNECTED, f"connection {self.connections}")
        # Sticky requests (session subscriptions) go out before subscribers see the fresh
        # Snapshot, so a consumer that re-reads state on the Snapshot is already covered.
        for key, (method, params) in self.sticky.items():
            out += self._send_sticky(key, method, params)
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
        gap = self.seq.observe(frame.seq)
        if gap is not None:
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
               expect_final: bool = False) -> tuple[list[Effect], bool]:
        """A caller's encoded request.  Returns the effects and whether the shell must ask
        the actor to connect (the channel is idle)."""
        refusal = self.refusal()
        if refusal is not None:
            return [Settle(waiter, refusal)], False
        if self.phase == "connected":
            return self._send(request_id, method, data, waiter, expect_final), False
        self.waiting[request_id] = _Waiting(method, data, waiter, expect_final)
        return [], self.phase == "idle" and self.state in (ConnectionState.IDLE,)

    def _send(self, request_id: str, method: str, data: bytes, waiter: Any, expect_final: bool) -> list[Effect]:
        assert self.hello is not None
        limit = self.hello.policy.max_payload
        if len(data) > limit:
            return [Settle(waiter, RequestError(
                f"{method} request is larger than the gateway's maxPayload ({limit} bytes)",
                code="PAYLOAD_TOO_LARGE", method=method))]
        self.pending.add(request_id, method, waiter, expect_final=expect_final)
        return [Send(data)]

    def _send_sticky(self, key: object, method: str, params: Any) -> list[Effect]:
        request_id = new_request_id()
        params = sticky_params(method, params, self.hello.features.events if self.hello is not None else None)
        data = encode_request(request_id, method, params)
        self.pending.add(request_id, method, None)
        if key is not None:
            self._sticky_answers[request_id] = params
        return [Send(data)]

    def add_sticky(self, key: object, method: str, params: Any) -> list[Effect]:
        """Count one more user of a request re-sent after every hello-ok (a session
        subscription); the first user sends it now if connected."""
        count = self._sticky_users.get(key, 0)
        self._sticky_users[key] = count + 1
        if count:
            return []
        self.sticky[key] = (method, params)
        return self._send_sticky(key, method, params) if self.phase == "connected" else []

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
        return self._send_sticky(None, method, params) if self.phase == "connected" else []

    def await_connected(self, waiter: Any) -> tuple[list[Effect], bool]:
        refusal = self.refusal()
        if refusal is not None:
            return [Settle(waiter, refusal)], False
        if self.phase == "connected" and self.hello is not None:
            return [Settle(waiter, self.hello)], False
        self.connect_waiters.append(waiter)
        return [], self.phase == "idle" and self.state == ConnectionState.IDLE

    def cancel(self, request_id: str) -> None:
        self.pending.remove(request_id)
        self.waiting.pop(request_id, None)

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
        self._sticky_answers.clear()  # their answers died with the socket
        for entry in self.pending.drain():
            if entry.waiter is not None:
                out.append(Settle(entry.waiter, Disconnected(
                    f"gateway connection closed ({what}) before {entry.method} was answered",
                    code=code, reason=reason)))
        out.append(Lost(what, self._restart_ms))
        return out

    def timer(self, name: str, now: float) -> list[Effect]:
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
                             CloseSocket(1000, "client shutdown")]
        out += [Settle(e.waiter, copy.copy(error)) for e in self.pending.drain() if e.waiter is not None]
        out += self._fail_waiting(error)
        out += self.set_state(ConnectionState.CLOSED, str(error))
        return out


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
