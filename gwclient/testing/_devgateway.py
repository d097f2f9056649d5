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

import copy
import hmac
import json
import logging
import os
import socket
import ssl
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from gwclient.testing._devgw_pairing import PAIRING_REASONS, PairingStore
from gwclient.testing._devgw_proto import (
    MAX_BUFFERED_BYTES,
    MAX_PAYLOAD,
    PREAUTH_MAX_PAYLOAD,
    PROTOCOL_VERSION,
    ROLES,
    DevGatewayError,
    DeviceProofError,
    error_shape,
    protocol_accepted,
    scope_satisfied,
    truncate_close_reason,
    unauthorized_error,
    validate_connect_params,
    validate_request_frame,
    verify_device_proof,
)
from gwclient.testing._devgw_runs import RUN_EVENTS, RUN_METHODS, DevRuns
from gwclient.testing._devgw_server import (
    GatewayServerBase,
    _Conn,
    _DevServerConnection,
    _Lifetime,
    _now_ms,
    _Tracked,
)

__all__ = ["DevGateway", "DevGatewayError"]

_log = logging.getLogger("gwclient.testing.devgateway")

Handler = Callable[[Any], Any]

BUILTIN_METHODS = ("health", "status", "system-presence", "echo", "dev.twostage", "sessions.messages.subscribe",
                   "sessions.messages.unsubscribe", "sessions.subscribe")
EVENTS = ("connect.challenge", "tick", "health", "shutdown", "presence", "heartbeat", *RUN_EVENTS)
# method -> scope required when enforce_scopes=True (health/echo/dev.* need none)
METHOD_SCOPES = {"status": "operator.read", "system-presence": "operator.read"}
_EPHEMERAL_MODES = ("cli", "backend", "probe")


def canonical_session_key(key: str, agent_id: str = "main") -> str:
    """``"main"`` -> ``agent:main:main``; keys without the ``agent:<id>:`` prefix get it."""
    key = key.strip()
    return key if key.startswith("agent:") else f"agent:{agent_id}:{key}"


class _Reject(Exception):
    """Handshake rejection: res ok:false with ``error`` then close(code, reason)."""

    def __init__(self, error: dict[str, Any] | None, close_code: int, close_reason: str) -> None:
        super().__init__(error.get("message") if error else close_reason)
        self.error = error
        self.close_code = close_code
        self.close_reason = close_reason


@dataclass
class _Rejection:
    error: dict[str, Any] | None  # None: close without a response
    close_code: int
    close_reason: str


