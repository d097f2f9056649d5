"""DevGateway: a loopback OpenClaw gateway (protocol 4) with fault controls for tests.

A real WebSocket server (``websockets`` sync API, one thread per socket) that
speaks the handshake, request/response and event parts of the protocol the way
the real gateway does (see PROTOCOL.md), plus knobs to make it misbehave.

Threads are all named ``devgw-...`` and :meth:`DevGateway.stop` joins every one
of them, so a test that stops its gateway leaves nothing running.

The gateway is composed of parts, each owning its state, and delegates to them:

* :class:`~gwclient.testing._devgw_server.GatewayServer`: sockets, connections, seq,
  broadcasts, ticks, restarts, transport faults and socket counters;
* :class:`~gwclient.testing._devgw_handshake.Handshake`: challenge, auth, pairing,
  hello-ok (the shared secrets and ``policy_overrides``);
* :class:`~gwclient.testing._devgw_methods.Methods`: the requests after hello-ok
  (built-in methods, custom handlers, scope checks);
* :class:`~gwclient.testing._devgw_controls.Faults`: injected protocol faults;
* :class:`~gwclient.testing._devgw_recorder.Recorder`: request counters and the
  connect log;
* :class:`~gwclient.testing._devgw_pairing.PairingStore`: devices and tokens;
* :class:`~gwclient.testing._devgw_sessions.SessionSubscriptions`: session
  subscriptions and their pushes;
* :class:`~gwclient.testing._devgw_runs.DevRuns`: agent and chat runs (``gw.runs``).

They share one monitor (``threading.Condition`` over an ``RLock``): every part that
changes something a :meth:`DevGateway.wait_for` predicate reads notifies it.

Example::

    with DevGateway(token="secret", tick_interval_ms=200) as gw:
        ws = websocket.create_connection(gw.url, suppress_origin=True, timeout=5)
        ...
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from gwclient.testing._devgw_controls import Faults
from gwclient.testing._devgw_handshake import Handshake
from gwclient.testing._devgw_methods import Handler, Methods
from gwclient.testing._devgw_pairing import PairingStore
from gwclient.testing._devgw_proto import DevGatewayError
from gwclient.testing._devgw_recorder import Recorder
from gwclient.testing._devgw_runs import DevRuns
from gwclient.testing._devgw_server import GatewayServer, _Conn
from gwclient.testing._devgw_sessions import SessionSubscriptions

__all__ = ["DevGateway", "DevGatewayError"]

_G = TypeVar("_G", bound="DevGateway")


class DevGateway:
    """A loopback protocol-4 gateway for tests, with fault injection and counters.

    Constructor arguments (all keyword-only):

    * ``token`` / ``password``: the shared secret(s). With neither, any client is
      accepted (``auth.method == "none"``). The secret may arrive in ``auth.token``
      or ``auth.password``.
    * ``host`` / ``port``: where to listen; ``port=0`` picks a free port (kept
      across :meth:`restart`).
    * ``tick_interval_ms``: ``tick`` cadence and ``policy.tickIntervalMs``.
    * ``auto_approve``: pair new devices silently (only when the upgrade request
      had no ``Origin`` header, like the real gateway on loopback); otherwise
      answer NOT_PAIRED/PAIRING_REQUIRED and wait for :meth:`approve`.
    * ``enforce_scopes``: emulate scope enforcement: device-less connects lose
      their scopes (except cli/cli and gateway-client/backend without Origin),
      and ``status``/``system-presence`` need ``operator.read`` (FORBIDDEN).
    * ``handshake_timeout``: seconds to wait for the connect frame (close 1000).
    * ``ping_interval``: server WebSocket ping period (None disables).
    * ``ssl_context``: serve ``wss://`` with this server-side TLS context.
    * ``close_timeout``: seconds to wait for the client's close frame.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_interval_ms: int = 30_000,
        auto_approve: bool = True,
        enforce_scopes: bool = False,
        handshake_timeout: float = 15.0,
        ping_interval: float | None = 25.0,
        close_timeout: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._handshake_timeout = handshake_timeout
        self._cond = threading.Condition(threading.RLock())
        self._server = GatewayServer(
            serve=self._serve,
            cond=self._cond,
            host=host,
            port=port,
            tick_interval_ms=tick_interval_ms,
            ping_interval=ping_interval,
            close_timeout=close_timeout,
            ssl_context=ssl_context,
        )
        self._recorder = Recorder(self._cond)
        self._faults = Faults(self._cond)
        self._pairing = PairingStore()
        self._sessions = SessionSubscriptions(self._server, self._cond)
        self.runs = DevRuns(self._server, self._cond)  # agent/chat runs (_devgw_runs.py)
        self._methods = Methods(
            server=self._server,
            recorder=self._recorder,
            faults=self._faults,
            runs=self.runs,
            sessions=self._sessions,
            enforce_scopes=enforce_scopes,
        )
        self._handshake = Handshake(
            server=self._server,
            cond=self._cond,
            recorder=self._recorder,
            faults=self._faults,
            methods=self._methods,
            runs=self.runs,
            pairing=self._pairing,
            token=token,
            password=password,
            auto_approve=auto_approve,
            enforce_scopes=enforce_scopes,
            boot_id=f"{id(self):x}",
        )

    def _serve(self, cs: _Conn) -> None:
        """One connection, on its ``devgw-conn`` thread: challenge, handshake, requests."""
        self._handshake.challenge(cs)
        try:
            first = cs.ws.recv(timeout=self._handshake_timeout)
        except TimeoutError:
            cs.ws.close(1000, "")
            return
        if not self._handshake.run(cs, first):
            return
        while True:
            self._methods.on_frame(cs, cs.ws.recv())

    # ------------------------------------------------------------------ lifecycle

    def start(self: _G) -> _G:
        """Bind and start serving (idempotent); returns ``self``."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Broadcast ``shutdown {reason:"gateway stopping"}``, close every socket
        1012 "service restart", stop listening and join every thread. Idempotent."""
        self._server.stop()

    def restart(self, *, down_for: float | None = None, restart_expected_ms: int = 1500) -> None:
        """Simulate a gateway restart and block until listening again.

        Broadcasts ``shutdown {reason:"gateway restarting", restartExpectedMs}``,
        closes every socket 1012 "service restart", stops listening (connections
        are refused), waits ``down_for`` seconds (Event wait; cut short by
        :meth:`stop`) and listens again on the same port.
        """
        self._server.restart(down_for=down_for, restart_expected_ms=restart_expected_ms)

    def restart_begin(self, *, restart_expected_ms: int = 1500) -> None:
        """First half of :meth:`restart`: on return the port refuses connections."""
        self._server.restart_begin(restart_expected_ms=restart_expected_ms)

    def restart_end(self) -> None:
        """Second half of :meth:`restart`: listen again on the same port."""
        self._server.restart_end()

    def __enter__(self: _G) -> _G:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_for(self: _G, predicate: Callable[[_G], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` is true (re-checked on every state change:
        counters, connection open/close, requests, pairing); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # ------------------------------------------------------------------ address

    @property
    def host(self) -> str:
        """The listening host (127.0.0.1 by default)."""
        return self._server.host

    @property
    def port(self) -> int:
        """The listening port (the picked one once started; stable across restarts)."""
        return self._server.port

    @property
    def url(self) -> str:
        """``ws://<host>:<port>`` (``wss://`` with an ``ssl_context``)."""
        return self._server.url

    @property
    def running(self) -> bool:
        """True while listening (False before start, in a restart window and after stop)."""
        return self._server.running

    # ------------------------------------------------------------------ counters: sockets

    @property
    def sockets_accepted(self) -> int:
        """TCP connections accepted, over all lifetimes."""
        return self._server.sockets_accepted

    @property
    def open_sockets(self) -> int:
        """Accepted TCP sockets not yet fully closed on the server side."""
        return self._server.open_sockets

    @property
    def max_open_sockets(self) -> int:
        """Peak of :attr:`open_sockets`."""
        return self._server.max_open_sockets

    @property
    def handshaken_connections(self) -> int:
        """Connections currently past hello-ok (the targets of :meth:`broadcast`)."""
        return self._server.handshaken_connections

    @property
    def origin_headers_seen(self) -> int:
        """Upgrade requests that carried an ``Origin`` header."""
        return self._server.origin_headers_seen

    @property
    def client_close_codes(self) -> list[int | None]:
        """For every connection that ended: the close code the client sent (``None``: the
        socket ended without a close frame from the client)."""
        return self._server.client_close_codes

    @property
    def upgrade_headers(self) -> list[list[tuple[str, str]]]:
        """The headers of every websocket upgrade request received, oldest first (they may
        hold secrets: edge-auth headers)."""
        return self._server.upgrade_headers

    @property
    def auth_overrides(self) -> dict[str, Any]:
        """Merged into hello-ok's ``auth`` (e.g. a ``deviceTokens`` handoff)."""
        return self._handshake.auth_overrides

    @auth_overrides.setter
    def auth_overrides(self, value: dict[str, Any]) -> None:
        self._handshake.auth_overrides = value

    @property
    def pings_received(self) -> int:
        """Websocket ping frames received from clients (keepalive), over all lifetimes."""
        return self._server.pings_received

    @property
    def lifetimes(self) -> int:
        """Number of times the gateway started listening (1 + restarts)."""
        return self._server.lifetimes

    @property
    def sockets_accepted_per_lifetime(self) -> list[int]:
        """:attr:`sockets_accepted` split by lifetime."""
        return self._server.sockets_accepted_per_lifetime

    def connections(self) -> list[dict[str, Any]]:
        """Info about handshaken connections: connId, client, role, scopes,
        authMethod, deviceId, origin, lastSeq."""
        return self._server.connections()

    # ------------------------------------------------------------------ counters: requests

    @property
    def handshakes_completed(self) -> int:
        """Connections that got hello-ok."""
        return self._recorder.handshakes_completed

    @property
    def connect_attempts(self) -> int:
        """``connect`` request frames received (valid or not)."""
        return self._recorder.connect_attempts

    @property
    def requests_by_method(self) -> dict[str, int]:
        """Copy of the per-method request counts (``connect`` included)."""
        return self._recorder.requests_by_method

    @property
    def connect_requests(self) -> list[Any]:
        """Deep copies of every ``connect`` params object received, oldest first
        (they contain the secrets the client sent)."""
        return self._recorder.connect_requests

    @property
    def request_frames(self) -> list[dict[str, Any]]:
        """The envelopes of the last 10 000 request frames received, oldest first, ``connect``
        included: every key but ``params`` (``type``, ``id``, ``method``, ``traceparent``...).
        For the params of ``connect`` see :attr:`connect_requests`."""
        return self._recorder.request_frames

    @property
    def invalid_frames(self) -> int:
        """Frames after hello-ok that were not valid request frames."""
        return self._recorder.invalid_frames

    # ------------------------------------------------------------------ events

    def broadcast(self, event: str, payload: Any = None, *, state_version: dict[str, int] | None = None) -> int:
        """Send an event (with the per-connection ``seq``) to every handshaken
        connection; returns how many got it."""
        return self._server.broadcast(event, payload, state_version=state_version)

    def skip_seq(self, n: int = 1) -> None:
        """Make the next event on each currently handshaken connection skip ``n``
        sequence numbers (a gap, as when a slow consumer's event is dropped)."""
        self._server.skip_seq(n)

    def stop_ticking(self) -> None:
        """Stop sending ``tick`` events (to trigger the client's tick watchdog).
        No tick is sent after this returns."""
        self._server.stop_ticking()

    def start_ticking(self) -> None:
        """Resume ``tick`` events."""
        self._server.start_ticking()

    def send_raw(self, text: str | bytes) -> int:
        """Send ``text`` verbatim to every handshaken connection: a text frame for a
        ``str``, a binary frame for ``bytes``."""
        return self._server.send_raw(text)

    # ------------------------------------------------------------------ sessions

    @property
    def session_requests(self) -> list[tuple[str, Any]]:
        """``(method, params)`` of every session-subscription request received, oldest first."""
        with self._cond:
            return list(self._sessions.requests)

    def session_subscribers(self, key: str) -> int:
        """How many open connections are subscribed to ``key``'s messages."""
        return self._sessions.subscribers(key)

    def publish_session_message(self, key: str, message: Any) -> int:
        """Send ``session.message`` to the connections subscribed to ``key``."""
        return self._sessions.publish_message(key, message)

    def publish_sessions_changed(self, payload: Any) -> int:
        """Send ``sessions.changed`` to the connections that called ``sessions.subscribe``."""
        return self._sessions.publish_changed(payload)

    # ------------------------------------------------------------------ faults

    def drop_connections(self, timeout: float = 5.0) -> int:
        """Kill every socket without a close frame (TCP shutdown); the client sees
        an abnormal closure. Waits until the server side has let go of them."""
        return self._server.drop_connections(timeout)

    def close_connections(self, code: int = 1000, reason: str = "", *, wait: bool = False) -> int:
        """Close every open WebSocket with a close frame ``(code, reason)``.

        Returns at once unless ``wait`` (then after each closing handshake, or
        ``close_timeout``, completes).
        """
        return self._server.close_connections(code, reason, wait=wait)

    def reject_next_connects(
        self,
        n: int,
        *,
        code: str,
        message: str,
        details: Any = None,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
        close_code: int = 1008,
        close_reason: str = "",
        respond: bool = True,
    ) -> None:
        """Answer the next ``n`` (schema-valid) connect requests with this error
        and close the socket ``(close_code, close_reason)``; with ``respond=False`` only
        close it (no response frame)."""
        self._faults.reject_next_connects(
            n,
            code=code,
            message=message,
            details=details,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            close_code=close_code,
            close_reason=close_reason,
            respond=respond,
        )

    def reject_next_like_protocol_3(self, n: int = 1, *, respond: bool = True) -> None:
        """Refuse the next ``n`` connects the way a protocol-3 gateway (openclaw <= 2026.5.7)
        refuses a protocol-4 client: ``INVALID_REQUEST`` "protocol mismatch" with
        ``details: {expectedProtocol: 3}`` (no ``details.code``), then close 1002
        "protocol mismatch"; ``respond=False`` sends only the close."""
        self._faults.reject_next_like_protocol_3(n, respond=respond)

    def reject_next_unavailable(self, n: int = 1, retry_after_ms: int = 500) -> None:
        """The startup rejection: UNAVAILABLE "gateway starting; retry shortly",
        retryable, details ``{reason:"startup-sidecars"}``, close 1013 "gateway starting"."""
        self._faults.reject_next_unavailable(n, retry_after_ms)

    def set_method_delay(self, method: str, seconds: float | None) -> None:
        """Answer ``method`` after ``seconds`` from a worker thread (other requests
        are answered meanwhile); None or 0 removes the delay. For
        ``dev.twostage`` only the final response is delayed."""
        self._faults.set_method_delay(method, seconds)

    def never_answer(self, method: str) -> None:
        """Swallow requests for ``method`` (counted, never answered)."""
        self._faults.never_answer(method)

    def answer_busy(self, n: int, method: str | None = None, *, retry_after_ms: int | None = None,
                    message: str = "The server is busy. Please try again in a moment.") -> None:
        """Answer the next ``n`` requests (for ``method``, or any but ``connect``) the way
        the real gateway answers when its request start queue is full: ``UNAVAILABLE``
        with ``retryable: true`` (and ``retryAfterMs`` if given), before the method runs
        (the request is counted in ``requests_by_method``, its handler never called)."""
        self._faults.answer_busy(n, method, retry_after_ms=retry_after_ms, message=message)

    @property
    def busy_answers(self) -> int:
        """How many requests got a busy answer from :meth:`answer_busy`."""
        return self._faults.busy_answers

    def clear_faults(self) -> None:
        """Drop method delays, never-answer methods, queued connect rejections and
        pending seq skips (ticking is left as it is)."""
        self._faults.clear()
        self._server.clear_skips()

    # ------------------------------------------------------------------ methods and auth

    def set_handler(self, method: str, fn: Handler | None, *, scope: str | None = None) -> None:
        """Serve ``method`` with ``fn(params) -> payload`` (raise DevGatewayError for
        ok:false). Overrides built-ins; ``fn=None`` removes it. ``scope`` is checked
        only with ``enforce_scopes``."""
        self._methods.set_handler(method, fn, scope=scope)

    @property
    def policy_overrides(self) -> dict[str, Any]:
        """Merged into hello-ok's ``policy`` (e.g. an absurd ``tickIntervalMs``); the
        gateway's own tick cadence is unchanged (the handshake's; changes apply to the
        next hello-ok)."""
        return self._handshake.policy_overrides

    @policy_overrides.setter
    def policy_overrides(self, value: dict[str, Any]) -> None:
        self._handshake.policy_overrides = value

    def set_token(self, token: str | None, *, close_existing: bool = False) -> None:
        """Change the shared token at runtime; ``close_existing`` closes the
        handshaken sockets 4001 "gateway auth changed" like the real gateway."""
        self._handshake.set_token(token)
        if close_existing:
            self._server.close_handshaken(4001, "gateway auth changed")

    def set_password(self, password: str | None, *, close_existing: bool = False) -> None:
        """Like :meth:`set_token` for the shared password."""
        self._handshake.set_password(password)
        if close_existing:
            self._server.close_handshaken(4001, "gateway auth changed")

    # ------------------------------------------------------------------ pairing

    def pending_pairing_requests(self) -> list[dict[str, Any]]:
        """Pending pairing requests: requestId, deviceId, publicKey, role, scopes,
        reason, clientId, clientMode, platform, deviceFamily, displayName, ts."""
        with self._cond:
            return [r.as_dict() for r in self._pairing.pending.values()]

    def approve(self, request_id: str) -> dict[str, Any]:
        """Approve a pending pairing request (KeyError if unknown); returns the
        paired device. The client must reconnect to get its deviceToken."""
        with self._cond:
            paired = self._pairing.approve(request_id)
            self._cond.notify_all()
            return paired.as_dict()

    def reject(self, request_id: str) -> None:
        """Drop a pending pairing request (KeyError if unknown)."""
        with self._cond:
            self._pairing.reject(request_id)
            self._cond.notify_all()

    def paired_devices(self) -> list[dict[str, Any]]:
        """Paired devices: deviceId, publicKey, roles, scopes, platform,
        deviceFamily, approvedAtMs, tokenCount."""
        with self._cond:
            return [p.as_dict() for p in self._pairing.paired.values()]

    def invalidate_device_tokens(self, device_id: str | None = None) -> int:
        """Forget issued device tokens (of one device, or all); returns how many.
        Later connects with them get AUTH_DEVICE_TOKEN_MISMATCH."""
        with self._cond:
            return self._pairing.invalidate_tokens(device_id)

    def revoke_device(self, device_id: str, *, close_existing: bool = True) -> bool:
        """Unpair a device; its sockets are closed 4001 "client invalidated:
        device revoked" unless ``close_existing`` is False."""
        with self._cond:
            removed = self._pairing.revoke(device_id)
        if close_existing:
            self._server.close_handshaken(4001, "client invalidated: device revoked", device_id=device_id)
        return removed
