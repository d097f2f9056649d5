"""The requests a :class:`~gwclient.testing.DevGateway` answers after hello-ok
(:class:`Methods`): frame validation, the injected faults (delay, never answer), custom
handlers (``set_handler``), scope checks, the built-in methods (``health``, ``status``,
``system-presence``, ``echo``, ``dev.twostage``) and the hand-off of run methods
(:mod:`~gwclient.testing._devgw_runs`) and session subscriptions
(:mod:`~gwclient.testing._devgw_sessions`).  A new built-in method is a name in
:data:`BUILTIN_METHODS` and a branch of :meth:`Methods._builtin`."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

from gwclient.testing._devgw_controls import Faults
from gwclient.testing._devgw_proto import DevGatewayError, error_shape, scope_satisfied, validate_request_frame
from gwclient.testing._devgw_recorder import Recorder
from gwclient.testing._devgw_runs import RUN_METHODS, DevRuns
from gwclient.testing._devgw_server import GatewayServer, _Conn, _now_ms
from gwclient.testing._devgw_sessions import SESSION_METHODS, SessionSubscriptions

__all__ = ["BUILTIN_METHODS", "METHOD_SCOPES", "Handler", "Methods"]

_log = logging.getLogger("gwclient.testing.devgateway")

Handler = Callable[[Any], Any]

BUILTIN_METHODS = ("health", "status", "system-presence", "echo", "dev.twostage", *SESSION_METHODS)
# method -> scope required when enforce_scopes=True (health/echo/dev.* need none)
METHOD_SCOPES = {"status": "operator.read", "system-presence": "operator.read"}
_EPHEMERAL_MODES = ("cli", "backend", "probe")


class Methods:
    """Request dispatch and the custom handlers; thread-safe (its own lock)."""

    def __init__(
        self,
        *,
        server: GatewayServer,
        recorder: Recorder,
        faults: Faults,
        runs: DevRuns,
        sessions: SessionSubscriptions,
        enforce_scopes: bool,
    ) -> None:
        self._server = server
        self._recorder = recorder
        self._faults = faults
        self._runs = runs
        self._sessions = sessions
        self._enforce_scopes = enforce_scopes
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._handler_scopes: dict[str, str | None] = {}

    # -- controls ----------------------------------------------------------------------

    def set_handler(self, method: str, fn: Handler | None, *, scope: str | None = None) -> None:
        with self._lock:
            if fn is None:
                self._handlers.pop(method, None)
                self._handler_scopes.pop(method, None)
            else:
                self._handlers[method] = fn
                self._handler_scopes[method] = scope

    def names(self) -> list[str]:
        """Every method served (hello-ok's ``features.methods``)."""
        with self._lock:
            return sorted(set(BUILTIN_METHODS) | set(RUN_METHODS) | set(self._handlers))

    # -- dispatch (on the connection's thread) -----------------------------------------

    def on_frame(self, cs: _Conn, data: str | bytes) -> None:
        """Handle one frame received after hello-ok."""
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "req":
            self._recorder.note_invalid_frame()
            return
        problem = validate_request_frame(frame)
        if not problem and self._runs.release_2026_7 and "traceparent" in frame:
            problem = "at root: unexpected property 'traceparent'"  # closed frame params before 2026.9
        if problem:
            self._recorder.note_invalid_frame()
            if "id" in frame:
                error = error_shape("INVALID_REQUEST", f"invalid request frame: {problem}")
                self._server.send_res(cs, frame["id"], False, error)
            return
        req_id: str = frame["id"]
        method: str = frame["method"]
        params = frame.get("params")
        if params is None:
            params = {}
        self._recorder.note_request(method, frame)
        if method == "connect":
            error = error_shape("INVALID_REQUEST", "invalid handshake: already connected")
            self._server.send_res(cs, req_id, False, error)
            return
        busy = self._faults.busy(method)
        if busy is not None:  # the real gateway's full start queue: refused before the method runs
            self._server.send_res(cs, req_id, False, busy)
            return
        answer, delay = self._faults.plan(method)
        if not answer:
            return
        with self._lock:
            custom = method in self._handlers
        if method in RUN_METHODS and not custom:
            self._runs.handle(cs, req_id, method, params)
            return
        run_id: str | None = None
        if method == "dev.twostage" and not custom:
            run_id = str(uuid.uuid4())
            accepted = {"status": "accepted", "runId": run_id, "acceptedAt": _now_ms()}
            self._server.send_res(cs, req_id, True, accepted)
        if delay > 0:
            self._server.spawn("delay", self._answer, cs, (req_id, method, params, run_id), delay)
        else:
            self._answer(cs, (req_id, method, params, run_id), 0.0)

    def _answer(self, cs: _Conn, request: tuple[str, str, Any, str | None], delay: float) -> None:
        if delay > 0 and cs.closed.wait(delay):
            return
        req_id, method, params, run_id = request
        if run_id is not None:
            self._server.send_res(cs, req_id, True, {"status": "ok", "runId": run_id, "result": params})
        else:
            ok, body = self._call(cs, method, params)
            self._server.send_res(cs, req_id, ok, body)

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
            return self._builtin(cs, method, params)
        except DevGatewayError as exc:
            return False, exc.shape()
        except Exception as exc:
            _log.warning("handler for %s failed", method, exc_info=True)
            return False, error_shape("UNAVAILABLE", f"handler failed: {exc}", retryable=True)

    def _builtin(self, cs: _Conn, method: str, params: Any) -> tuple[bool, Any]:
        if method == "health":
            return True, self.health_payload()
        if method == "status":
            return True, self._status_payload()
        if method == "system-presence":
            return True, self.presence_entries()
        if method == "echo":
            return True, params
        if method in SESSION_METHODS:
            return self._sessions.handle(cs, method, params)
        return False, error_shape("INVALID_REQUEST", f"unknown method: {method}")

    # -- payloads (also in hello-ok's snapshot) ----------------------------------------

    def health_payload(self) -> dict[str, Any]:
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
        return {  # the real gateway's field names (runtimeVersion, pid, heartbeat...)
            "ok": True,
            "runtimeVersion": "dev",
            "pid": os.getpid(),
            "uptimeMs": self._server.uptime_ms(),
            "connections": self._server.handshaken_connections,
            "sessions": {
                "count": 0,
                "recent": [],
                "defaults": {"defaultAgentId": "main", "mainSessionKey": "agent:main:main"},
            },
            "heartbeat": {"enabled": False},
        }

    def presence_entries(self) -> list[dict[str, Any]]:
        """Gateway self entry plus non-ephemeral clients."""
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
        for cs in self._server.handshaken():
            if cs.client.get("mode") not in _EPHEMERAL_MODES:
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
