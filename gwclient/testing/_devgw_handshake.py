"""The connect handshake of :class:`gwclient.testing.DevGateway` (:class:`Handshake`): the
challenge, the connect frame's checks, auth (shared secret, device proof, device token),
pairing and hello-ok.  It owns the shared secrets, the pairing flags and
``policy_overrides``; it asks the other parts for the rest (queued rejections from
:class:`~gwclient.testing._devgw_controls.Faults`, the method list and snapshot payloads
from :class:`~gwclient.testing._devgw_methods.Methods`, the counters of
:class:`~gwclient.testing._devgw_recorder.Recorder`)."""

from __future__ import annotations

import hmac
import json
import logging
import threading
from typing import Any

from gwclient.testing._devgw_controls import Faults
from gwclient.testing._devgw_methods import Methods
from gwclient.testing._devgw_pairing import PAIRING_REASONS, PairingStore
from gwclient.testing._devgw_proto import (
    MAX_BUFFERED_BYTES,
    MAX_PAYLOAD,
    PREAUTH_MAX_PAYLOAD,
    PROTOCOL_VERSION,
    ROLES,
    DeviceProofError,
    error_shape,
    protocol_accepted,
    truncate_close_reason,
    unauthorized_error,
    validate_connect_params,
    validate_request_frame,
    verify_device_proof,
)
from gwclient.testing._devgw_recorder import Recorder
from gwclient.testing._devgw_runs import RUN_EVENTS, DevRuns
from gwclient.testing._devgw_server import GatewayServer, _Conn, _now_ms

__all__ = ["EVENTS", "Handshake"]

_log = logging.getLogger("gwclient.testing.devgateway")

STATE_VERSION = {"presence": 1, "health": 1}
EVENTS = ("connect.challenge", "tick", "health", "shutdown", "presence", "heartbeat", *RUN_EVENTS)


class _Reject(Exception):
    """Handshake rejection: res ok:false with ``error`` then close(code, reason)."""

    def __init__(self, error: dict[str, Any] | None, close_code: int, close_reason: str) -> None:
        super().__init__(error.get("message") if error else close_reason)
        self.error = error
        self.close_code = close_code
        self.close_reason = close_reason


class Handshake:
    """Admits a connection: :meth:`challenge`, then :meth:`run` on its first frame.

    ``pairing`` is guarded by ``cond`` (the gateway's monitor), like everything a
    ``DevGateway.wait_for`` predicate reads; the secrets have their own lock.
    """

    def __init__(
        self,
        *,
        server: GatewayServer,
        cond: threading.Condition,
        recorder: Recorder,
        faults: Faults,
        methods: Methods,
        runs: DevRuns,
        pairing: PairingStore,
        token: str | None,
        password: str | None,
        auto_approve: bool,
        enforce_scopes: bool,
        boot_id: str,
    ) -> None:
        self._server = server
        self._cond = cond
        self._recorder = recorder
        self._faults = faults
        self._methods = methods
        self._runs = runs  # its release_2026_7 drops bootId and uptimeMs from hello-ok
        self._pairing = pairing
        self._secrets_lock = threading.Lock()
        self._token = token
        self._password = password
        self._auto_approve = auto_approve
        self._enforce_scopes = enforce_scopes
        self._boot_id = boot_id
        #: Merged into hello-ok's ``policy`` (e.g. an absurd ``tickIntervalMs``); the
        #: gateway's own tick cadence is unchanged.
        self.policy_overrides: dict[str, Any] = {}
        #: Merged into hello-ok's ``auth`` (e.g. a ``deviceTokens`` handoff).
        self.auth_overrides: dict[str, Any] = {}

    def set_token(self, token: str | None) -> None:
        with self._secrets_lock:
            self._token = token

    def set_password(self, password: str | None) -> None:
        with self._secrets_lock:
            self._password = password

    def challenge(self, cs: _Conn) -> None:
        """Send ``connect.challenge`` (the nonce a device proof signs)."""
        challenge = {"nonce": cs.nonce, "ts": _now_ms(), "capabilities": []}
        self._server.send(cs, {"type": "event", "event": "connect.challenge", "payload": challenge})

    def run(self, cs: _Conn, data: str | bytes) -> bool:
        """Answer the first frame: hello-ok (True) or a rejection and a close (False)."""
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
                self._server.send_res(cs, frame["id"], False, rej.error)
            cs.ws.close(rej.close_code, truncate_close_reason(rej.close_reason))
            return False
        with cs.send_lock:
            if not self._server.send_res(cs, frame["id"], True, hello):
                return False
            with self._cond:  # one change for wait_for: handshaken and counted
                cs.handshaken = True
                cs.connected_at_ms = _now_ms()
                self._recorder.note_handshake()
                self._cond.notify_all()
            self._server.send_event(cs, "health", self._methods.health_payload(), dict(STATE_VERSION))
        return True

    def _admit(self, cs: _Conn, frame: dict[str, Any]) -> dict[str, Any]:
        """Validate a connect frame; returns the hello-ok payload or raises _Reject."""
        problem = validate_request_frame(frame)
        method = frame["method"]
        self._recorder.note_request(method, frame)
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
        self._recorder.note_connect(raw_params)
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
        injected = self._faults.next_rejection()
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
        auth.update(self.auth_overrides)
        methods = self._methods.names()
        presence = self._methods.presence_entries()
        policy_overrides = dict(self.policy_overrides)
        return {
            "type": "hello-ok",
            "protocol": PROTOCOL_VERSION,
            # (the runs' ``release_2026_7`` says version 2026.7.1 and drops bootId, like 2026.7.1's hello, and uptimeMs)
            "server": {"version": "2026.7.1" if self._runs.release_2026_7 else "dev", "connId": cs.conn_id,
                       **({} if self._runs.release_2026_7
                          else {"bootId": f"{self._boot_id}-{self._server.lifetimes}"})},
            # (2026.9 announces session approvals; 2026.7.1 does not, and refuses the flag)
            "features": {"methods": methods, "capabilities": [],
                         "events": list(EVENTS) + ([] if self._runs.release_2026_7 else ["session.approval"])},
            "snapshot": {
                "presence": presence,
                "health": self._methods.health_payload(),
                "stateVersion": dict(STATE_VERSION),
                # (not with release_2026_7: a run then has only the session to tell a
                # restart from a reconnect; the dev uptime does not restart with it)
                **({} if self._runs.release_2026_7 else {"uptimeMs": self._server.uptime_ms()}),
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
                "tickIntervalMs": self._server.tick_interval_ms,
                **policy_overrides,
            },
            "auth": auth,
        }

    def _authenticate(
        self, cs: _Conn, params: dict[str, Any], role: str, scopes: list[str]
    ) -> tuple[str, tuple[str, int] | None]:
        """Shared secret / device proof / device token / pairing (connect-auth.ts order)."""
        auth: dict[str, Any] = params.get("auth") or {}
        device: dict[str, Any] | None = params.get("device")
        with self._secrets_lock:
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
            with self._cond:
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
