"""Building the ``connect`` request: pure code (no sockets, no threads, no clocks).

Which credential goes in ``auth``, what the device signs and how, as PROTOCOL.md §2-3 say:
the shared token/password when configured, else the stored device token; the device block
signs the v3 payload with the challenge's nonce and ``ts`` and the token that ``auth``
carries.  The socket's reader thread calls :func:`build_connect_params` (through the
channel); tests call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .frames import AuthParams, ClientInfo, ConnectChallenge, ConnectParams, DeviceProof
from .protocol import device_auth_payload_v3

__all__ = ["ClientSpec", "Credentials", "Signer", "StoredToken", "build_connect_params"]


class ClientSpec(Protocol):
    """What the connect request needs of a config (``GatewayConfig`` is one)."""

    @property
    def token(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def bootstrap_token(self) -> str | None: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def scopes_default(self) -> bool: ...
    @property
    def caps(self) -> tuple[str, ...]: ...
    @property
    def role(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_mode(self) -> str: ...
    @property
    def client_version(self) -> str: ...
    @property
    def platform(self) -> str: ...
    @property
    def device_family(self) -> str | None: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def instance_id(self) -> str | None: ...


class Signer(Protocol):
    """The device identity as the handshake sees it (``DeviceIdentity`` is one)."""

    @property
    def device_id(self) -> str: ...
    @property
    def public_key_b64url(self) -> str: ...
    def sign(self, payload: str) -> str: ...


class StoredToken(Protocol):
    """A stored device token (``StoredDeviceToken`` is one)."""

    @property
    def token(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...


@dataclass
class Credentials:
    """What the reader thread loaded from the state dir before the socket opened."""

    identity: Signer | None
    stored: StoredToken | None


def build_connect_params(config: ClientSpec, challenge: ConnectChallenge, creds: Credentials, *,
                         scopes_override: tuple[str, ...] | None = None,
                         device_token_retry: bool = False) -> ConnectParams:
    """``scopes_override``: the scopes granted by a scope upgrade (instead of the config's;
    without one, a connect with only the stored device token and the config's default
    scopes asks for the scopes that token was issued with, like the official client);
    ``device_token_retry``: send the stored device token along with the shared token (the
    one retry after ``AUTH_TOKEN_MISMATCH``, :mod:`gwclient._engine.auth_retry`).  A
    bootstrap token is sent only when there is no shared secret and no stored device token
    (as the official client does)."""
    auth = AuthParams(token=config.token, password=config.password)
    if device_token_retry and config.token and creds.stored is not None:
        auth = AuthParams(token=config.token, device_token=creds.stored.token)
    scopes = list(config.scopes if scopes_override is None else scopes_override)
    if not (config.token or config.password) and creds.stored is not None:
        auth = AuthParams(device_token=creds.stored.token)
        if scopes_override is None and config.scopes_default and creds.stored.scopes:
            # The official client's rule: with the stored device token and no scopes of
            # its own choosing, a client asks for the scopes that token was issued with.
            scopes = list(creds.stored.scopes)
    elif not (config.token or config.password) and config.bootstrap_token:
        auth = AuthParams(bootstrap_token=config.bootstrap_token)
    device = None
    if creds.identity is not None:
        payload = device_auth_payload_v3(
            device_id=creds.identity.device_id,
            client_id=config.client_id,
            client_mode=config.client_mode,
            role=config.role,
            scopes=scopes,
            signed_at_ms=challenge.ts,
            token=auth.signing_token,
            nonce=challenge.nonce,
            platform=config.platform,
            device_family=config.device_family,
        )
        device = DeviceProof(
            id=creds.identity.device_id,
            public_key=creds.identity.public_key_b64url,
            signature=creds.identity.sign(payload),
            signed_at=challenge.ts,
            nonce=challenge.nonce,
        )
    return ConnectParams(
        client=ClientInfo(
            id=config.client_id,
            version=config.client_version,
            platform=config.platform,
            mode=config.client_mode,
            display_name=config.display_name,
            device_family=config.device_family,
            instance_id=config.instance_id,
        ),
        role=config.role,
        scopes=scopes,
        caps=list(config.caps),
        auth=auth,
        device=device,
    )
