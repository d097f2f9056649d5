"""Protocol-4 facts, frame validation and device-proof checks for :class:`DevGateway`.

This module is deliberately independent of the gwclient client code: the schema
checks and the Ed25519 verification below are written from PROTOCOL.md (and the
real gateway's sources), so that a bug in the client cannot be mirrored here and
cancel out in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

__all__ = ["DevGatewayError"]

PROTOCOL_VERSION = 4
MIN_PROBE_PROTOCOL = 3
MIN_NODE_PROTOCOL = 3
MAX_PAYLOAD = 26_214_400
MAX_BUFFERED_BYTES = 52_428_800
PREAUTH_MAX_PAYLOAD = 65_536
DEVICE_SIGNATURE_SKEW_MS = 120_000
CLOSE_REASON_MAX_BYTES = 123

# The gateway's own copy of the protocol's client enums (PROTOCOL.md §2.2), deliberately
# not imported from gwclient._config.config: the fake gateway checks the client, so a wrong value
# in the client's list must not be accepted by a list shared with it.
CLIENT_IDS = frozenset(
    {
        "webchat-ui",
        "openclaw-control-ui",
        "openclaw-browser-copilot",
        "openclaw-tui",
        "webchat",
        "cli",
        "gateway-client",
        "openclaw-macos",
        "openclaw-linux",
        "openclaw-ios",
        "openclaw-watchos",
        "openclaw-android",
        "node-host",
        "openclaw-worker",
        "test",
        "fingerprint",
        "openclaw-probe",
    }
)
CLIENT_MODES = frozenset({"webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"})
ROLES = frozenset({"operator", "node"})

REQ_FRAME_KEYS = frozenset({"type", "id", "method", "params", "traceparent", "expectedProfileId"})
CONNECT_PARAM_KEYS = frozenset(
    {
        "minProtocol",
        "maxProtocol",
        "client",
        "caps",
        "commands",
        "permissions",
        "pathEnv",
        "computerUse",
        "workerRuns",
        "modelCatalog",
        "role",
        "scopes",
        "device",
        "auth",
        "locale",
        "userAgent",
    }
)
CLIENT_KEYS = frozenset(
    {
        "id",
        "displayName",
        "version",
        "platform",
        "deviceFamily",
        "modelIdentifier",
        "mode",
        "instanceId",
        "buildId",
        "timeZone",
    }
)
DEVICE_KEYS = frozenset({"id", "publicKey", "signature", "signedAt", "nonce"})
AUTH_KEYS = frozenset(
    {
        "token",
        "bootstrapToken",
        "deviceToken",
        "password",
        "approvalRuntimeToken",
        "agentRuntimeIdentityToken",
    }
)

# Scope implication (operator-scope-compat): admin implies everything, write implies read.
SCOPE_IMPLIED_BY: Mapping[str, tuple[str, ...]] = {
    "operator.read": ("operator.write", "operator.admin"),
}


class DevGatewayError(Exception):
    """Raise from a :meth:`DevGateway.set_handler` callback to answer ``ok:false``.

    The fields become the wire error shape
    ``{code, message, details?, retryable?, retryAfterMs?}``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Any = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms

    def shape(self) -> dict[str, Any]:
        """The ``error`` object as sent on the wire."""
        return error_shape(
            self.code,
            self.message,
            self.details,
            retryable=self.retryable,
            retry_after_ms=self.retry_after_ms,
        )


def error_shape(
    code: str,
    message: str,
    details: Any = None,
    *,
    retryable: bool | None = None,
    retry_after_ms: int | None = None,
) -> dict[str, Any]:
    """Build an ``ErrorShape`` dict, leaving out absent optional fields."""
    shape: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        shape["details"] = details
    if retryable is not None:
        shape["retryable"] = retryable
    if retry_after_ms is not None:
        shape["retryAfterMs"] = retry_after_ms
    return shape


