"""Device pairing and device-token bookkeeping for :class:`DevGateway`.

Not thread-safe on its own: the gateway calls it with its lock held.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gwclient.testing._devgw_proto import normalize_metadata, scope_satisfied

# reason -> (res message, close-reason requirement, remediation hint); connect-error-details.ts
PAIRING_REASONS: dict[str, tuple[str, str, str]] = {
    "not-paired": (
        "device pairing required",
        "device is not approved yet",
        "Approve this device from the pending pairing requests.",
    ),
    "role-upgrade": (
        "role upgrade pending approval",
        "device is asking for a higher role than currently approved",
        "Review the requested role upgrade, then approve the pending request.",
    ),
    "scope-upgrade": (
        "scope upgrade pending approval",
        "device is asking for more scopes than currently approved",
        "Review the requested scopes, then approve the pending upgrade.",
    ),
    "metadata-upgrade": (
        "device metadata change pending approval",
        "device identity changed and must be re-approved",
        "Review the refreshed device details, then approve the pending request.",
    ),
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@dataclass
class PairedDevice:
    """An approved device: its key, granted roles/scopes, pinned metadata, tokens."""

    device_id: str
    public_key: bytes
    roles: set[str]
    scopes: set[str]
    platform: str
    device_family: str
    approved_at_ms: int
    tokens: dict[str, int] = field(default_factory=dict)  # deviceToken -> issuedAtMs

    def as_dict(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id,
            "publicKey": _b64url(self.public_key),
            "roles": sorted(self.roles),
            "scopes": sorted(self.scopes),
            "platform": self.platform,
            "deviceFamily": self.device_family,
            "approvedAtMs": self.approved_at_ms,
            "tokenCount": len(self.tokens),
        }


@dataclass
class PairingRequest:
    """A pending pairing request (one per device; re-requests keep the requestId)."""

    request_id: str
    device_id: str
    public_key: bytes
    role: str
    scopes: list[str]
    reason: str
    client_id: str
    client_mode: str
    platform: str
    device_family: str
    display_name: str | None
    ts_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "deviceId": self.device_id,
            "publicKey": _b64url(self.public_key),
            "role": self.role,
            "scopes": list(self.scopes),
            "reason": self.reason,
            "clientId": self.client_id,
            "clientMode": self.client_mode,
            "platform": self.platform,
            "deviceFamily": self.device_family,
            "displayName": self.display_name,
            "ts": self.ts_ms,
        }


class PairingStore:
    """Paired devices, pending requests and issued device tokens."""

    def __init__(self) -> None:
        self.paired: dict[str, PairedDevice] = {}
        self.pending: dict[str, PairingRequest] = {}  # by requestId

    def requirement(
        self,
        device_id: str,
        public_key: bytes,
        role: str,
        scopes: list[str],
        client: dict[str, Any],
    ) -> str | None:
        """The pairing reason this connect needs, or None when already approved."""
        paired = self.paired.get(device_id)
        if paired is None or paired.public_key != public_key:
            return "not-paired"
        if role not in paired.roles:
            return "role-upgrade"
        if not all(scope_satisfied(scope, paired.scopes) for scope in scopes):
            return "scope-upgrade"
        if (
            normalize_metadata(client.get("platform")) != paired.platform
            or normalize_metadata(client.get("deviceFamily")) != paired.device_family
        ):
            return "metadata-upgrade"
        return None

    def request(
        self,
        device_id: str,
        *,
        public_key: bytes,
        role: str,
        scopes: list[str],
        client: dict[str, Any],
        reason: str,
    ) -> PairingRequest:
        """Create or refresh the pending request of this device (same requestId)."""
        existing = next((r for r in self.pending.values() if r.device_id == device_id), None)
        request_id = existing.request_id if existing else str(uuid.uuid4())
        request = PairingRequest(
            request_id=request_id,
            device_id=device_id,
            public_key=public_key,
            role=role,
            scopes=list(scopes),
            reason=reason,
            client_id=str(client.get("id")),
            client_mode=str(client.get("mode")),
            platform=normalize_metadata(client.get("platform")),
            device_family=normalize_metadata(client.get("deviceFamily")),
            display_name=client.get("displayName"),
            ts_ms=_now_ms(),
        )
        self.pending[request_id] = request
        return request

    def approve(self, request_id: str) -> PairedDevice:
        """Approve a pending request; raises KeyError for an unknown requestId."""
        request = self.pending.pop(request_id)
        paired = self.paired.get(request.device_id)
        if paired is None or paired.public_key != request.public_key:
            paired = PairedDevice(
                device_id=request.device_id,
                public_key=request.public_key,
                roles=set(),
                scopes=set(),
                platform=request.platform,
                device_family=request.device_family,
                approved_at_ms=_now_ms(),
            )
            self.paired[request.device_id] = paired
        paired.roles.add(request.role)
        paired.scopes.update(request.scopes)
        paired.platform = request.platform
        paired.device_family = request.device_family
        paired.approved_at_ms = _now_ms()
        return paired

    def reject(self, request_id: str) -> PairingRequest:
        """Drop a pending request; raises KeyError for an unknown requestId."""
        return self.pending.pop(request_id)

    def issue_token(self, device_id: str) -> tuple[str, int]:
        """Issue a fresh device token (older ones stay valid)."""
        token = secrets.token_urlsafe(32)
        issued = _now_ms()
        self.paired[device_id].tokens[token] = issued
        return token, issued

    def token_valid(self, device_id: str, public_key: bytes, token: str) -> bool:
        paired = self.paired.get(device_id)
        if paired is None or paired.public_key != public_key:
            return False
        return any(secrets.compare_digest(token, known) for known in paired.tokens)

    def invalidate_tokens(self, device_id: str | None) -> int:
        count = 0
        for paired in self.paired.values():
            if device_id is None or paired.device_id == device_id:
                count += len(paired.tokens)
                paired.tokens.clear()
        return count

    def revoke(self, device_id: str) -> bool:
        for request_id in [r.request_id for r in self.pending.values() if r.device_id == device_id]:
            del self.pending[request_id]
        return self.paired.pop(device_id, None) is not None
