"""Tests of gwclient.testing.DevGateway, driven through raw websocket-client sockets.

Nothing from the gwclient client is used here: frames, device signatures and
close frames are built and parsed by hand, so the dev gateway is checked against
PROTOCOL.md on its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gwclient.testing import DevGateway, DevGatewayError

TOKEN = "dev-secret-token"
RECV_TIMEOUT = 5.0
SCOPES = ["operator.read", "operator.write"]


# --------------------------------------------------------------------------- helpers


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def now_ms() -> int:
    return int(time.time() * 1000)


def base_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": "1.2.3", "platform": "linux", "mode": "cli"},
        "role": "operator",
        "scopes": list(SCOPES),
        "caps": [],
        "auth": {"token": TOKEN},
    }
    params.update(overrides)
    return params


class Device:
    """An Ed25519 device identity signing like PROTOCOL.md §2.3, built independently."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = hashlib.sha256(self.raw).hexdigest()

    def block(
        self,
        params: dict[str, Any],
        nonce: str,
        signed_at: int,
        *,
        version: str = "v3",
        token: str | None = None,
        device_id: str | None = None,
        public_key: str | None = None,
    ) -> dict[str, Any]:
        client = params["client"]
        auth = params.get("auth") or {}
        if token is None:
            token = auth.get("token") or auth.get("deviceToken") or auth.get("bootstrapToken") or ""
        fields = [
            version,
            device_id or self.id,
            client["id"],
            client["mode"],
            params.get("role", "operator"),
            ",".join(params.get("scopes") or []),
            str(signed_at),
            token,
            nonce,
        ]
        if version == "v3":
            fields += [
                client.get("platform", "").strip().lower(),
                client.get("deviceFamily", "").strip().lower(),
            ]
        signature = self.key.sign("|".join(fields).encode("utf-8"))
        return {
            "id": device_id or self.id,
            "publicKey": public_key or b64url(self.raw),
            "signature": b64url(signature),
            "signedAt": signed_at,
            "nonce": nonce,
        }