def truncate_close_reason(reason: str) -> str:
    """Cut a close reason to the 123 UTF-8 bytes a close frame can carry."""
    raw = reason.encode("utf-8")
    if len(raw) <= CLOSE_REASON_MAX_BYTES:
        return reason
    return raw[:CLOSE_REASON_MAX_BYTES].decode("utf-8", "ignore")


def scope_satisfied(scope: str, granted: list[str] | set[str] | frozenset[str]) -> bool:
    """Whether ``scope`` is granted directly or implied by a granted scope."""
    if scope in granted or "operator.admin" in granted:
        return True
    return any(parent in granted for parent in SCOPE_IMPLIED_BY.get(scope, ()))


# --------------------------------------------------------------------------- validation


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _unexpected(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> str | None:
    extra = sorted(key for key in obj if key not in allowed)
    if extra:
        return f"{where} has unexpected property '{extra[0]}'"
    return None


def validate_request_frame(frame: Mapping[str, Any]) -> str | None:
    """Check a ``req`` frame against the closed RequestFrame schema; None if valid."""
    problem = _unexpected(frame, REQ_FRAME_KEYS, "request frame")
    if problem:
        return problem
    if not _nonempty_str(frame.get("id")):
        return "id must be a non-empty string"
    if not _nonempty_str(frame.get("method")):
        return "method must be a non-empty string"
    if "traceparent" in frame:
        trace = frame["traceparent"]
        if not isinstance(trace, str) or len(trace) > 128:
            return "traceparent must be a string of at most 128 characters"
    if "expectedProfileId" in frame:
        profile = frame["expectedProfileId"]
        if not isinstance(profile, str) or not 1 <= len(profile) <= 128:
            return "expectedProfileId must be a string of 1-128 characters"
    return None


def _validate_client(client: Any) -> str | None:
    if not isinstance(client, dict):
        return "client must be an object"
    problem = _unexpected(client, CLIENT_KEYS, "client")
    if problem:
        return problem
    for key in ("id", "version", "platform", "mode"):
        if not _nonempty_str(client.get(key)):
            return f"client.{key} must be a non-empty string"
    if client["id"] not in CLIENT_IDS:
        return f"client.id must be one of the known client ids (got {client['id']!r})"
    if client["mode"] not in CLIENT_MODES:
        return f"client.mode must be one of {sorted(CLIENT_MODES)} (got {client['mode']!r})"
    for key in ("displayName", "deviceFamily", "modelIdentifier", "instanceId"):
        if key in client and not _nonempty_str(client[key]):
            return f"client.{key} must be a non-empty string"
    if "buildId" in client and not (isinstance(client["buildId"], str) and 1 <= len(client["buildId"]) <= 96):
        return "client.buildId must be a string of 1-96 characters"
    if "timeZone" in client and not (isinstance(client["timeZone"], str) and 1 <= len(client["timeZone"]) <= 64):
        return "client.timeZone must be a string of 1-64 characters"
    return None


def _validate_device(device: Any) -> str | None:
    if not isinstance(device, dict):
        return "device must be an object"
    problem = _unexpected(device, DEVICE_KEYS, "device")
    if problem:
        return problem
    for key in ("id", "publicKey", "signature", "nonce"):
        if not isinstance(device.get(key), str):
            return f"device.{key} must be a string"
    signed_at = device.get("signedAt")
    if not _is_int(signed_at) or signed_at < 0:
        return "device.signedAt must be a non-negative integer"
    return None


def _validate_auth(auth: Any) -> str | None:
    if not isinstance(auth, dict):
        return "auth must be an object"
    problem = _unexpected(auth, AUTH_KEYS, "auth")
    if problem:
        return problem
    for key, value in auth.items():
        if not isinstance(value, str):
            return f"auth.{key} must be a string"
    return None


def validate_connect_params(params: Any) -> str | None:
    """Check ``connect`` params against the closed ConnectParams schema; None if valid."""
    if not isinstance(params, dict):
        return "params must be an object"
    problem = _unexpected(params, CONNECT_PARAM_KEYS, "params")
    if problem:
        return problem
    for key in ("minProtocol", "maxProtocol"):
        value = params.get(key)
        if not _is_int(value) or value < 1:
            return f"{key} must be an integer >= 1"
    problem = _validate_client(params.get("client"))
    if problem:
        return problem
    if "role" in params and not isinstance(params["role"], str):
        return "role must be a string"
    for key in ("scopes", "caps", "commands"):
        if key in params and not _str_list(params[key]):
            return f"{key} must be an array of strings"
    if "pathEnv" in params and not isinstance(params["pathEnv"], str):
        return "pathEnv must be a string"
    if "permissions" in params and not (
        isinstance(params["permissions"], dict) and all(isinstance(v, bool) for v in params["permissions"].values())
    ):
        return "permissions must be a record of booleans"
    if "device" in params:
        problem = _validate_device(params["device"])
        if problem:
            return problem
    if "auth" in params:
        problem = _validate_auth(params["auth"])
        if problem:
            return problem
    for key in ("locale", "userAgent"):
        if key in params and not isinstance(params[key], str):
            return f"{key} must be a string"
    if "modelCatalog" in params and not isinstance(params["modelCatalog"], dict):
        return "modelCatalog must be an object"
    return None


def protocol_accepted(min_protocol: int, max_protocol: int, role: str, mode: str) -> bool:
    """Protocol negotiation of connect-admission.ts."""
    if max_protocol >= PROTOCOL_VERSION and min_protocol <= PROTOCOL_VERSION:
        return True
    if mode == "probe" and max_protocol >= MIN_PROBE_PROTOCOL and min_protocol <= PROTOCOL_VERSION:
        return True
    return role == "node" and mode == "node" and max_protocol >= MIN_NODE_PROTOCOL and min_protocol <= MIN_NODE_PROTOCOL


def unauthorized_error(params: Mapping[str, Any], reason: str, *, has_device: bool) -> tuple[dict[str, Any], str]:
    """The auth-failure ``error`` shape and close reason (connect-auth.ts ``rejectUnauthorized``)."""
    auth: dict[str, Any] = params.get("auth") or {}
    cli = params["client"].get("mode") == "cli"
    token_hint = "set gateway.remote.token to match gateway.auth.token" if cli else "provide gateway auth token"
    password_hint = (
        "set gateway.remote.password to match gateway.auth.password" if cli else "provide gateway auth password"
    )
    messages = {
        "token_missing": f"unauthorized: gateway token missing ({token_hint})",
        "token_mismatch": f"unauthorized: gateway token mismatch ({token_hint})",
        "password_missing": f"unauthorized: gateway password missing ({password_hint})",
        "password_mismatch": f"unauthorized: gateway password mismatch ({password_hint})",
        "device_token_mismatch": ("unauthorized: device token mismatch (rotate/reissue device token)"),
    }
    detail_codes = {
        "token_missing": "AUTH_TOKEN_MISSING",
        "token_mismatch": "AUTH_TOKEN_MISMATCH",
        "password_missing": "AUTH_PASSWORD_MISSING",
        "password_mismatch": "AUTH_PASSWORD_MISMATCH",
        "device_token_mismatch": "AUTH_DEVICE_TOKEN_MISMATCH",
    }
    provided_kind = (
        "password"
        if auth.get("password")
        else "token"
        if auth.get("token")
        else "device-token"
        if auth.get("deviceToken")
        else "none"
    )
    can_retry = reason == "token_mismatch" and has_device and provided_kind == "token" and not auth.get("deviceToken")
    if can_retry:
        next_step = "retry_with_device_token"
    elif reason.endswith("_missing"):
        next_step = "update_auth_configuration"
    else:
        next_step = "update_auth_credentials"
    message = messages.get(reason, "unauthorized")
    details = {
        "code": detail_codes.get(reason, "AUTH_UNAUTHORIZED"),
        "authReason": reason,
        "canRetryWithDeviceToken": can_retry,
        "recommendedNextStep": next_step,
    }
    return error_shape("INVALID_REQUEST", message, details), message


# --------------------------------------------------------------------------- device proof


def decode_b64_permissive(text: str) -> bytes | None:
    """Decode base64url or standard base64, padded or not; None when invalid."""
    cleaned = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    if not cleaned:
        return None
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_public_key(text: str) -> bytes | None:
    """The raw 32-byte Ed25519 key from base64(url) or an SPKI PEM string."""
    if "BEGIN PUBLIC KEY" in text:
        try:
            key = load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if not isinstance(key, Ed25519PublicKey):
            return None
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw = decode_b64_permissive(text)
    if raw is None or len(raw) != 32:
        return None
    return raw


def normalize_metadata(value: Any) -> str:
    """Trim and lowercase ASCII A-Z only (device-auth.ts ``normalizeDeviceMetadata``)."""
    if not isinstance(value, str):
        return ""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in value.strip())


