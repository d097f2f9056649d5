"""Building the ``connect`` request: pure code (no sockets, no threads, no clocks).

Which credential goes in ``auth``, what the device signs and how, as PROTOCOL.md §2-3 say:
the shared token/password when configured, else the stored device token; the device block
signs the v3 payload with the challenge's nonce and ``ts`` and the token that ``auth``
carries.  The channel actor calls :func:`build_connect_params`; tests call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import GatewayConfig
from ._device import DeviceIdentity, StoredDeviceToken
from ._frames import AuthParams, ClientInfo, ConnectChallenge, ConnectParams, DeviceProof
from ._protocol import device_auth_payload_v3

__all__ = ["Credentials", "build_connect_params"]


@dataclass
class Credentials:
    """What the reader thread loaded from the state dir before the socket opened."""

    identity: DeviceIdentity | None
    stored: StoredDeviceToken | None


def build_connect_params(config: GatewayConfig, challenge: ConnectChallenge, creds: Credentials, *,
                         scopes_override: tuple[str, ...] | None = None,
                         device_token_retry: bool = False) -> ConnectParams:
    """``scopes_override``: the scopes granted by a scope upgrade (instead of the config's);
    ``device_token_retry``: send the stored device token along with the shared token (the
    one retry after ``AUTH_TOKEN_MISMATCH``, _auth_retry.py).  A bootstrap token is sent
    only when there is no shared secret and no stored device token (as the official
    client does)."""
    auth = AuthParams(token=config.token, password=config.password)
    if device_token_retry and config.token and creds.stored is not None:
        auth = AuthParams(token=config.token, device_token=creds.stored.token)
    elif not (config.token or config.password) and creds.stored is not None:
        auth = AuthParams(device_token=creds.stored.token)
    elif not (config.token or config.password) and config.bootstrap_token:
        auth = AuthParams(bootstrap_token=config.bootstrap_token)
    scopes = list(config.scopes if scopes_override is None else scopes_override)
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