class DevGateway(GatewayServerBase):
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
        except ConnectionClosed:
            pass
        finally:
            cs.closed.set()
            with self._cond:
                cs.handshaken = False
                self._conns.discard(cs)
                self._cond.notify_all()

    # ------------------------------------------------------------------ handshake

    def _handshake(self, cs: _Conn, data: str | bytes) -> bool:
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))
        if size > PREAUTH_MAX_PAYLOAD:
            cs.ws.close(1009, "preauth payload too large")
            return False
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not (
            isinstance(frame, dict)
            and frame.get("type") == "req"
            and isinstance(frame.get("id"), str)
            and frame["id"]
            and isinstance(frame.get("method"), str)
        ):
            cs.ws.close(1008, "invalid handshake")
            return False
        try:
            hello = self._admit(cs, frame)
        except _Reject as rej:
            _log.info("connect rejected: %s", rej)
            if rej.error is not None:
                self._send_res(cs, frame["id"], False, rej.error)
            cs.ws.close(rej.close_code, truncate_close_reason(rej.close_reason))
            return False
        with cs.send_lock:
            if not self._send_res(cs, frame["id"], True, hello):
                return False
            with self._cond:
                cs.handshaken = True
                cs.connected_at_ms = _now_ms()
                self._handshakes_completed += 1
                version = dict(self._state_version)
                self._cond.notify_all()
            self._send_event(cs, "health", self._health_payload(), version)
        return True

    def _admit(self, cs: _Conn, frame: dict[str, Any]) -> dict[str, Any]:
        """Validate a connect frame; returns the hello-ok payload or raises _Reject."""
        problem = validate_request_frame(frame)
        method = frame["method"]
        self._note_request(method)
        if problem:
            raise _Reject(
                error_shape("INVALID_REQUEST", f"invalid request frame: {problem}"),
                1008,
                "invalid request frame",
            )
        if method != "connect":
            raise _Reject(
                error_shape("INVALID_REQUEST", "invalid handshake: first request must be connect"),
                1008,
                "invalid handshake",
            )
        raw_params = frame.get("params")
        with self._cond:
            self._connect_attempts += 1
            self._connect_log.append(copy.deepcopy(raw_params))
            self._cond.notify_all()
        problem = validate_connect_params(raw_params)
        if problem or not isinstance(raw_params, dict):
            raise _Reject(
                error_shape("INVALID_REQUEST", f"invalid connect params: {problem}"),
                1008,
                "invalid connect params",
            )
        params: dict[str, Any] = raw_params
        client: dict[str, Any] = params["client"]
        role = params.get("role", "operator")
        if not protocol_accepted(params["minProtocol"], params["maxProtocol"], role, client["mode"]):
            details = {
                "code": "PROTOCOL_MISMATCH",
                "clientMinProtocol": params["minProtocol"],
                "clientMaxProtocol": params["maxProtocol"],
                "expectedProtocol": PROTOCOL_VERSION,
                "minimumProbeProtocol": 3,
            }
            raise _Reject(
                error_shape("INVALID_REQUEST", "protocol mismatch", details),
                1002,
                "protocol mismatch",
            )
        if role not in ROLES:
            raise _Reject(error_shape("INVALID_REQUEST", "invalid role"), 1008, "invalid role")
        with self._lock:
            injected = self._rejections.popleft() if self._rejections else None
        if injected is not None:
            raise _Reject(injected.error, injected.close_code, injected.close_reason)

        scopes: list[str] = list(params.get("scopes") or [])
        auth_method, device_token = self._authenticate(cs, params, role, scopes)
        if (
            params.get("device") is None
            and self._enforce_scopes
            and not (
                cs.origin is None and (client["id"], client["mode"]) in (("cli", "cli"), ("gateway-client", "backend"))
            )
        ):
            scopes = []
        cs.client = dict(client)
        cs.role = role
        cs.scopes = scopes
        cs.auth_method = auth_method
        auth: dict[str, Any] = {"method": auth_method, "role": role, "scopes": list(scopes)}
        if device_token is not None:
            auth["deviceToken"], auth["issuedAtMs"] = device_token
        with self._lock:
            methods = sorted(set(BUILTIN_METHODS) | set(RUN_METHODS) | set(self._handlers))
            version = dict(self._state_version)
            presence = self._presence_entries()
        return {
            "type": "hello-ok",
            "protocol": PROTOCOL_VERSION,
            "server": {"version": "dev", "connId": cs.conn_id, "bootId": f"{id(self):x}-{self.lifetimes}"},
            "features": {"methods": methods, "events": list(EVENTS), "capabilities": []},
            "snapshot": {
                "presence": presence,
                "health": self._health_payload(),
                "stateVersion": version,
                "uptimeMs": self._uptime_ms(),
                "sessionDefaults": {
                    "defaultAgentId": "main",
                    "mainKey": "main",
                    "mainSessionKey": "agent:main:main",
                    "modelConfigured": False,
                },
            },
            "policy": {
                "maxPayload": MAX_PAYLOAD,
                "maxBufferedBytes": MAX_BUFFERED_BYTES,
                "tickIntervalMs": self._tick_interval_ms,
                **self.policy_overrides,
            },
            "auth": auth,
        }

    def _authenticate(
        self, cs: _Conn, params: dict[str, Any], role: str, scopes: list[str]
    ) -> tuple[str, tuple[str, int] | None]:
        """Shared secret / device proof / device token / pairing (connect-auth.ts order)."""
        auth: dict[str, Any] = params.get("auth") or {}
        device: dict[str, Any] | None = params.get("device")
        with self._lock:
            token, password = self._token, self._password
        mode = "token" if token is not None else "password" if password is not None else "none"
        provided = [auth[k] for k in ("token", "password") if auth.get(k)]
        shared_method: str | None = None
        for secret in provided:
            if token is not None and hmac.compare_digest(secret, token):
                shared_method = "token"
            elif password is not None and hmac.compare_digest(secret, password):
                shared_method = "password"
            if shared_method:
                break

        if device is None:
            if mode == "none":
                return "none", None
            if shared_method:
                return shared_method, None
            if provided:
                error, close_reason = unauthorized_error(params, f"{mode}_mismatch", has_device=False)
                raise _Reject(error, 1008, close_reason)
            raise _Reject(
                error_shape(
                    "NOT_PAIRED",
                    "device identity required",
                    {"code": "DEVICE_IDENTITY_REQUIRED"},
                ),
                1008,
                "device identity required",
            )

        try:
            raw_key, _version = verify_device_proof(params, role, cs.nonce, _now_ms())
        except DeviceProofError as exc:
            raise _Reject(
                error_shape("INVALID_REQUEST", exc.message, {"code": exc.detail_code, "reason": exc.reason}),
                1008,
                exc.message,
            ) from None
        device_id: str = device["id"]
        if mode == "none":
            method = "none"
        elif shared_method:
            method = shared_method
        else:
            candidate: str = auth.get("deviceToken") or auth.get("token") or ""
            with self._lock:
                ok = bool(candidate) and self._pairing.token_valid(device_id, raw_key, candidate)
            if not ok:
                if provided:
                    reason = f"{mode}_mismatch"
                elif auth.get("deviceToken"):
                    reason = "device_token_mismatch"
                else:
                    reason = f"{mode}_missing"
                error, close_reason = unauthorized_error(params, reason, has_device=True)
                raise _Reject(error, 1008, close_reason)
            method = "device-token"
        cs.device_id = device_id
        return method, self._pair(
            cs,
            params,
            device_id=device_id,
            raw_key=raw_key,
            role=role,
            scopes=scopes,
            method=method,
        )

    def _pair(
        self,
        cs: _Conn,
        params: dict[str, Any],
        *,
        device_id: str,
        raw_key: bytes,
        role: str,
        scopes: list[str],
        method: str,
    ) -> tuple[str, int]:
        client: dict[str, Any] = params["client"]
        with self._cond:
            reason = self._pairing.requirement(device_id, raw_key, role, scopes, client)
            if reason is not None:
                request = self._pairing.request(
                    device_id,
                    public_key=raw_key,
                    role=role,
                    scopes=scopes,
                    client=client,
                    reason=reason,
                )
                silent = (
                    self._auto_approve
                    and cs.origin is None
                    and (reason in ("not-paired", "role-upgrade") or method in ("token", "password", "none"))
                )
                if silent:
                    self._pairing.approve(request.request_id)
                else:
                    self._cond.notify_all()
                    paired = self._pairing.paired.get(device_id)
                    message, requirement, hint = PAIRING_REASONS[reason]
                    details: dict[str, Any] = {
                        "code": "PAIRING_REQUIRED",
                        "reason": reason,
                        "requestId": request.request_id,
                        "remediationHint": hint,
                        "deviceId": device_id,
                        "requestedRole": role,
                    }
                    if scopes:
                        details["requestedScopes"] = list(scopes)
                    if paired is not None and paired.public_key == raw_key:
                        details["approvedRoles"] = sorted(paired.roles)
                        if paired.scopes:
                            details["approvedScopes"] = sorted(paired.scopes)
                    raise _Reject(
                        error_shape("NOT_PAIRED", message, details),
                        1008,
                        f"pairing required: {requirement} (requestId: {request.request_id})",
                    )
            issued = self._pairing.issue_token(device_id)
            self._cond.notify_all()
            return issued

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

    # ------------------------------------------------------------------ public: counters

    @property
    def handshakes_completed(self) -> int:
        """Connections that got hello-ok."""
        with self._lock:
            return self._handshakes_completed

    @property
    def connect_attempts(self) -> int:
        """``connect`` request frames received (valid or not)."""
        with self._lock:
            return self._connect_attempts

    @property
    def requests_by_method(self) -> dict[str, int]:
        """Copy of the per-method request counts (``connect`` included)."""
        with self._lock:
            return dict(self._requests_by_method)

    @property
    def connect_requests(self) -> list[Any]:
        """Deep copies of every ``connect`` params object received, oldest first
        (they contain the secrets the client sent)."""
        with self._lock:
            return copy.deepcopy(self._connect_log)

    @property
    def invalid_frames(self) -> int:
        """Frames after hello-ok that were not valid request frames."""
        with self._lock:
            return self._invalid_frames

    def connections(self) -> list[dict[str, Any]]:
        """Info about handshaken connections: connId, client, role, scopes,
        authMethod, deviceId, origin, lastSeq."""
        with self._lock:
            return [
                {
                    "connId": cs.conn_id,
                    "client": dict(cs.client),
                    "role": cs.role,
                    "scopes": list(cs.scopes),
                    "authMethod": cs.auth_method,
                    "deviceId": cs.device_id,
                    "origin": cs.origin,
                    "lastSeq": cs.seq,
                }
                for cs in self._conns
                if cs.handshaken
            ]

    # ------------------------------------------------------------------ public: faults

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
        error = error_shape(code, message, details, retryable=retryable, retry_after_ms=retry_after_ms)
        with self._lock:
            for _ in range(n):
                self._rejections.append(
                    _Rejection(copy.deepcopy(error) if respond else None, close_code, close_reason)
                )

    def reject_next_like_protocol_3(self, n: int = 1, *, respond: bool = True) -> None:
        """Refuse the next ``n`` connects the way a protocol-3 gateway (openclaw <= 2026.5.7)
        refuses a protocol-4 client: ``INVALID_REQUEST`` "protocol mismatch" with
        ``details: {expectedProtocol: 3}`` (no ``details.code``), then close 1002
        "protocol mismatch"; ``respond=False`` sends only the close."""
        self.reject_next_connects(
            n,
            code="INVALID_REQUEST",
            message="protocol mismatch",
            details={"expectedProtocol": 3},
            close_code=1002,
            close_reason="protocol mismatch",
            respond=respond,
        )

    def reject_next_unavailable(self, n: int = 1, retry_after_ms: int = 500) -> None:
        """The startup rejection: UNAVAILABLE "gateway starting; retry shortly",
        retryable, details ``{reason:"startup-sidecars"}``, close 1013 "gateway starting"."""
        self.reject_next_connects(
            n,
            code="UNAVAILABLE",
            message="gateway starting; retry shortly",
            details={"reason": "startup-sidecars"},
            retryable=True,
            retry_after_ms=retry_after_ms,
            close_code=1013,
            close_reason="gateway starting",
        )

    def set_method_delay(self, method: str, seconds: float | None) -> None:
        """Answer ``method`` after ``seconds`` from a worker thread (other requests
        are answered meanwhile); None or 0 removes the delay. For
        ``dev.twostage`` only the final response is delayed."""
        with self._lock:
            if seconds:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def never_answer(self, method: str) -> None:
        """Swallow requests for ``method`` (counted, never answered)."""
        with self._lock:
            self._never.add(method)

    def clear_faults(self) -> None:
        """Drop method delays, never-answer methods, queued connect rejections and
        pending seq skips (ticking is left as it is)."""
        with self._lock:
            self._delays.clear()
            self._never.clear()
            self._rejections.clear()
        for cs in self._handshaken():
            with cs.send_lock:
                cs.pending_skip = 0

    def set_handler(self, method: str, fn: Handler | None, *, scope: str | None = None) -> None:
        """Serve ``method`` with ``fn(params) -> payload`` (raise DevGatewayError for
        ok:false). Overrides built-ins; ``fn=None`` removes it. ``scope`` is checked
        only with ``enforce_scopes``."""
        with self._lock:
            if fn is None:
                self._handlers.pop(method, None)
                self._handler_scopes.pop(method, None)
            else:
                self._handlers[method] = fn
                self._handler_scopes[method] = scope

    def set_token(self, token: str | None, *, close_existing: bool = False) -> None:
        """Change the shared token at runtime; ``close_existing`` closes the
        handshaken sockets 4001 "gateway auth changed" like the real gateway."""
        with self._lock:
            self._token = token
        if close_existing:
            self._close_handshaken(4001, "gateway auth changed")

    def set_password(self, password: str | None, *, close_existing: bool = False) -> None:
        """Like :meth:`set_token` for the shared password."""
        with self._lock:
            self._password = password
        if close_existing:
            self._close_handshaken(4001, "gateway auth changed")

    def _close_handshaken(self, code: int, reason: str) -> None:
        for cs in self._handshaken():
            self._spawn("close", cs.ws.close, code, reason)

    # ------------------------------------------------------------------ public: pairing

    def pending_pairing_requests(self) -> list[dict[str, Any]]:
        """Pending pairing requests: requestId, deviceId, publicKey, role, scopes,
        reason, clientId, clientMode, platform, deviceFamily, displayName, ts."""
        with self._lock:
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
        with self._lock:
            return [p.as_dict() for p in self._pairing.paired.values()]

    def invalidate_device_tokens(self, device_id: str | None = None) -> int:
        """Forget issued device tokens (of one device, or all); returns how many.
        Later connects with them get AUTH_DEVICE_TOKEN_MISMATCH."""
        with self._lock:
            return self._pairing.invalidate_tokens(device_id)

    def revoke_device(self, device_id: str, *, close_existing: bool = True) -> bool:
        """Unpair a device; its sockets are closed 4001 "client invalidated:
        device revoked" unless ``close_existing`` is False."""
        with self._lock:
            removed = self._pairing.revoke(device_id)
            victims = [cs for cs in self._conns if cs.handshaken and cs.device_id == device_id]
        if close_existing:
            for cs in victims:
                self._spawn("close", cs.ws.close, 4001, "client invalidated: device revoked")
        return removed
