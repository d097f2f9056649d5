"""The public counters, fault controls and pairing controls of
:class:`gwclient.testing.DevGateway`, a mixin the class inherits."""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

from gwclient.testing._devgw_handshake import Handler, _Rejection
from gwclient.testing._devgw_pairing import PairingStore
from gwclient.testing._devgw_proto import error_shape
from gwclient.testing._devgw_server import GatewayServerBase

__all__: list[str] = []


class _DevGatewayControls(GatewayServerBase):
    """Counters, faults and pairing of :class:`DevGateway` (which provides what is declared below)."""

    # Set by DevGateway.__init__.
    _token: str | None
    _password: str | None
    _auto_approve: bool
    _enforce_scopes: bool
    _pairing: PairingStore
    _handlers: dict[str, Handler]
    _handler_scopes: dict[str, str | None]
    _delays: dict[str, float]
    _never: set[str]
    _busy: dict[str | None, list[Any]]
    _busy_answers: int
    _rejections: deque[_Rejection]
    _state_version: dict[str, int]
    policy_overrides: dict[str, Any]
    _handshakes_completed: int
    _connect_attempts: int
    _requests_by_method: dict[str, int]
    _connect_log: list[Any]
    _invalid_frames: int

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
                self._rejections.append(_Rejection(copy.deepcopy(error) if respond else None, close_code, close_reason))

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

    def answer_busy(self, n: int, method: str | None = None, *, retry_after_ms: int | None = None,
                    message: str = "The server is busy. Please try again in a moment.") -> None:
        """Answer the next ``n`` requests (for ``method``, or any but ``connect``) the way
        the real gateway answers when its request start queue is full: ``UNAVAILABLE``
        with ``retryable: true`` (and ``retryAfterMs`` if given), before the method runs
        (the request is counted in ``requests_by_method``, its handler never called)."""
        with self._lock:
            self._busy[method] = [n, retry_after_ms, message]

    @property
    def busy_answers(self) -> int:
        """How many requests got a busy answer from :meth:`answer_busy`."""
        with self._lock:
            return self._busy_answers

    def _answer_busy(self, cs: Any, req_id: str, method: str) -> bool:
        with self._cond:
            entry = self._busy.get(method) or self._busy.get(None)
            if entry is None or entry[0] <= 0:
                return False
            entry[0] -= 1
            self._busy_answers += 1
            self._cond.notify_all()
        self._send_res(cs, req_id, False, error_shape("UNAVAILABLE", entry[2], retryable=True,
                                                      retry_after_ms=entry[1]))
        return True

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
            self._busy.clear()
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