def signature_token(auth: Mapping[str, Any]) -> str:
    """The token slot of the signed payload: token > deviceToken > bootstrapToken > ''."""
    for key in ("token", "deviceToken", "bootstrapToken"):
        value = auth.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def device_payloads(params: Mapping[str, Any], device: Mapping[str, Any], role: str) -> tuple[str, str]:
    """The v3 and v2 payload strings the device must have signed."""
    client = params["client"]
    auth = params.get("auth") or {}
    scopes = ",".join(params.get("scopes") or [])
    base = [
        device["id"],
        client["id"],
        client["mode"],
        role,
        scopes,
        str(device["signedAt"]),
        signature_token(auth),
        device["nonce"],
    ]
    v3 = "|".join(
        [
            "v3",
            *base,
            normalize_metadata(client.get("platform")),
            normalize_metadata(client.get("deviceFamily")),
        ]
    )
    v2 = "|".join(["v2", *base])
    return v3, v2


class DeviceProofError(Exception):
    """A failed device proof: ``detail_code`` goes to ``error.details.code``."""

    def __init__(self, detail_code: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.detail_code = detail_code
        self.message = message
        self.reason = reason


def verify_device_proof(
    params: Mapping[str, Any],
    role: str,
    expected_nonce: str,
    now_ms: int,
) -> tuple[bytes, str]:
    """Verify ``params.device``; returns (raw public key, payload version) or raises."""
    device = params["device"]
    raw = decode_public_key(device["publicKey"])
    if raw is None:
        raise DeviceProofError("DEVICE_AUTH_PUBLIC_KEY_INVALID", "device public key invalid", "device-public-key")
    if hashlib.sha256(raw).hexdigest() != device["id"]:
        raise DeviceProofError("DEVICE_AUTH_DEVICE_ID_MISMATCH", "device identity mismatch", "device-id-mismatch")
    if abs(now_ms - int(device["signedAt"])) > DEVICE_SIGNATURE_SKEW_MS:
        raise DeviceProofError("DEVICE_AUTH_SIGNATURE_EXPIRED", "device signature expired", "device-signature-stale")
    nonce = device["nonce"].strip()
    if not nonce:
        raise DeviceProofError("DEVICE_AUTH_NONCE_REQUIRED", "device nonce required", "device-nonce-missing")
    if device["nonce"] != expected_nonce:
        raise DeviceProofError("DEVICE_AUTH_NONCE_MISMATCH", "device nonce mismatch", "device-nonce-mismatch")
    signature = decode_b64_permissive(device["signature"])
    if signature is not None and len(signature) == 64:
        key = Ed25519PublicKey.from_public_bytes(raw)
        v3, v2 = device_payloads(params, device, role)
        for version, payload in (("v3", v3), ("v2", v2)):
            try:
                key.verify(signature, payload.encode("utf-8"))
            except InvalidSignature:
                continue
            return raw, version
    raise DeviceProofError("DEVICE_AUTH_SIGNATURE_INVALID", "device signature invalid", "device-signature")
