"""DevGateway: a loopback OpenClaw gateway (protocol 4) with fault controls for tests.

A real WebSocket server (``websockets`` sync API, one thread per socket) that
speaks the handshake, request/response and event parts of the protocol the way
the real gateway does (see PROTOCOL.md), plus knobs to make it misbehave.

Threads are all named ``devgw-...`` and :meth:`DevGateway.stop` joins every one
of them, so a test that stops its gateway leaves nothing running.

Example::

    with DevGateway(token="secret", tick_interval_ms=200) as gw:
        ws = websocket.create_connection(gw.url, suppress_origin=True, timeout=5)
        ...
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import sys
import time
import uuid
from collections import deque
from typing import Any

from websockets.exceptions import ConnectionClosed

from gwclient.testing._devgw_controls import _DevGatewayControls
from gwclient.testing._devgw_handshake import Handler, _DevGatewayHandshake, _Rejection
from gwclient.testing._devgw_pairing import PairingStore
from gwclient.testing._devgw_proto import (
    DevGatewayError,
    error_shape,
    scope_satisfied,
    validate_request_frame,
)
from gwclient.testing._devgw_runs import RUN_METHODS, DevRuns
from gwclient.testing._devgw_server import (
    _Conn,
    _DevServerConnection,
    _Lifetime,
    _now_ms,
    _Tracked,
)

__all__ = ["DevGateway", "DevGatewayError"]

_log = logging.getLogger("gwclient.testing.devgateway")

# method -> scope required when enforce_scopes=True (health/echo/dev.* need none)
METHOD_SCOPES = {"status": "operator.read", "system-presence": "operator.read"}
_EPHEMERAL_MODES = ("cli", "backend", "probe")


def canonical_session_key(key: str, agent_id: str = "main") -> str:
    """``"main"`` -> ``agent:main:main``; keys without the ``agent:<id>:`` prefix get it."""
    key = key.strip()
    return key if key.startswith("agent:") else f"agent:{agent_id}:{key}"


class DevGateway(_DevGatewayHandshake, _DevGatewayControls):
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
        super().__init__(
            host=host,
            port=port,
            tick_interval_ms=tick_interval_ms,
            ping_interval=ping_interval,
            ssl_context=ssl_context,
            close_timeout=close_timeout,
        )
        self._token = token
        self._password = password
        self._auto_approve = auto_approve
        self._enforce_scopes = enforce_scopes
        self._handshake_timeout = handshake_timeout

        self._pairing = PairingStore()
        self._handlers: dict[str, Handler] = {}
        self._handler_scopes: dict[str, str | None] = {}
        self._delays: dict[str, float] = {}
        self._never: set[str] = set()
        self._rejections: deque[_Rejection] = deque()
        self._state_version = {"presence": 1, "health": 1}
        #: Merged into hello-ok's ``policy`` (e.g. an absurd ``tickIntervalMs``); the
        #: gateway's own tick cadence is unchanged.
        self.policy_overrides: dict[str, Any] = {}
        self._session_subs: dict[str, set[str]] = {}
        self._sessions_subscribed: set[str] = set()

        self._handshakes_completed = 0
        self._connect_attempts = 0
        self._requests_by_method: dict[str, int] = {}
        self._connect_log: list[Any] = []
        self._invalid_frames = 0
        self._client_closes: list[int | None] = []
        self.runs = DevRuns(self)  # agent/chat runs (_devgw_runs.py)

    def _handle_ws(self, lt: _Lifetime, item: _Tracked, ws: _DevServerConnection) -> None:
        cs = _Conn(ws=ws, conn_id=str(uuid.uuid4()), nonce=str(uuid.uuid4()), origin=ws.devgw_origin)
        with self._cond:
            item.state = cs
            self._conns.add(cs)
            stopping = lt.stopping
            self._cond.notify_all()
        try:
            if stopping:
                ws.close(1012, "service restart")
                return
            challenge = {"nonce": cs.nonce, "ts": _now_ms(), "capabilities": []}
            self._send(cs, {"type": "event", "event": "connect.challenge", "payload": challenge})
            try:
                first = ws.recv(timeout=self._handshake_timeout)
            except TimeoutError:
                ws.close(1000, "")
                return
            if not self._handshake(cs, first):
                return
            while True:
                self._on_frame(cs, ws.recv())
        except ConnectionClosed as exc:
            with self._cond:
                self._client_closes.append(exc.rcvd.code if exc.rcvd is not None else None)
        finally:
            cs.closed.set()
            with self._cond:
                cs.handshaken = False
                self._conns.discard(cs)
                self._cond.notify_all()

    # ------------------------------------------------------------------ requests

    def _note_request(self, method: str) -> None:
        with self._cond:
            self._requests_by_method[method] = self._requests_by_method.get(method, 0) + 1
            self._cond.notify_all()

    def _on_frame(self, cs: _Conn, data: str | bytes) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "req":
            with self._cond:
                self._invalid_frames += 1
                self._cond.notify_all()
            return
        problem = validate_request_frame(frame)
        if problem:
            with self._cond:
                self._invalid_frames += 1
                self._cond.notify_all()
            if "id" in frame:
                error = error_shape("INVALID_REQUEST", f"invalid request frame: {problem}")
                self._send_res(cs, frame["id"], False, error)
            return
        req_id: str = frame["id"]
        method: str = frame["method"]
        params = frame.get("params")
        if params is None:
            params = {}
        self._note_request(method)
        if method == "connect":
            error = error_shape("INVALID_REQUEST", "invalid handshake: already connected")
            self._send_res(cs, req_id, False, error)
            return
        with self._lock:
            if method in self._never:
                return
            delay = self._delays.get(method, 0.0)
            custom = method in self._handlers
        if method in RUN_METHODS and not custom:
            self.runs.handle(cs, req_id, method, params)
            return
        run_id: str | None = None
        if method == "dev.twostage" and not custom:
            run_id = str(uuid.uuid4())
            accepted = {"status": "accepted", "runId": run_id, "acceptedAt": _now_ms()}
            self._send_res(cs, req_id, True, accepted)
        if delay > 0:
            self._spawn("delay", self._answer, cs, (req_id, method, params, run_id), delay)
        else:
            self._answer(cs, (req_id, method, params, run_id), 0.0)

    def _answer(self, cs: _Conn, request: tuple[str, str, Any, str | None], delay: float) -> None:
        if delay > 0 and cs.closed.wait(delay):
            return
        req_id, method, params, run_id = request
        if run_id is not None:
            self._send_res(cs, req_id, True, {"status": "ok", "runId": run_id, "result": params})
        else:
            ok, body = self._call(cs, method, params)
            self._send_res(cs, req_id, ok, body)

    def _call(self, cs: _Conn, method: str, params: Any) -> tuple[bool, Any]:
        with self._lock:
            handler = self._handlers.get(method)
            scope = self._handler_scopes.get(method) if handler else METHOD_SCOPES.get(method)
        if self._enforce_scopes and scope and not scope_satisfied(scope, cs.scopes):
            details = {"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]}
            return False, error_shape("FORBIDDEN", f"missing scope: {scope}", details)
        try:
            if handler is not None:
                return True, handler(params)
            if method == "health":
                return True, self._health_payload()
            if method == "status":
                return True, self._status_payload()
            if method == "system-presence":
                with self._lock:
                    return True, self._presence_entries()
            if method == "echo":
                return True, params
            if method in ("sessions.messages.subscribe", "sessions.messages.unsubscribe", "sessions.subscribe"):
                return self._session_subscription(cs, method, params)
        except DevGatewayError as exc:
            return False, exc.shape()
        except Exception as exc:
            _log.warning("handler for %s failed", method, exc_info=True)
            return False, error_shape("UNAVAILABLE", f"handler failed: {exc}", retryable=True)
        return False, error_shape("INVALID_REQUEST", f"unknown method: {method}")

    def _session_subscription(self, cs: _Conn, method: str, params: Any) -> tuple[bool, Any]:
        """Per-connection subscriptions, like the real gateway's (keyed by connection:
        lost on reconnect until the client subscribes again)."""
        if method == "sessions.subscribe":
            with self._lock:
                self._sessions_subscribed.add(cs.conn_id)
            return True, {"subscribed": True}
        key = params.get("key") if isinstance(params, dict) else None
        if not isinstance(key, str) or not key.strip():
            return False, error_shape("INVALID_REQUEST", "invalid sessions.messages params: key required")
        canonical = canonical_session_key(key)
        with self._lock:
            keys = self._session_subs.setdefault(cs.conn_id, set())
            if method.endswith(".subscribe"):
                keys.add(canonical)
            else:
                keys.discard(canonical)
            subscribed = canonical in keys
        return True, {"subscribed": subscribed, "key": canonical}

    @property
    def client_close_codes(self) -> list[int | None]:
        """For every connection that ended: the close code the client sent (``None``: the
        socket ended without a close frame from the client)."""
        with self._cond:
            return list(self._client_closes)

    def session_subscribers(self, key: str) -> int:
        """How many open connections are subscribed to ``key``'s messages."""
        canonical = canonical_session_key(key)
        open_ids = {cs.conn_id for cs in self._handshaken()}
        with self._lock:
            return sum(1 for cid, keys in self._session_subs.items() if cid in open_ids and canonical in keys)

    def publish_session_message(self, key: str, message: Any) -> int:
        """Send ``session.message`` to the connections subscribed to ``key``."""
        canonical = canonical_session_key(key)
        with self._lock:
            targets = {cid for cid, keys in self._session_subs.items() if canonical in keys}
        payload = {"sessionKey": canonical, "agentId": canonical.split(":")[1], "message": message}
        return sum(1 for cs in self._handshaken()
                   if cs.conn_id in targets and self._send_event(cs, "session.message", payload))

    def publish_sessions_changed(self, payload: Any) -> int:
        """Send ``sessions.changed`` to the connections that called ``sessions.subscribe``."""
        with self._lock:
            targets = set(self._sessions_subscribed)
        return sum(1 for cs in self._handshaken()
                   if cs.conn_id in targets and self._send_event(cs, "sessions.changed", payload))

    def _uptime_ms(self) -> int:
        return int((time.monotonic() - self._start_monotonic) * 1000)

    def _health_payload(self) -> dict[str, Any]:
        return {
            "ok": True,
            "ts": _now_ms(),
            "durationMs": 0,
            "heartbeatSeconds": 0,
            "defaultAgentId": "main",
            "agents": [],
            "sessions": {"count": 0, "recent": []},
            "channels": {},
            "channelOrder": [],
            "channelLabels": {},
        }

    def _status_payload(self) -> dict[str, Any]:
        with self._lock:
            clients = len([cs for cs in self._conns if cs.handshaken])
        return {  # the real gateway's field names (runtimeVersion, pid, heartbeat...)
            "ok": True,
            "runtimeVersion": "dev",
            "pid": os.getpid(),
            "uptimeMs": self._uptime_ms(),
            "connections": clients,
            "sessions": {
                "count": 0,
                "recent": [],
                "defaults": {"defaultAgentId": "main", "mainSessionKey": "agent:main:main"},
            },
            "heartbeat": {"enabled": False},
        }

    def _presence_entries(self) -> list[dict[str, Any]]:
        """Gateway self entry plus non-ephemeral clients (caller holds the lock)."""
        entries: list[dict[str, Any]] = [
            {
                "ts": _now_ms(),
                "host": socket.gethostname(),
                "mode": "gateway",
                "reason": "self",
                "version": "dev",
                "platform": sys.platform,
            }
        ]
        for cs in self._conns:
            if cs.handshaken and cs.client.get("mode") not in _EPHEMERAL_MODES:
                entry = {
                    "ts": cs.connected_at_ms,
                    "clientId": cs.client.get("id"),
                    "mode": cs.client.get("mode"),
                    "platform": cs.client.get("platform"),
                    "version": cs.client.get("version"),
                    "roles": [cs.role],
                    "scopes": list(cs.scopes),
                }
                for key in ("instanceId", "deviceFamily", "displayName"):
                    if key in cs.client:
                        entry[key] = cs.client[key]
                if cs.device_id:
                    entry["deviceId"] = cs.device_id
                entries.append(entry)
        return entries
