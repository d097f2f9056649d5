"""The pure protocol core: request ids, the pending-request table, seq-gap detection,
error-shape -> exception mapping, close-code classification and the v3 device-auth payload.

No sockets, no threads, no clocks: the channel actor drives it and completes the waiters
it hands back.  Every function here is unit-tested with plain asserts.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._errors import (
    AuthRejected,
    ConnectError,
    GatewayError,
    GatewayUnavailable,
    MissingScope,
    PairingRequired,
    ProtocolMismatch,
    RequestError,
    UnsupportedMethod,
)
from .frames import PROTOCOL_VERSION, ErrorShape, ResponseFrame
from .pushes import SeqGap

__all__ = [
    "TWO_STAGE_METHODS",
    "Pending",
    "PendingTable",
    "SeqTracker",
    "connect_error_from_close",
    "device_auth_payload_v3",
    "error_from_shape",
    "new_request_id",
]

#: Methods answered twice on one id: ``{status:"accepted"}`` first, then the final result.
TWO_STAGE_METHODS = frozenset({"agent"})

_prefix = uuid.uuid4().hex[:12]
_counter = itertools.count(1)


#: The first release whose request frames take a ``traceparent`` (older ones validate the
#: frame with closed params and refuse it: "unexpected property 'traceparent'").
TRACEPARENT_SINCE = (2026, 9, 0)


def release_of(server_version: str) -> tuple[int, ...] | None:
    """``hello-ok.server.version`` as a calendar release (``"2026.7.1"`` -> ``(2026, 7, 1)``);
    None for anything else (``"dev"``, a build label)."""
    parts = server_version.strip().split("-", 1)[0].split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def takes_traceparent(server_version: str) -> bool:
    """Does a gateway of this version take ``traceparent`` on request frames?  True when
    the version is not a release number (a newer or a development build)."""
    release = release_of(server_version)
    return release is None or release >= TRACEPARENT_SINCE


def refuses_field(error: BaseException, name: str) -> bool:
    """The gateway refused a request for a field ``name`` it does not take (an older
    release's closed params: "unexpected property 'NAME'"), before anything ran: safe to
    send again without it (a frame's ``traceparent``, ``chat.send``'s ``queueMode``)."""
    return getattr(error, "code", None) == "INVALID_REQUEST" and f"'{name}'" in str(error)


def new_request_id() -> str:
    """A unique, non-empty string id (numbers are rejected by the gateway's schema)."""
    return f"{next(_counter)}:{_prefix}"


W = TypeVar("W")


@dataclass
class Pending(Generic[W]):
    request_id: str
    method: str
    waiter: W
    expect_final: bool = False
    accepted: Any = None


class PendingTable(Generic[W]):
    """Requests sent on the current socket and not yet answered.  Not thread-safe: owned by
    the connection core, under its channel's lock."""

    def __init__(self) -> None:
        self._items: dict[str, Pending[W]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._items

    def add(self, request_id: str, method: str, waiter: W, *, expect_final: bool = False) -> None:
        if request_id in self._items:
            raise ValueError(f"duplicate request id {request_id!r}")
        self._items[request_id] = Pending(request_id, method, waiter, expect_final)

    def resolve(self, frame: ResponseFrame) -> tuple[Pending[W], Any] | None:
        """Match a response.  Returns ``(entry, payload_or_exception)`` when the request is
        finished, ``None`` for unknown ids (ignored, e.g. ``catalog:<connId>``) and for the
        interim ``accepted`` answer of a two-stage request (kept pending)."""
        entry = self._items.get(frame.id)
        if entry is None:
            return None
        if frame.ok and entry.expect_final and entry.accepted is None and _is_accepted(frame.payload):
            entry.accepted = frame.payload
            return None
        del self._items[frame.id]
        if frame.ok:
            return entry, frame.payload
        assert frame.error is not None  # decode_frame guarantees it
        error = error_from_shape(frame.error, method=entry.method)
        if entry.accepted is not None and isinstance(error, RequestError):
            error.after_accept = True  # the gateway had accepted it: never retried
        return entry, error

    def get(self, request_id: str) -> Pending[W] | None:
        return self._items.get(request_id)

    def remove(self, request_id: str) -> Pending[W] | None:
        return self._items.pop(request_id, None)

    def drain(self) -> list[Pending[W]]:
        """Remove and return every entry (to fail them on a disconnect)."""
        items = list(self._items.values())
        self._items.clear()
        return items


def _is_accepted(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("status") == "accepted"


class SeqTracker:
    """Per-socket event sequence tracking.  ``reset()`` on every new socket: the gateway's
    counter is per connection, so a new socket starting at 1 is not a gap."""

    def __init__(self) -> None:
        self.last: int | None = None

    def reset(self) -> None:
        self.last = None

    def observe(self, seq: int | None) -> SeqGap | None:
        if seq is None:
            return None
        gap = None
        if self.last is not None and seq > self.last + 1:
            gap = SeqGap(expected=self.last + 1, received=seq)
        if self.last is None or seq > self.last:
            self.last = seq
        return gap


# ------------------------------------------------------------------ error mapping

_AUTH_PREFIXES = ("AUTH_", "DEVICE_AUTH_", "CONTROL_UI_")
_AUTH_CODES = frozenset({"DEVICE_IDENTITY_REQUIRED", "AUTHENTICATED_PROFILE_UNAVAILABLE"})


def error_from_shape(shape: ErrorShape, *, method: str = "", connect: bool = False) -> GatewayError:
    """Map a gateway error shape to the exception class that says what the caller can do.
    The gateway's own message stays in ``wire_message`` (the share relays it as it came)."""
    error = _error_from_shape(shape, method=method, connect=connect)
    error.wire_message = shape.message  # type: ignore[attr-defined]
    return error


def _error_from_shape(shape: ErrorShape, *, method: str = "", connect: bool = False) -> GatewayError:
    details = shape.details or {}
    raw_code = details.get("code")
    detail_code: str = raw_code if isinstance(raw_code, str) else ""
    message = shape.message or shape.code
    kwargs: dict[str, Any] = {
        "code": shape.code,
        "details": details,
        "retryable": bool(shape.retryable),
        "retry_after_ms": shape.retry_after_ms,
        "method": method,
    }
    if connect or method == "connect":
        # Detail codes are more specific than top-level codes: PROTOCOL_MISMATCH wins even
        # over NOT_PAIRED; the protocol-3 form (no detail code) is recognised after pairing.
        if detail_code == "PROTOCOL_MISMATCH":
            return _mismatch(message, details, kwargs)
        not_paired = shape.code == "NOT_PAIRED" and detail_code != "DEVICE_IDENTITY_REQUIRED"
        if detail_code == "PAIRING_REQUIRED" or not_paired:
            err: ConnectError = PairingRequired(
                message,
                request_id=_str_or_none(details.get("requestId")),
                device_id=_str_or_none(details.get("deviceId")),
                **kwargs,
            )
            err.pauses_reconnect = not (
                details.get("recommendedNextStep") == "wait_then_retry"
                or details.get("pauseReconnect") is False
            )
            return err
        if _is_protocol_3_refusal(shape, details):
            return _mismatch(message, details, kwargs)
        if detail_code.startswith(_AUTH_PREFIXES) or detail_code in _AUTH_CODES:
            return AuthRejected(message, **kwargs)
        err = ConnectError(message, **kwargs)
        # Temporary refusals (gateway starting, draining) are retried with backoff; every
        # other refusal would fail identically again, so reconnecting pauses.
        err.pauses_reconnect = not (shape.code == "UNAVAILABLE" or shape.retryable)
        return err
    if shape.code == "UNAVAILABLE":
        return GatewayUnavailable(message, **kwargs)
    if (shape.code == "FORBIDDEN" and detail_code == "MISSING_SCOPE") or (
            shape.code in ("FORBIDDEN", "INVALID_REQUEST") and message.startswith(_LEGACY_SCOPE)):
        return _missing_scope(message, details, kwargs)
    if shape.code == "INVALID_REQUEST" and message.startswith("unknown method"):
        return UnsupportedMethod(message, **kwargs)
    return RequestError(message, **kwargs)


_LEGACY_SCOPE = "missing scope:"


def _missing_scope(message: str, details: dict[str, Any], kwargs: dict[str, Any]) -> MissingScope:
    """``FORBIDDEN`` with ``details: {code: "MISSING_SCOPE", missingScope, requiredScopes}``;
    older gateways (2026.7.1 and before) say only ``INVALID_REQUEST`` ``missing scope: X``."""
    missing = _str_or_none(details.get("missingScope"))
    if missing is None and message.startswith(_LEGACY_SCOPE):
        missing = message[len(_LEGACY_SCOPE):].strip() or None
    raw = details.get("requiredScopes")
    required = tuple(s for s in raw if isinstance(s, str) and s) if isinstance(raw, list) else ()
    return MissingScope(message, missing_scope=missing or "", required_scopes=required, **kwargs)


def _is_protocol_3_refusal(shape: ErrorShape, details: dict[str, Any]) -> bool:
    """Protocol 3's refusal (openclaw <= 2026.5.7): ``INVALID_REQUEST`` "protocol mismatch"
    with ``details: {expectedProtocol}`` and no ``details.code``."""
    return shape.code == "INVALID_REQUEST" and (
        "expectedProtocol" in details or shape.message.strip().lower() == "protocol mismatch"
    )


def _mismatch(message: str, details: dict[str, Any], kwargs: dict[str, Any]) -> ProtocolMismatch:
    return ProtocolMismatch(
        message,
        server_protocol=_int_or_none(details.get("expectedProtocol")),
        client_protocol=PROTOCOL_VERSION,
        **kwargs,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def connect_error_from_close(code: int | None, reason: str) -> ConnectError:
    """The handshake ended with a close frame and no error response."""
    text = f"gateway closed the connection during the handshake ({code}{': ' + reason if reason else ''})"
    if code == 1002:
        # 1002 during the handshake: the protocol range was refused (the gateway does not
        # say which version it speaks in a close frame).
        return ProtocolMismatch(text, code="INVALID_REQUEST", client_protocol=PROTOCOL_VERSION)
    # 1008 is a policy rejection (auth, origin, invalid handshake): retrying cannot help.
    return ConnectError(text, code="CLOSED", pauses_reconnect=code == 1008)


# ------------------------------------------------------------- device-auth payload


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _normalise_meta(value: str | None) -> str:
    """Trim and lower only A-Z (the gateway's normalisation, PROTOCOL.md §2.3)."""
    return (value or "").strip().translate(_ASCII_LOWER)


def device_auth_payload_v3(
    *,
    device_id: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: Iterable[str],
    signed_at_ms: int,
    token: str,
    nonce: str,
    platform: str | None,
    device_family: str | None,
) -> str:
    """The exact string a device signs in ``connect`` (v3)."""
    return "|".join(
        [
            "v3",
            device_id,
            client_id,
            client_mode,
            role,
            ",".join(scopes),
            str(int(signed_at_ms)),
            token,
            nonce,
            _normalise_meta(platform),
            _normalise_meta(device_family),
        ]
    )