class Raw:
    """A raw websocket-client connection with small JSON helpers."""

    def __init__(self, url: str, *, origin: bool = False) -> None:
        self.ws = websocket.create_connection(url, suppress_origin=not origin, timeout=RECV_TIMEOUT)
        self.challenge: dict[str, Any] | None = None
        self.last_id = ""

    def send(self, obj: Any) -> None:
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def recv_json(self) -> dict[str, Any]:
        text = self.ws.recv()
        assert text, "expected a text frame, got a close"
        frame: dict[str, Any] = json.loads(text)
        return frame

    def request(self, method: str, params: Any = None, req_id: str | None = None) -> str:
        req_id = req_id or str(uuid.uuid4())
        frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
        if params is not None:
            frame["params"] = params
        self.send(frame)
        return req_id

    def read_challenge(self) -> dict[str, Any]:
        frame = self.recv_json()
        assert frame["event"] == "connect.challenge"
        challenge: dict[str, Any] = frame["payload"]
        self.challenge = challenge
        return challenge

    def connect(
        self,
        params: dict[str, Any] | None = None,
        *,
        device: Device | None = None,
        sign: Callable[[dict[str, Any], str, int], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Read the challenge, send connect (device-signed if asked), return the res."""
        challenge = self.read_challenge()
        params = base_params() if params is None else params
        if sign is not None:
            params["device"] = sign(params, challenge["nonce"], challenge["ts"])
        elif device is not None:
            params["device"] = device.block(params, challenge["nonce"], challenge["ts"])
        req_id = self.request("connect", params)
        res = self.recv_json()
        assert res["type"] == "res" and res["id"] == req_id
        return res

    def hello(self, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        res = self.connect(params, **kw)
        assert res["ok"] is True, res
        health = self.recv_json()
        assert health["event"] == "health" and health["seq"] == 1
        payload: dict[str, Any] = res["payload"]
        return payload

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        req_id = self.last_id = self.request(method, params)
        while True:
            frame = self.recv_json()
            if frame["type"] == "res" and frame["id"] == req_id:
                return frame

    def next_event(self, name: str) -> dict[str, Any]:
        while True:
            frame = self.recv_json()
            if frame["type"] == "event" and frame["event"] == name:
                return frame

    def expect_close(self) -> tuple[int, str]:
        """Read until the close frame; (code, reason). Text frames before it fail."""
        opcode, frame = self.ws.recv_data_frame(True)
        while opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
            opcode, frame = self.ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE, f"expected close, got {frame.data!r}"
        data: bytes = frame.data
        # websocket-client answered the close frame; drop the TCP connection like a
        # client's close() would, so the server's closing handshake ends at once
        self.ws.shutdown()  # type: ignore[no-untyped-call]
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        return code, data[2:].decode("utf-8")

    def expect_rejected(self, res: dict[str, Any]) -> tuple[dict[str, Any], int, str]:
        assert res["ok"] is False, res
        code, reason = self.expect_close()
        return res["error"], code, reason

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # already closed/dropped
            pass
        self.ws.shutdown()  # type: ignore[no-untyped-call]  # close() is a no-op once a close frame was answered


@pytest.fixture(autouse=True)
def _no_leaked_devgw_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("devgw-")]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def make_gw() -> Iterator[Callable[..., DevGateway]]:
    made: list[DevGateway] = []

    def make(**kwargs: Any) -> DevGateway:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("tick_interval_ms", 600_000)
        gw = DevGateway(**kwargs).start()
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture
def gw(make_gw: Callable[..., DevGateway]) -> DevGateway:
    return make_gw()


@pytest.fixture
def raw(make_gw: Callable[..., DevGateway]) -> Iterator[Callable[..., Raw]]:
    # depends on make_gw so that sockets close before the gateways stop
    opened: list[Raw] = []

    def open_(gw_or_url: DevGateway | str, *, origin: bool = False) -> Raw:
        url = gw_or_url if isinstance(gw_or_url, str) else gw_or_url.url
        conn = Raw(url, origin=origin)
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


# --------------------------------------------------------------------------- handshake


def test_challenge_is_first_frame(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    frame = raw(gw).recv_json()
    assert frame["type"] == "event" and frame["event"] == "connect.challenge"
    assert "seq" not in frame
    payload = frame["payload"]
    assert set(payload) == {"nonce", "ts", "capabilities"}
    uuid.UUID(payload["nonce"])
    assert isinstance(payload["ts"], int) and abs(payload["ts"] - now_ms()) < 5000
    assert payload["capabilities"] == []


def test_first_request_must_be_connect(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.read_challenge()
    req_id = conn.request("health", {})
    res = conn.recv_json()
    assert res["id"] == req_id
    error, code, _ = conn.expect_rejected(res)
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"] == "invalid handshake: first request must be connect"
    assert code == 1008


@pytest.mark.parametrize("first", ["not json", "[1,2]", '{"type":"event","event":"x"}'])
def test_non_request_first_frame_closes_without_res(gw: DevGateway, raw: Callable[..., Raw], first: str) -> None:
    conn = raw(gw)
    conn.read_challenge()
    conn.send(first)
    assert conn.expect_close()[0] == 1008


def test_protocol_mismatch_closes_1002(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect(base_params(minProtocol=5, maxProtocol=6)))
    assert error["code"] == "INVALID_REQUEST" and error["message"] == "protocol mismatch"
    assert error["details"]["code"] == "PROTOCOL_MISMATCH"
    assert error["details"]["expectedProtocol"] == 4
    assert (code, reason) == (1002, "protocol mismatch")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda p: p.update(jsonrpc="2.0"), "unexpected property 'jsonrpc'"),
        (lambda p: p["client"].update(mode="operator"), "client.mode"),
        (lambda p: p["client"].pop("version"), "client.version"),
        (lambda p: p["client"].update(extra=1), "unexpected property 'extra'"),
        (lambda p: p["auth"].update(secret="x"), "unexpected property 'secret'"),
        (lambda p: p.update(scopes="operator.read"), "scopes"),
    ],
)
def test_invalid_connect_params(
    gw: DevGateway,
    raw: Callable[..., Raw],
    mutate: Callable[[dict[str, Any]], Any],
    fragment: str,
) -> None:
    params = base_params()
    mutate(params)
    conn = raw(gw)
    error, code, _ = conn.expect_rejected(conn.connect(params))
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"].startswith("invalid connect params: ")
    assert fragment in error["message"]
    assert code == 1008


def test_unknown_key_in_connect_frame_is_rejected(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.read_challenge()
    conn.send({"type": "req", "id": "c1", "method": "connect", "params": base_params(), "x": 1})
    error, code, _ = conn.expect_rejected(conn.recv_json())
    assert error["code"] == "INVALID_REQUEST" and "unexpected property 'x'" in error["message"]
    assert code == 1008


def test_hello_ok_shape_and_health_event(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    hello = raw(gw).hello()
    assert hello["type"] == "hello-ok" and hello["protocol"] == 4
    assert hello["server"]["version"] == "dev" and hello["server"]["connId"]
    assert {"health", "status", "system-presence", "echo"} <= set(hello["features"]["methods"])
    assert {"tick", "shutdown", "health"} <= set(hello["features"]["events"])
    assert hello["features"]["capabilities"] == []
    snapshot = hello["snapshot"]
    assert snapshot["stateVersion"] == {"presence": 1, "health": 1}
    assert snapshot["health"]["ok"] is True and isinstance(snapshot["uptimeMs"], int)
    assert snapshot["sessionDefaults"]["mainSessionKey"] == "agent:main:main"
    assert isinstance(snapshot["presence"], list)
    assert hello["policy"] == {
        "maxPayload": 26_214_400,
        "maxBufferedBytes": 52_428_800,
        "tickIntervalMs": 600_000,
    }
    assert hello["auth"] == {"method": "token", "role": "operator", "scopes": SCOPES}


def test_token_mismatch(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect(base_params(auth={"token": "nope"})))
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"].startswith("unauthorized: gateway token mismatch")
    assert error["details"] == {
        "code": "AUTH_TOKEN_MISMATCH",
        "authReason": "token_mismatch",
        "canRetryWithDeviceToken": False,
        "recommendedNextStep": "update_auth_credentials",
    }
    assert code == 1008 and reason.startswith("unauthorized: gateway token mismatch")


def test_token_mismatch_with_device_suggests_device_token(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    res = conn.connect(base_params(auth={"token": "nope"}), device=Device())
    error, _, _ = conn.expect_rejected(res)
    assert error["details"]["canRetryWithDeviceToken"] is True
    assert error["details"]["recommendedNextStep"] == "retry_with_device_token"


def test_missing_credentials(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect(base_params(auth={})))
    assert error["code"] == "NOT_PAIRED" and error["message"] == "device identity required"
    assert error["details"]["code"] == "DEVICE_IDENTITY_REQUIRED"
    assert (code, reason) == (1008, "device identity required")

    conn = raw(gw)
    error, code, _ = conn.expect_rejected(conn.connect(base_params(auth={}), device=Device()))
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == "AUTH_TOKEN_MISSING"
    assert error["details"]["recommendedNextStep"] == "update_auth_configuration"
    assert code == 1008


def test_password_mode(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(token=None, password="pw")
    assert raw(gw).hello(base_params(auth={"password": "pw"}))["auth"]["method"] == "password"
    # the shared secret may travel in auth.token too
    assert raw(gw).hello(base_params(auth={"token": "pw"}))["auth"]["method"] == "password"
    conn = raw(gw)
    error, code, _ = conn.expect_rejected(conn.connect(base_params(auth={"password": "x"})))
    assert error["details"]["code"] == "AUTH_PASSWORD_MISMATCH"
    assert error["message"].startswith("unauthorized: gateway password mismatch")
    assert code == 1008
    conn = raw(gw)
    error, _, _ = conn.expect_rejected(conn.connect(base_params(auth={}), device=Device()))
    assert error["details"]["code"] == "AUTH_PASSWORD_MISSING"


def test_no_auth_configured_accepts_anyone(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(token=None)
    assert raw(gw).hello(base_params(auth={}))["auth"]["method"] == "none"


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("version", ["v3", "v2"])
def test_device_signature_accepted_and_paired_silently(gw: DevGateway, raw: Callable[..., Raw], version: str) -> None:
    device = Device()
    params = base_params(
        client={
            "id": "cli",
            "version": "1",
            "platform": "Linux",
            "mode": "cli",
            "deviceFamily": "Desktop",
        }
    )
    hello = raw(gw).hello(params, sign=lambda p, nonce, ts: device.block(p, nonce, ts, version=version))
    assert hello["auth"]["method"] == "token"
    assert hello["auth"]["scopes"] == SCOPES
    assert isinstance(hello["auth"]["deviceToken"], str) and hello["auth"]["deviceToken"]
    assert isinstance(hello["auth"]["issuedAtMs"], int)
    assert [d["deviceId"] for d in gw.paired_devices()] == [device.id]


def test_device_public_key_may_be_padded_standard_base64(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    device = Device()
    std = base64.b64encode(device.raw).decode("ascii")
    assert std.endswith("=")
    raw(gw).hello(sign=lambda p, nonce, ts: device.block(p, nonce, ts, public_key=std))


@pytest.mark.parametrize(
    ("tamper", "detail_code", "message"),
    [
        ("signature", "DEVICE_AUTH_SIGNATURE_INVALID", "device signature invalid"),
        ("nonce", "DEVICE_AUTH_NONCE_MISMATCH", "device nonce mismatch"),
        ("id", "DEVICE_AUTH_DEVICE_ID_MISMATCH", "device identity mismatch"),
        ("signedAt", "DEVICE_AUTH_SIGNATURE_EXPIRED", "device signature expired"),
        ("publicKey", "DEVICE_AUTH_PUBLIC_KEY_INVALID", "device public key invalid"),
        ("token", "DEVICE_AUTH_SIGNATURE_INVALID", "device signature invalid"),
    ],
)
def test_device_proof_rejected(
    gw: DevGateway, raw: Callable[..., Raw], tamper: str, detail_code: str, message: str
) -> None:
    device = Device()

    def sign(params: dict[str, Any], nonce: str, ts: int) -> dict[str, Any]:
        if tamper == "nonce":
            return device.block(params, str(uuid.uuid4()), ts)
        if tamper == "signedAt":
            return device.block(params, nonce, ts - 300_000)
        if tamper == "id":
            return device.block(params, nonce, ts, device_id=Device().id)
        if tamper == "publicKey":
            return device.block(params, nonce, ts, public_key=b64url(b"short"))
        if tamper == "token":  # signed with a different token than sent
            return device.block(params, nonce, ts, token="other")
        block = device.block(params, nonce, ts)
        block["signature"] = b64url(Device().key.sign(b"something else"))
        return block

    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect(sign=sign))
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == detail_code
    assert error["message"] == message
    assert (code, reason) == (1008, message)
    assert gw.paired_devices() == []


def test_pairing_required_then_approve(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(auto_approve=False)
    device = Device()
    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect(device=device))
    assert error["code"] == "NOT_PAIRED" and error["message"] == "device pairing required"
    details = error["details"]
    request_id = details["requestId"]
    assert details["code"] == "PAIRING_REQUIRED" and details["reason"] == "not-paired"
    assert details["deviceId"] == device.id
    assert details["requestedRole"] == "operator" and details["requestedScopes"] == SCOPES
    assert code == 1008
    assert reason == f"pairing required: device is not approved yet (requestId: {request_id})"

    # asking again keeps the same pending request
    conn = raw(gw)
    again, _, _ = conn.expect_rejected(conn.connect(device=device))
    assert again["details"]["requestId"] == request_id
    pending = gw.pending_pairing_requests()
    assert [(r["requestId"], r["deviceId"]) for r in pending] == [(request_id, device.id)]

    gw.approve(request_id)
    assert gw.pending_pairing_requests() == []
    hello = raw(gw).hello(device=device)
    assert hello["auth"]["deviceToken"] and hello["auth"]["scopes"] == SCOPES


def test_origin_header_disables_silent_pairing(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw, origin=True)
    error, _, _ = conn.expect_rejected(conn.connect(device=Device()))
    assert error["details"]["code"] == "PAIRING_REQUIRED"


def test_scope_upgrade_needs_approval(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(auto_approve=False)
    device = Device()
    conn = raw(gw)
    first, _, _ = conn.expect_rejected(conn.connect(base_params(scopes=["operator.read"]), device=device))
    gw.approve(first["details"]["requestId"])
    token = raw(gw).hello(base_params(scopes=["operator.read"]), device=device)["auth"]["deviceToken"]
    conn = raw(gw)
    params = base_params(scopes=["operator.admin"], auth={"deviceToken": token})
    error, _, reason = conn.expect_rejected(conn.connect(params, device=device))
    assert error["message"] == "scope upgrade pending approval"
    assert error["details"]["reason"] == "scope-upgrade"
    assert error["details"]["approvedScopes"] == ["operator.read"]
    assert "more scopes than currently approved" in reason


def test_device_token_reconnect(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    device = Device()
    first = raw(gw).hello(device=device)["auth"]["deviceToken"]
    params = base_params(auth={"deviceToken": first})
    hello = raw(gw).hello(params, device=device)
    assert hello["auth"]["method"] == "device-token"
    assert hello["auth"]["deviceToken"] not in ("", first)
    # the device token is also accepted in the auth.token slot
    hello = raw(gw).hello(base_params(auth={"token": first}), device=device)
    assert hello["auth"]["method"] == "device-token"

    gw.invalidate_device_tokens(device.id)
    conn = raw(gw)
    error, code, _ = conn.expect_rejected(conn.connect(base_params(auth={"deviceToken": first}), device=device))
    assert error["details"]["code"] == "AUTH_DEVICE_TOKEN_MISMATCH"
    assert error["message"].startswith("unauthorized: device token mismatch")
    assert code == 1008


def test_enforce_scopes_emulates_deviceless_scope_clearing(
    make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]
) -> None:
    gw = make_gw(enforce_scopes=True)
    kept = raw(gw)
    assert kept.hello()["auth"]["scopes"] == SCOPES  # cli/cli without Origin keeps them
    assert kept.call("status")["ok"] is True
    client = {"id": "test", "version": "1", "platform": "linux", "mode": "test"}
    cleared = raw(gw)
    assert cleared.hello(base_params(client=client))["auth"]["scopes"] == []
    res = cleared.call("status")
    assert res["ok"] is False and res["error"]["code"] == "FORBIDDEN"
    assert res["error"]["message"] == "missing scope: operator.read"
    assert cleared.call("health")["ok"] is True


def test_reject_pairing_request(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(auto_approve=False)
    conn = raw(gw)
    error, _, _ = conn.expect_rejected(conn.connect(device=Device()))
    request_id = error["details"]["requestId"]
    gw.reject(request_id)
    assert gw.pending_pairing_requests() == []
    with pytest.raises(KeyError):
        gw.approve(request_id)


def test_revoke_device_closes_4001(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    device = Device()
    conn = raw(gw)
    conn.hello(device=device)
    [info] = gw.connections()
    assert info["deviceId"] == device.id and info["authMethod"] == "token" and info["origin"] is None
    assert gw.revoke_device(device.id)
    assert conn.expect_close() == (4001, "client invalidated: device revoked")
    assert gw.paired_devices() == []


# --------------------------------------------------------------------------- requests


def test_builtin_methods(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    health = conn.call("health")
    assert health["ok"] is True and health["payload"]["ok"] is True
    assert isinstance(health["payload"]["ts"], int)
    status = conn.call("status", {})["payload"]
    assert status["ok"] is True and isinstance(status["pid"], int)
    presence = conn.call("system-presence", {})["payload"]
    assert isinstance(presence, list) and {"ts", "host", "mode"} <= set(presence[0])
    assert conn.call("echo", {"x": [1, 2]})["payload"] == {"x": [1, 2]}
    assert conn.call("echo")["payload"] == {}  # absent params become {}
    unknown = conn.call("no.such.method", {})
    assert unknown["ok"] is False
    assert unknown["error"] == {
        "code": "INVALID_REQUEST",
        "message": "unknown method: no.such.method",
    }
    assert gw.requests_by_method == {
        "connect": 1,
        "health": 1,
        "status": 1,
        "system-presence": 1,
        "echo": 2,
        "no.such.method": 1,
    }


def test_request_frame_validation(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    conn.send({"type": "req", "id": 7, "method": "health"})
    res = conn.recv_json()
    assert res["id"] == 7 and res["ok"] is False
    assert res["error"]["code"] == "INVALID_REQUEST"
    conn.send({"type": "req", "id": "a", "method": "health", "jsonrpc": "2.0"})
    res = conn.recv_json()
    assert res["id"] == "a" and "unexpected property 'jsonrpc'" in res["error"]["message"]
    assert conn.call("health")["ok"] is True  # connection survives
    assert gw.invalid_frames == 2


def test_twostage_sends_two_res_for_one_id(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    req_id = conn.request("dev.twostage", {"q": 1})
    first, second = conn.recv_json(), conn.recv_json()
    assert first["id"] == second["id"] == req_id
    assert first["payload"]["status"] == "accepted"
    assert second["payload"] == {
        "status": "ok",
        "runId": first["payload"]["runId"],
        "result": {"q": 1},
    }


def test_delayed_method_answers_out_of_order(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    gw.set_method_delay("echo", 0.3)
    slow = conn.request("echo", {"slow": True})
    fast = conn.request("health")
    assert conn.recv_json()["id"] == fast
    late = conn.recv_json()
    assert late["id"] == slow and late["payload"] == {"slow": True}


def test_delay_is_cut_short_by_stop(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    gw.set_method_delay("echo", 60)
    conn.request("echo")
    assert gw.wait_for(lambda g: g.requests_by_method.get("echo") == 1, RECV_TIMEOUT)
    started = time.monotonic()
    threading.Thread(target=gw.stop, name="test-stopper").start()
    assert conn.next_event("shutdown")["payload"] == {"reason": "gateway stopping"}
    assert conn.expect_close() == (1012, "service restart")
    assert gw.wait_for(lambda g: not g.running, RECV_TIMEOUT)
    gw.stop()  # idempotent; returns once everything is joined
    assert time.monotonic() - started < 10


def test_never_answer(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    gw.never_answer("status")
    lost = conn.request("status")
    res = conn.call("health")
    assert res["ok"] is True
    assert gw.requests_by_method["status"] == 1
    gw.clear_faults()
    assert conn.call("status")["ok"] is True
    assert lost  # never answered: the only res frames seen were for other ids


def test_custom_handler(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    def fail(_params: Any) -> Any:
        raise DevGatewayError("UNAVAILABLE", "busy", {"why": "test"}, retryable=True, retry_after_ms=5)

    gw.set_handler("sessions.list", lambda params: {"sessions": [], "echo": params})
    gw.set_handler("chat.send", fail)
    gw.set_handler("wake", lambda _params: None)
    conn = raw(gw)
    hello = conn.hello()
    assert {"sessions.list", "chat.send"} <= set(hello["features"]["methods"])
    assert conn.call("sessions.list", {"limit": 1})["payload"] == {
        "sessions": [],
        "echo": {"limit": 1},
    }
    assert conn.call("wake") == {"type": "res", "id": conn.last_id, "ok": True}  # no payload key
    error = conn.call("chat.send", {})["error"]
    assert error == {
        "code": "UNAVAILABLE",
        "message": "busy",
        "details": {"why": "test"},
        "retryable": True,
        "retryAfterMs": 5,
    }


# --------------------------------------------------------------------------- events


def test_seq_is_dense_per_connection_and_resets(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    first = raw(gw)
    first.hello()  # health event = seq 1
    for n in range(3):
        assert gw.broadcast("custom", {"n": n}) == 1
    seqs = [first.recv_json()["seq"] for _ in range(3)]
    assert seqs == [2, 3, 4]
    second = raw(gw)
    second.hello()  # its health event is seq 1 again
    assert gw.broadcast("custom", state_version={"presence": 2, "health": 1}) == 2
    assert first.recv_json()["seq"] == 5
    frame = second.recv_json()
    assert frame["seq"] == 2 and frame["stateVersion"] == {"presence": 2, "health": 1}
    assert "payload" not in frame


def test_tick_at_configured_interval(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(tick_interval_ms=50)
    conn = raw(gw)
    assert conn.hello()["policy"]["tickIntervalMs"] == 50
    ticks = [conn.next_event("tick") for _ in range(4)]
    stamps = [t["payload"]["ts"] for t in ticks]
    assert [t["seq"] for t in ticks] == list(range(ticks[0]["seq"], ticks[0]["seq"] + 4))
    assert 100 <= stamps[-1] - stamps[0] <= 1000


def test_skip_seq_makes_a_gap(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    gw.skip_seq(3)
    gw.broadcast("a")
    gw.broadcast("b")
    assert [conn.recv_json()["seq"] for _ in range(2)] == [5, 6]


def test_stop_and_start_ticking(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(tick_interval_ms=30)
    conn = raw(gw)
    conn.hello()
    conn.next_event("tick")
    gw.stop_ticking()
    gw.broadcast("marker")
    conn.next_event("marker")  # ticks sent before stop_ticking() returned come first
    conn.ws.settimeout(0.3)
    with pytest.raises(websocket.WebSocketTimeoutException):
        conn.recv_json()
    conn.ws.settimeout(RECV_TIMEOUT)
    gw.start_ticking()
    assert conn.recv_json()["event"] == "tick"


def test_send_raw(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    for text in ("not json", "[1,2]", '{"type":"bogus"}', '{"type":"res"}'):
        assert gw.send_raw(text) == 1
        assert conn.ws.recv() == text


# --------------------------------------------------------------------------- faults


def test_drop_connections_is_abnormal(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    assert gw.drop_connections() == 1
    assert gw.open_sockets == 0
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        conn.ws.recv_data_frame(True)


def test_close_connections(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    assert gw.close_connections(4000, "bye") == 1
    assert conn.expect_close() == (4000, "bye")
    assert gw.wait_for(lambda g: g.open_sockets == 0, RECV_TIMEOUT)


def test_restart_window_refuses_then_accepts(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    port = gw.port
    begin = threading.Thread(target=gw.restart_begin, name="test-restart")
    begin.start()
    shutdown = conn.next_event("shutdown")
    assert shutdown["payload"] == {"reason": "gateway restarting", "restartExpectedMs": 1500}
    assert shutdown["seq"] == 2
    assert conn.expect_close() == (1012, "service restart")
    begin.join()
    assert not gw.running
    with pytest.raises(ConnectionRefusedError):
        websocket.create_connection(gw.url, suppress_origin=True, timeout=RECV_TIMEOUT)
    gw.restart_end()
    assert gw.port == port and gw.running
    raw(gw).hello()
    assert gw.lifetimes == 2
    assert gw.sockets_accepted_per_lifetime == [1, 1]
    assert gw.sockets_accepted == 2 and gw.handshakes_completed == 2


def test_restart_with_down_time(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    restarter = threading.Thread(
        target=gw.restart, kwargs={"down_for": 0.2, "restart_expected_ms": 200}, name="test-restart"
    )
    restarter.start()
    assert conn.next_event("shutdown")["payload"]["restartExpectedMs"] == 200
    assert conn.expect_close()[0] == 1012
    restarter.join()
    assert gw.running and gw.lifetimes == 2
    raw(gw).hello()


def test_reject_next_unavailable(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    gw.reject_next_unavailable(1, retry_after_ms=250)
    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect())
    assert error == {
        "code": "UNAVAILABLE",
        "message": "gateway starting; retry shortly",
        "details": {"reason": "startup-sidecars"},
        "retryable": True,
        "retryAfterMs": 250,
    }
    assert (code, reason) == (1013, "gateway starting")
    raw(gw).hello()  # only the next one was rejected


def test_reject_next_connects_custom(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    gw.reject_next_connects(
        1,
        code="INVALID_REQUEST",
        message="unauthorized: gateway token mismatch",
        details={"code": "AUTH_TOKEN_MISMATCH"},
        close_reason="unauthorized: gateway token mismatch",
    )
    gw.reject_next_connects(
        1,
        code="NOT_PAIRED",
        message="device pairing required",
        details={"code": "PAIRING_REQUIRED", "requestId": "r1"},
        close_reason="pairing required: device is not approved yet (requestId: r1)",
    )
    conn = raw(gw)
    error, code, reason = conn.expect_rejected(conn.connect())
    assert error["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    assert (code, reason) == (1008, "unauthorized: gateway token mismatch")
    conn = raw(gw)
    error, code, _ = conn.expect_rejected(conn.connect())
    assert error["code"] == "NOT_PAIRED" and code == 1008
    raw(gw).hello()
    assert gw.connect_attempts == 3 and gw.handshakes_completed == 1


def test_set_token_closes_existing_with_4001(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.hello()
    gw.set_token("new-token", close_existing=True)
    assert conn.expect_close() == (4001, "gateway auth changed")
    stale = raw(gw)
    error, _, _ = stale.expect_rejected(stale.connect())
    assert error["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    raw(gw).hello(base_params(auth={"token": "new-token"}))


def test_preauth_payload_limit(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    conn = raw(gw)
    conn.read_challenge()
    conn.request("connect", base_params(userAgent="x" * 70_000))
    assert conn.expect_close() == (1009, "preauth payload too large")


def test_handshake_timeout(make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]) -> None:
    gw = make_gw(handshake_timeout=0.2)
    conn = raw(gw)
    conn.read_challenge()
    assert conn.expect_close()[0] == 1000


# --------------------------------------------------------------------------- counters


def test_counters(gw: DevGateway, raw: Callable[..., Raw]) -> None:
    with_origin = raw(gw, origin=True)
    with_origin.hello()
    without = raw(gw)
    without.hello()
    assert gw.origin_headers_seen == 1
    assert [c["origin"] is None for c in sorted(gw.connections(), key=lambda c: c["origin"] is None)] == [
        False,
        True,
    ]
    assert gw.sockets_accepted == 2 and gw.handshakes_completed == 2
    assert gw.open_sockets == 2 and gw.max_open_sockets == 2
    assert gw.connect_attempts == 2 and gw.handshaken_connections == 2
    assert gw.connect_requests[0]["client"]["id"] == "cli"
    with_origin.close()
    without.close()
    assert gw.wait_for(lambda g: g.open_sockets == 0, RECV_TIMEOUT)
    assert gw.max_open_sockets == 2 and gw.lifetimes == 1


def test_stop_sends_shutdown_then_1012_and_joins_threads(
    make_gw: Callable[..., DevGateway], raw: Callable[..., Raw]
) -> None:
    gw = make_gw(tick_interval_ms=20)
    conn = raw(gw)
    conn.hello()
    stopper = threading.Thread(target=gw.stop, name="test-stopper")
    stopper.start()
    assert conn.next_event("shutdown")["payload"] == {"reason": "gateway stopping"}
    assert conn.expect_close() == (1012, "service restart")
    stopper.join()
    assert not [t for t in threading.enumerate() if t.name.startswith("devgw-")]
    with pytest.raises(ConnectionRefusedError):
        websocket.create_connection(gw.url, suppress_origin=True, timeout=RECV_TIMEOUT)
    gw.stop()


def test_context_manager() -> None:
    with DevGateway(token=TOKEN) as gw:
        assert gw.url == f"ws://127.0.0.1:{gw.port}" and gw.port > 0
        conn = Raw(gw.url)
        try:
            conn.hello()
        finally:
            conn.close()
    assert not gw.running
