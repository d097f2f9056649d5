"""The connect request a config produces (pure: no sockets, no threads)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gwclient import GatewayConfig
from gwclient._core.frames import ConnectChallenge
from gwclient._core.handshake import Credentials, build_connect_params
from gwclient._core.protocol import device_auth_payload_v3
from gwclient.device import DeviceIdentity, StoredDeviceToken

CHALLENGE = ConnectChallenge(nonce="nonce-1", ts=1_700_000_000_000)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verify(identity: DeviceIdentity, signature: str, payload: str) -> None:
    Ed25519PublicKey.from_public_bytes(identity.public_key).verify(_b64(signature), payload.encode())


def test_shared_token_and_signed_device_block() -> None:
    identity = DeviceIdentity.generate()
    cfg = GatewayConfig(token="T", scopes=("operator.read", "operator.write"), device_family="Desktop")
    params = build_connect_params(cfg, CHALLENGE, Credentials(identity, None)).to_wire()
    assert params["auth"] == {"token": "T"}
    assert (params["minProtocol"], params["maxProtocol"], params["role"]) == (4, 4, "operator")
    assert params["scopes"] == ["operator.read", "operator.write"]
    assert params["client"]["id"] == "cli" and params["client"]["mode"] == "cli"
    device = params["device"]
    assert device["id"] == hashlib.sha256(identity.public_key).hexdigest() == identity.device_id
    assert _b64(device["publicKey"]) == identity.public_key and "=" not in device["publicKey"]
    assert (device["signedAt"], device["nonce"]) == (CHALLENGE.ts, CHALLENGE.nonce)
    expected = device_auth_payload_v3(
        device_id=identity.device_id, client_id="cli", client_mode="cli", role="operator",
        scopes=["operator.read", "operator.write"], signed_at_ms=CHALLENGE.ts, token="T",
        nonce=CHALLENGE.nonce, platform=cfg.platform, device_family="Desktop",
    )
    _verify(identity, device["signature"], expected)
    with pytest.raises(InvalidSignature):
        _verify(identity, device["signature"], expected.replace("|T|", "|other|"))


def test_stored_device_token_is_used_only_without_a_shared_secret() -> None:
    identity = DeviceIdentity.generate()
    stored = StoredDeviceToken("dev-tok", "operator", ("operator.read",), None)
    without = build_connect_params(GatewayConfig(), CHALLENGE, Credentials(identity, stored)).to_wire()
    assert without["auth"] == {"deviceToken": "dev-tok"}
    # default scopes: it asks for the ones the stored token was issued with (the official rule)
    assert without["scopes"] == ["operator.read"]
    signed = device_auth_payload_v3(
        device_id=identity.device_id, client_id="cli", client_mode="cli", role="operator",
        scopes=["operator.read"], signed_at_ms=CHALLENGE.ts, token="dev-tok",
        nonce=CHALLENGE.nonce, platform=GatewayConfig().platform, device_family=None,
    )
    _verify(identity, without["device"]["signature"], signed)  # the device token is signed
    chosen = GatewayConfig(scopes=("operator.read", "operator.write"))
    assert build_connect_params(chosen, CHALLENGE, Credentials(identity, stored)).to_wire()["scopes"] == [
        "operator.read", "operator.write"]  # scopes of its own choosing: asked for as they are
    granted = build_connect_params(GatewayConfig(), CHALLENGE, Credentials(identity, stored),
                                   scopes_override=("operator.admin",)).to_wire()
    assert granted["scopes"] == ["operator.admin"]  # a scope upgrade's grant wins
    with_password = build_connect_params(GatewayConfig(password="P"), CHALLENGE, Credentials(identity, stored))
    assert with_password.to_wire()["auth"] == {"password": "P"}  # and never sent beside a secret


def test_no_identity_no_device_block_no_empty_auth() -> None:
    params = build_connect_params(GatewayConfig(device_identity=False), CHALLENGE, Credentials(None, None))
    wire = params.to_wire()
    assert "device" not in wire and "auth" not in wire
