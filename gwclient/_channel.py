"""GatewayChannelActor: the one owner of one gateway websocket (one per effective config).

Runs on ``gwclient-channel-<host:port>`` and never blocks: socket I/O happens on the
socket worker's reader/writer threads, waits on the timer thread; both only ``tell`` this
actor.  Every message from a socket carries the socket's generation number, so frames
from a socket that is being replaced are ignored instead of confusing the new one.

State machine (published as :class:`StateChange` pushes)::

    IDLE --first use--> CONNECTING --hello-ok--> CONNECTED
    CONNECTING --retryable failure--> RECONNECTING --backoff--> CONNECTING
    CONNECTED --socket closed / tick timeout--> RECONNECTING
    CONNECTING --non-recoverable refusal--> PAUSED --retry()/new config--> CONNECTING
    any --stop--> CLOSED
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pykka

from ._config import GatewayConfig
from ._device import DeviceIdentity, DeviceTokenStore, StoredDeviceToken
from ._errors import (
    AuthRejected,
    ClientClosed,
    ConfigError,
    ConnectError,
    Disconnected,
    GatewayError,
    ProtocolError,
    ProtocolMismatch,
    RequestError,
)
from ._frames import (
    PROTOCOL_VERSION,
    ConnectChallenge,
    EventFrame,
    HelloOk,
    RequestFrame,
    ResponseFrame,
    decode_frame,
    encode_frame,
)
from ._handshake import Credentials, build_connect_params
from ._messages import (
    AwaitConnected,
    Cancel,
    Closed,
    FrameIn,
    HandshakeTimeout,
    Opened,
    OpenFailed,
    PingDue,
    Reconnect,
    Request,
    Retry,
    Stop,
    Watchdog,
)
from ._protocol import (
    PendingTable,
    SeqTracker,
    connect_error_from_close,
    error_from_shape,
    new_request_id,
)
from ._pushes import ConnectionState, Event, Push, Snapshot, StateChange
from ._retry import RetryPolicy
from ._timer import Timer
from ._transport import SocketWorker, TransportFactory, TransportOptions, open_transport

__all__ = ["GatewayChannelActor"]

log = logging.getLogger("gwclient.channel")


class GatewayChannelActor(pykka.ThreadingActor):
    """Owns one websocket for one :class:`GatewayConfig`.  All methods run on the actor
    thread (``gwclient-channel-<host:port>``) unless noted."""

    use_daemon_thread = True  # interpreter exit never waits for us (atexit shuts down)

    def __init__(
        self,
        config: GatewayConfig,
        publish: Callable[[Push], None],
        *,
        transport_factory: TransportFactory | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._publish = publish
        self._factory = transport_factory or open_transport
        self._retry = retry_policy or RetryPolicy()
        self._label = f"{config.host}:{config.port}"
        self._timer: Timer | None = None
        self._state = ConnectionState.IDLE
        self._gen = 0
        self._worker: SocketWorker | None = None
        self._workers: list[SocketWorker] = []
        self._phase = "idle"  # idle | opening | challenge | hello | connected
        self._connect_id: str | None = None
        self._handshake_timer: int | None = None
        self._reconnect_timer: int | None = None
        self._watchdog_timer: int | None = None
        self._ping_timer: int | None = None
        self._pending: PendingTable[Future[Any]] = PendingTable()
        self._waiting: dict[str, Request] = {}
        self._connect_waiters: list[Future[HelloOk]] = []
        self._early_events: list[EventFrame] = []
        self._seq = SeqTracker()
        self._hello: HelloOk | None = None
        self._credentials: Credentials | None = None
        self._attempt = 0
        self._paused: GatewayError | None = None
        self._ever_connected = False
        self._restart_expected_ms: int | None = None
        self._last_rx = 0.0
        self._connections = 0

    # -- pykka hooks ----------------------------------------------------------------

    def on_start(self) -> None:
        self._thread = threading.current_thread()
        self._thread.name = f"gwclient-channel-{self._label}"
        self._timer = Timer(self._label)

    def on_failure(self, *args: Any) -> None:  # pragma: no cover - a bug
        log.error("channel %s crashed; failing every caller", self._label)
        self._close_everything(ClientClosed("gwclient channel crashed (see the log)"))

    def on_receive(self, message: Any) -> Any:
        try:
            return self._dispatch(message)
        except Exception:  # pragma: no cover - a bug: keep the actor alive, say so
            log.exception("channel %s failed to handle %s", self._label, type(message).__name__)
            return None

    def _dispatch(self, message: Any) -> Any:
        if isinstance(message, FrameIn):
            if message.gen == self._gen:
                self._on_frame(message.text)
        elif isinstance(message, Request):
            self._on_request(message)
        elif isinstance(message, Cancel):
            self._pending.remove(message.request_id)
            self._waiting.pop(message.request_id, None)
        elif isinstance(message, Opened):
            self._on_opened(message)
        elif isinstance(message, OpenFailed):
            if message.gen == self._gen:
                self._attempt_failed(message.error, transport=True)
        elif isinstance(message, Closed):
            if message.gen == self._gen:
                self._on_closed(message.code, message.reason)
        elif isinstance(message, HandshakeTimeout):
            if message.gen == self._gen and self._phase == message.phase:
                self._abandon_socket(4000, "connect timeout")
                self._attempt_failed(
                    ConnectError(
                        f"gateway at {self.config.redacted_url} did not send "
                        f"{'connect.challenge' if message.phase == 'challenge' else 'hello-ok'} "
                        f"within {self.config.connect_timeout:g} s",
                        code="TIMEOUT",
                        pauses_reconnect=False,
                    ),
                    transport=True,
                )
        elif isinstance(message, Reconnect):
            if message.gen == self._gen and self._state == ConnectionState.RECONNECTING:
                self._reconnect_timer = None
                self._start_attempt()
        elif isinstance(message, Watchdog):
            if message.gen == self._gen:
                self._on_watchdog()
        elif isinstance(message, PingDue):
            if message.gen == self._gen and self._phase == "connected" and self._worker is not None:
                self._worker.ping()
                self._arm_ping()
        elif isinstance(message, AwaitConnected):
            self._on_await_connected(message.future)
        elif isinstance(message, Retry):
            if self._state in (ConnectionState.PAUSED, ConnectionState.RECONNECTING, ConnectionState.IDLE):
                self._paused = None
                self._start_attempt()
        elif isinstance(message, Stop):
            return self._on_stop(message.reason, retired=message.retired)
        return None

    # -- connecting -----------------------------------------------------------------

    def _set_state(self, state: ConnectionState, detail: str = "", error: BaseException | None = None) -> None:
        if state == self._state and error is None:
            return
        self._state = state
        log.debug("channel %s -> %s %s", self._label, state.value, detail)
        self._publish(StateChange(state, detail, error))

    def _start_attempt(self) -> None:
        assert self._timer is not None
        self._timer.cancel(self._reconnect_timer)
        self._reconnect_timer = None
        self._gen += 1
        gen = self._gen
        self._phase = "opening"
        self._set_state(ConnectionState.CONNECTING, f"attempt {self._attempt + 1}")
        me = self.actor_ref
        options = TransportOptions(
            url=self.config.url,
            open_timeout=self.config.connect_timeout,
            tls_fingerprint=self.config.tls_fingerprint,
        )
        config = self.config
        worker = SocketWorker(
            self._factory,
            options,
            prepare=lambda: _load_credentials(config),
            on_open=lambda w: _tell(me, Opened(gen, w)),
            on_open_failed=lambda exc: _tell(me, OpenFailed(gen, exc)),
            on_frame=lambda text: _tell(me, FrameIn(gen, text)),
            on_closed=lambda code, reason: _tell(me, Closed(gen, code, reason)),
            label=self._label,
        )
        self._worker = worker
        self._workers = [w for w in self._workers if w.reader.is_alive()] + [worker]
        worker.start()

    def _on_opened(self, message: Opened) -> None:
        if message.gen != self._gen or self._state == ConnectionState.CLOSED:
            message.worker.abort()
            return
        assert self._timer is not None
        self._credentials = message.worker.prepared
        self._phase = "challenge"
        self._seq.reset()
        self._early_events.clear()
        self._restart_expected_ms = None
        self._last_rx = time.monotonic()
        me = self.actor_ref
        gen = self._gen
        self._handshake_timer = self._timer.call_later(
            self.config.connect_timeout, lambda: _tell(me, HandshakeTimeout(gen, "challenge"))
        )

    def _send_connect(self, challenge: ConnectChallenge) -> None:
        assert self._worker is not None and self._timer is not None
        cfg = self.config
        params = build_connect_params(cfg, challenge, self._credentials or Credentials(None, None))
        self._connect_id = new_request_id()
        self._worker.send(encode_frame(RequestFrame(self._connect_id, "connect", params.to_wire())))
        self._phase = "hello"
        self._timer.cancel(self._handshake_timer)
        me = self.actor_ref
        gen = self._gen
        self._handshake_timer = self._timer.call_later(
            cfg.connect_timeout, lambda: _tell(me, HandshakeTimeout(gen, "hello"))
        )

    def _on_hello(self, frame: ResponseFrame) -> None:
        assert self._timer is not None
        self._timer.cancel(self._handshake_timer)
        self._handshake_timer = None
        if not frame.ok:
            assert frame.error is not None
            error = error_from_shape(frame.error, method="connect", connect=True)
            self._abandon_socket(1000, "")
            self._attempt_failed(error, transport=False)
            return
        try:
            hello = HelloOk.from_payload(frame.payload)
        except ProtocolError as exc:
            self._abandon_socket(1002, "bad hello-ok")
            self._attempt_failed(exc, transport=True)
            return
        if hello.protocol != PROTOCOL_VERSION:
            self._abandon_socket(1002, "protocol mismatch")
            self._attempt_failed(
                ProtocolMismatch(f"gateway speaks protocol {hello.protocol}, gwclient speaks {PROTOCOL_VERSION}"),
                transport=False,
            )
            return
        if hello.auth is not None:
            missing = sorted(set(self.config.scopes) - set(hello.auth.scopes))
            if missing and "operator.admin" not in hello.auth.scopes:
                log.warning("gateway granted fewer scopes than requested; missing: %s", ", ".join(missing))
        self._hello = hello
        self._phase = "connected"
        self._attempt = 0
        self._ever_connected = True
        self._connections += 1
        saving = self._persist_device_token(hello)
        if self._connections > 1:
            log.info("reconnected to %s (connection %d)", self._label, self._connections)
        self._set_state(ConnectionState.CONNECTED, f"connection {self._connections}")
        self._publish(Snapshot(hello, self._connections))
        for event in self._early_events:
            self._deliver_event(event)
        self._early_events.clear()
        waiters, self._connect_waiters = self._connect_waiters, []
        if saving and waiters:
            # connect()/wait_for_pairing() promise that the device token is stored when
            # they return, but the save runs on the writer thread: settle them from there,
            # right after the save (found by the real-gateway pairing test: the token file
            # was still empty when wait_for_pairing() returned).  The writer runs every
            # queued chore, even after its socket has ended, so they cannot be left hanging.
            assert self._worker is not None
            self._worker.run_io(lambda: _settle_all(waiters, hello))
        else:
            _settle_all(waiters, hello)
        waiting, self._waiting = self._waiting, {}
        for req in waiting.values():
            self._send_request(req)
        self._arm_watchdog()
        self._arm_ping()

    def _arm_ping(self) -> None:
        interval = self.config.ping_interval
        if interval is None:
            return
        assert self._timer is not None
        me = self.actor_ref
        gen = self._gen
        self._timer.cancel(self._ping_timer)
        self._ping_timer = self._timer.call_later(interval, lambda: _tell(me, PingDue(gen)))

    def _persist_device_token(self, hello: HelloOk) -> bool:
        """Queue saving the issued device token on the writer thread; True if queued."""
        creds = self._credentials
        auth = hello.auth
        if creds is None or creds.identity is None or auth is None or not auth.device_token:
            return False
        cfg = self.config
        identity = creds.identity
        token = auth.device_token
        scopes = tuple(auth.scopes)
        role = auth.role or cfg.role
        creds.stored = StoredDeviceToken(token, role, scopes, auth.issued_at_ms)

        def save() -> None:
            try:
                DeviceTokenStore(cfg.effective_state_dir).save(
                    cfg.gateway_key, identity.device_id, role, token, scopes, auth.issued_at_ms
                )
            except OSError as exc:
                log.warning("could not store the device token: %s", exc)

        assert self._worker is not None
        self._worker.run_io(save)
        return True

    def _attempt_failed(self, error: BaseException, *, transport: bool) -> None:
        """The current attempt ended before hello-ok."""
        assert self._timer is not None
        self._timer.cancel(self._handshake_timer)
        self._handshake_timer = None
        self._phase = "idle"
        if isinstance(error, AuthRejected) and error.detail_code == "AUTH_DEVICE_TOKEN_MISMATCH":
            self._forget_device_token()
        if (isinstance(error, ConnectError) and error.pauses_reconnect) or isinstance(error, ConfigError):
            self._pause(error)
            return
        if transport and not self._ever_connected:
            # A script's first request should not wait out its whole timeout when nothing
            # listens: fail the callers now, keep retrying in the background.
            hint = ""
            if self.config.ssh is not None:
                hint = (f" (remote mode over SSH to {self.config.ssh.host}: is the tunnel up? start it with "
                        "ConnectionModeCoordinator, see docs/remote.md)")
            self._fail_waiting(
                Disconnected(f"cannot connect to the gateway at {self.config.redacted_url}: {_describe(error)}{hint}")
            )
        delay_floor = 0.0
        if isinstance(error, ConnectError) and error.retry_after_ms:
            delay_floor = error.retry_after_ms / 1000.0
        self._schedule_reconnect(self._retry.delay(self._attempt, floor=delay_floor), str(_describe(error)))
        self._attempt += 1

    def _pause(self, error: GatewayError) -> None:
        """Stop reconnecting: the same attempt would fail the same way (bad credentials,
        pairing, protocol).  Callers get the error until retry() or a config change."""
        self._paused = error
        log.warning("gateway connection paused: %s", error)
        self._set_state(ConnectionState.PAUSED, str(error), error)
        self._fail_waiting(error)

    def _forget_device_token(self) -> None:
        creds = self._credentials
        if creds is None or creds.identity is None or creds.stored is None:
            return
        cfg = self.config
        device_id = creds.identity.device_id
        role = creds.stored.role
        creds.stored = None
        log.warning("the gateway rejected the stored device token; it was cleared")
        # A small local file write on the actor thread, on this rare path only (the socket
        # and its writer are gone already); the lock it takes is held by gwclient's own
        # short file operations, never across any network wait.
        try:
            DeviceTokenStore(cfg.effective_state_dir).clear(cfg.gateway_key, device_id, role)
        except OSError as exc:  # pragma: no cover - disk trouble
            log.warning("could not clear the device token: %s", exc)

    def _schedule_reconnect(self, delay: float, why: str) -> None:
        assert self._timer is not None
        self._set_state(ConnectionState.RECONNECTING, f"retry in {delay:.2f} s: {why}")
        me = self.actor_ref
        gen = self._gen
        self._timer.cancel(self._reconnect_timer)
        self._reconnect_timer = self._timer.call_later(delay, lambda: _tell(me, Reconnect(gen)))

    def _abandon_socket(self, code: int, reason: str) -> None:
        """Stop listening to the current socket and close it; its frames become stale."""
        worker = self._worker
        self._worker = None
        self._gen += 1
        if worker is not None:
            worker.close(code, reason)

    # -- frames ---------------------------------------------------------------------

    def _on_frame(self, text: str) -> None:
        self._last_rx = time.monotonic()
        try:
            frame = decode_frame(text)
        except ProtocolError as exc:
            log.warning("ignoring a malformed frame from %s: %s", self._label, exc)
            return
        if isinstance(frame, EventFrame):
            if self._phase == "challenge":
                if frame.event == "connect.challenge":
                    try:
                        challenge = ConnectChallenge.from_event(frame)
                    except ProtocolError as exc:
                        self._abandon_socket(1002, "bad challenge")
                        self._attempt_failed(exc, transport=True)
                        return
                    self._send_connect(challenge)
                else:
                    self._early_events.append(frame)
            elif self._phase == "hello":
                self._early_events.append(frame)
            elif self._phase == "connected":
                self._deliver_event(frame)
            return
        if isinstance(frame, ResponseFrame):
            if self._phase == "hello" and frame.id == self._connect_id:
                self._on_hello(frame)
                return
            done = self._pending.resolve(frame)
            if done is not None:
                entry, outcome = done
                _settle(entry.waiter, outcome)
            return
        log.debug("ignoring a request frame from the gateway (%s)", frame.method)

    def _deliver_event(self, frame: EventFrame) -> None:
        gap = self._seq.observe(frame.seq)
        if gap is not None:
            log.info("event gap on %s: expected seq %d, got %d", self._label, gap.expected, gap.received)
            self._publish(gap)
        if frame.event == "shutdown" and isinstance(frame.payload, dict):
            expected = frame.payload.get("restartExpectedMs")
            if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
                self._restart_expected_ms = expected
        self._publish(Event(frame.event, frame.payload, frame.seq, frame.state_version))

    # -- requests -------------------------------------------------------------------

    def _refusal(self) -> GatewayError | None:
        """Why a caller cannot wait for a connection now (shut down, or paused), if so."""
        if self._state == ConnectionState.CLOSED:
            return ClientClosed("the gateway connection was shut down")
        if self._paused is not None:
            return copy.copy(self._paused)
        return None

    def _connect_if_idle(self) -> None:
        if self._state == ConnectionState.IDLE:
            self._start_attempt()

    def _on_request(self, req: Request) -> None:
        if req.future.done():
            return
        refusal = self._refusal()
        if refusal is not None:
            req.future.set_exception(refusal)
        elif self._phase == "connected":
            self._send_request(req)
        else:
            self._waiting[req.request_id] = req
            self._connect_if_idle()

    def _send_request(self, req: Request) -> None:
        if req.future.done():
            return  # the caller timed out while it waited for the connection
        assert self._worker is not None and self._hello is not None
        try:
            text = encode_frame(RequestFrame(req.request_id, req.method, req.params))
        except (TypeError, ValueError) as exc:
            req.future.set_exception(
                RequestError(f"cannot encode params for {req.method}: {exc}", code="CLIENT_ENCODE", method=req.method)
            )
            return
        limit = self._hello.policy.max_payload
        # UTF-8 needs at most 4 bytes a character: only long frames pay for the encode.
        if limit and len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
            req.future.set_exception(
                RequestError(
                    f"{req.method} request is larger than the gateway's maxPayload ({limit} bytes)",
                    code="PAYLOAD_TOO_LARGE",
                    method=req.method,
                )
            )
            return
        self._pending.add(req.request_id, req.method, req.future, expect_final=req.expect_final)
        self._worker.send(text)

    def _on_await_connected(self, fut: Future[HelloOk]) -> None:
        refusal = self._refusal()
        if refusal is not None:
            fut.set_exception(refusal)
        elif self._phase == "connected" and self._hello is not None:
            fut.set_result(self._hello)
        else:
            self._connect_waiters.append(fut)
            self._connect_if_idle()

    def _fail_waiting(self, error: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        for req in waiting.values():
            _settle(req.future, copy.copy(error))
        waiters, self._connect_waiters = self._connect_waiters, []
        for fut in waiters:
            _settle(fut, copy.copy(error))

    # -- liveness and disconnects ---------------------------------------------------

    def _arm_watchdog(self) -> None:
        assert self._timer is not None and self._hello is not None
        interval = max(0.05, self._hello.policy.tick_interval_ms / 1000.0)
        me = self.actor_ref
        gen = self._gen
        self._timer.cancel(self._watchdog_timer)
        self._watchdog_timer = self._timer.call_later(interval, lambda: _tell(me, Watchdog(gen)))

    def _on_watchdog(self) -> None:
        if self._phase != "connected" or self._hello is None:
            return
        tolerance = 2 * self._hello.policy.tick_interval_ms / 1000.0
        silent = time.monotonic() - self._last_rx
        if silent > tolerance:
            log.warning("no frame from %s for %.1f s; reconnecting", self._label, silent)
            self._abandon_socket(4000, "tick timeout")
            self._lost_connection(None, "tick timeout")
            return
        self._arm_watchdog()

    def _on_closed(self, code: int | None, reason: str) -> None:
        if self._phase in ("opening", "challenge", "hello"):
            self._worker = None
            self._gen += 1
            error: BaseException = (
                connect_error_from_close(code, reason) if code is not None
                else ConnectionError(f"connection lost during the handshake ({reason or 'no close frame'})")
            )
            self._attempt_failed(error, transport=not isinstance(error, ConnectError))
            return
        self._worker = None
        self._gen += 1
        self._lost_connection(code, reason)

    def _lost_connection(self, code: int | None, reason: str) -> None:
        assert self._timer is not None
        self._phase = "idle"
        self._timer.cancel(self._watchdog_timer)
        what = f"{code} {reason}".strip() if code is not None else (reason or "connection lost")
        for entry in self._pending.drain():
            _settle(
                entry.waiter,
                Disconnected(
                    f"gateway connection closed ({what}) before {entry.method} was answered",
                    code=code,
                    reason=reason,
                ),
            )
        if self._restart_expected_ms is not None:
            delay = self._restart_expected_ms / 1000.0
        else:
            delay = self._retry.delay(0)
        log.info("gateway connection to %s lost (%s); reconnecting in %.2f s", self._label, what, delay)
        self._attempt = 1
        self._schedule_reconnect(delay, f"connection closed ({what})")

    # -- stopping -------------------------------------------------------------------

    def _on_stop(self, reason: str, *, retired: bool = False) -> list[threading.Thread]:
        if retired:
            self._close_everything(Disconnected(f"gateway connection closed ({reason}); retry to use the new one"))
        else:
            self._close_everything(ClientClosed(f"the gateway connection was shut down ({reason})"))
        threads: list[threading.Thread] = []
        for worker in self._workers:
            threads.extend(worker.threads)
        if self._timer is not None:
            self._timer.stop()
            threads.append(self._timer.thread)
        threads.append(self._thread)  # exits right after this message: stop() is queued
        self.stop()
        return threads

    def _close_everything(self, error: GatewayError) -> None:
        if self._state == ConnectionState.CLOSED:
            return
        worker = self._worker
        self._worker = None
        self._gen += 1
        self._phase = "idle"
        if worker is not None:
            worker.close(1000, "client shutdown")
        for w in self._workers:
            w.abort()
        for entry in self._pending.drain():
            _settle(entry.waiter, copy.copy(error))
        self._fail_waiting(error)
        self._set_state(ConnectionState.CLOSED, str(error))


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    """``tell`` from a reader/timer thread: the actor may already have stopped (shutdown
    racing a late frame), which is fine: the message no longer matters."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass


def _settle(fut: Future[Any], outcome: Any) -> None:
    """Complete a caller's future once (it may already be done: the caller timed out)."""
    if fut.done():
        return
    try:
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)
    except Exception:  # pragma: no cover - InvalidStateError race with a cancel
        pass


def _settle_all(futures: list[Future[Any]], outcome: Any) -> None:
    for fut in futures:
        _settle(fut, outcome)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _load_credentials(config: GatewayConfig) -> Credentials:
    """Runs on a reader thread: device identity and stored device token (file I/O)."""
    if not config.device_identity:
        return Credentials(None, None)
    state_dir = config.effective_state_dir
    identity = DeviceIdentity.load_or_create(state_dir)
    stored = None
    if not (config.token or config.password):
        stored = DeviceTokenStore(state_dir).load(config.gateway_key, identity.device_id, config.role)
    return Credentials(identity, stored)
