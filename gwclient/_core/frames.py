"""Typed protocol-4 frames (dataclasses-json) and their strict-but-tolerant decoding.

Pure code: no sockets, no threads.  Decoding tolerates unknown keys that newer gateways
add, but a frame that is not a JSON object, has an unknown ``type`` or lacks a required
field raises :class:`~gwclient.ProtocolError` (never a crash, never a silent wrong value).
Encoding emits only keys the gateway's closed schemas accept (PROTOCOL.md §1-2): ``None``
fields are dropped, nothing else is added.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from dataclasses_json import DataClassJsonMixin, LetterCase, Undefined, dataclass_json
from dataclasses_json import config as dj_config

from .._errors import ProtocolError
from .encode import encode_request
from .nesting import too_deep

__all__ = [
    "AuthParams",
    "ClientInfo",
    "ConnectChallenge",
    "ConnectParams",
    "DeviceProof",
    "ErrorShape",
    "EventFrame",
    "Features",
    "Frame",
    "HelloAuth",
    "HelloOk",
    "Policy",
    "RequestFrame",
    "ResponseFrame",
    "ServerInfo",
    "StateVersion",
    "compact",
    "decode_frame",
    "encode_frame",
]

PROTOCOL_VERSION = 4

_camel = dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)  # type: ignore[call-overload]
# The frames built on every answer and event keep the dataclass's own __init__: with
# ``undefined=EXCLUDE`` dataclasses-json wraps __init__ in a signature-binding shim that
# cost ~11 us a frame (a fifth of the reader's time, BENCHMARKS.md).  Their from_dict still
# ignores unknown keys (dataclasses-json's default), and decode_frame builds them directly.
_hot = dataclass_json(letter_case=LetterCase.CAMEL)  # type: ignore[call-overload]


def _redacted(value: object) -> object:
    return "<redacted>" if value else value


def compact(value: Any) -> Any:
    """Drop ``None`` values from dicts (recursively): the closed schemas reject ``null``
    for optional fields that a client simply should not send."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def _check(obj: Mapping[str, Any], key: str, kind: type, what: str, *, optional: bool = False) -> None:
    value = obj.get(key)
    if value is None:
        if optional:
            return
        raise ProtocolError(f"{what}: missing required field {key!r}")
    # bool is an int subclass: never accept it where a number is required.
    if isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"{what}: field {key!r} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise ProtocolError(f"{what}: field {key!r} has the wrong type ({type(value).__name__})")


# --------------------------------------------------------------------------- frames


@_hot
@dataclass(frozen=True)
class StateVersion(DataClassJsonMixin):
    presence: int = 0
    health: int = 0


@_hot
@dataclass(frozen=True)
class ErrorShape(DataClassJsonMixin):
    code: str
    message: str = ""
    details: dict[str, Any] | None = None
    retryable: bool | None = None
    retry_after_ms: int | None = None


@_hot
@dataclass(frozen=True)
class RequestFrame(DataClassJsonMixin):
    id: str
    method: str
    params: Any = None
    type: str = "req"


@_hot
@dataclass(frozen=True)
class ResponseFrame(DataClassJsonMixin):
    id: str
    ok: bool
    payload: Any = None
    error: ErrorShape | None = None
    type: str = "res"


@_hot
@dataclass(frozen=True)
class EventFrame(DataClassJsonMixin):
    event: str
    payload: Any = None
    seq: int | None = None
    state_version: StateVersion | None = None
    type: str = "event"


Frame = Union[RequestFrame, ResponseFrame, EventFrame]  # noqa: UP007 (a runtime alias)


def decode_frame(data: str | bytes) -> Frame:
    """Decode one websocket text frame into a typed frame or raise :class:`ProtocolError`."""
    if too_deep(data):  # the same limit on every Python (3.13's decoder goes deeper)
        raise ProtocolError("frame is nested too deeply")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}") from exc
    except RecursionError:
        # json's C decoder recurses per nesting level: a frame nested ~1000 deep or more is
        # refused here (no legitimate gateway frame comes close) instead of escaping as a
        # RecursionError from the reader.  Nothing is chained: the traceback is huge.
        raise ProtocolError("frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame is not a JSON object (got {type(obj).__name__})")
    kind = obj.get("type")
    # The hot path (every answer, every event) builds the dataclasses directly once the
    # fields are checked: dataclasses-json's from_dict costs ~110-220 us a frame, which was
    # a fifth of a request's round trip (scripts/bench.py).  Same classes, same result.
    if kind == "res":
        _check(obj, "id", str, "res frame")
        _check(obj, "ok", bool, "res frame")
        error = None
        if not obj["ok"]:
            _check(obj, "error", dict, "res frame with ok:false")
            error = decode_error_shape(obj["error"])
        return ResponseFrame(id=obj["id"], ok=obj["ok"], payload=obj.get("payload"), error=error)
    if kind == "event":
        _check(obj, "event", str, "event frame")
        _check(obj, "seq", int, "event frame", optional=True)
        seq = obj.get("seq")
        if seq is not None and seq < 0:
            raise ProtocolError("event frame: negative seq")
        _check(obj, "stateVersion", dict, "event frame", optional=True)
        raw_sv = obj.get("stateVersion")
        state_version = None
        if raw_sv is not None:
            _check(raw_sv, "presence", int, "event stateVersion", optional=True)
            _check(raw_sv, "health", int, "event stateVersion", optional=True)
            state_version = StateVersion(raw_sv.get("presence") or 0, raw_sv.get("health") or 0)
        return EventFrame(event=obj["event"], payload=obj.get("payload"), seq=seq, state_version=state_version)
    if kind == "req":
        _check(obj, "id", str, "req frame")
        _check(obj, "method", str, "req frame")
        return RequestFrame(id=obj["id"], method=obj["method"], params=obj.get("params"))
    raise ProtocolError(f"unknown frame type {kind!r}")


def decode_error_shape(obj: Any) -> ErrorShape:
    if not isinstance(obj, dict):
        raise ProtocolError("error shape is not an object")
    _check(obj, "code", str, "error shape")
    _check(obj, "message", str, "error shape", optional=True)
    _check(obj, "details", dict, "error shape", optional=True)
    _check(obj, "retryable", bool, "error shape", optional=True)
    _check(obj, "retryAfterMs", int, "error shape", optional=True)
    return ErrorShape(
        code=obj["code"],
        message=obj.get("message") or "",
        details=obj.get("details"),
        retryable=obj.get("retryable"),
        retry_after_ms=obj.get("retryAfterMs"),
    )


def encode_frame(frame: RequestFrame) -> str:
    """Encode a request frame to the exact JSON the gateway's closed schema accepts (the
    text form of :func:`gwclient._core.encode.encode_request`, the one request encoder)."""
    if not frame.id:
        raise ValueError("request id must be a non-empty string")
    return encode_request(frame.id, frame.method, frame.params).decode("utf-8")


# ----------------------------------------------------------------- handshake frames


def _opt(obj: Mapping[str, Any], key: str, kind: type, what: str, default: Any) -> Any:
    """An optional field of type ``kind``: missing or ``null`` gives ``default``."""
    _check(obj, key, kind, what, optional=True)
    value = obj.get(key)
    return default if value is None else value


def _str_list(obj: Mapping[str, Any], key: str, what: str) -> list[str]:
    """An optional list of strings (missing or ``null``: empty).  Never coerced: a string
    is not a list of its characters, a number is not a string."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(f"{what}: field {key!r} must be a list of strings")
    return list(value)


@_camel
@dataclass(frozen=True)
class ConnectChallenge(DataClassJsonMixin):
    nonce: str
    ts: int
    capabilities: list[str] = field(default_factory=list)

    @classmethod
    def from_event(cls, frame: EventFrame) -> ConnectChallenge:
        payload = frame.payload
        if frame.event != "connect.challenge" or not isinstance(payload, dict):
            raise ProtocolError("expected a connect.challenge event with an object payload")
        _check(payload, "nonce", str, "connect.challenge")
        _check(payload, "ts", int, "connect.challenge")
        if payload["ts"] < 0 or not payload["nonce"]:
            raise ProtocolError("connect.challenge has an empty nonce or a negative ts")
        return cls(payload["nonce"], payload["ts"], _str_list(payload, "capabilities", "connect.challenge"))


@_camel
@dataclass(frozen=True)
class ClientInfo(DataClassJsonMixin):
    id: str
    version: str
    platform: str
    mode: str
    display_name: str | None = None
    device_family: str | None = None
    model_identifier: str | None = None
    instance_id: str | None = None


@_camel
@dataclass(frozen=True)
class AuthParams(DataClassJsonMixin):
    token: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    device_token: str | None = field(default=None, repr=False)
    bootstrap_token: str | None = field(default=None, repr=False)

    @property
    def signing_token(self) -> str:
        """The token slot of the device-auth payload (PROTOCOL.md §2.3)."""
        return self.token or self.device_token or self.bootstrap_token or ""

    @property
    def is_empty(self) -> bool:
        return not (self.token or self.password or self.device_token or self.bootstrap_token)


@_camel
@dataclass(frozen=True)
class DeviceProof(DataClassJsonMixin):
    id: str
    public_key: str
    signature: str = field(repr=False)
    signed_at: int
    nonce: str


@_camel
@dataclass(frozen=True)
class ConnectParams(DataClassJsonMixin):
    client: ClientInfo
    min_protocol: int = PROTOCOL_VERSION
    max_protocol: int = PROTOCOL_VERSION
    role: str = "operator"
    scopes: list[str] = field(default_factory=list)
    caps: list[str] = field(default_factory=list)
    auth: AuthParams | None = None
    device: DeviceProof | None = None

    def to_wire(self) -> dict[str, Any]:
        data = compact(self.to_dict(encode_json=False))
        if self.auth is not None and self.auth.is_empty:
            data.pop("auth", None)
        return data  # type: ignore[no-any-return]


@_camel
@dataclass(frozen=True)
class ServerInfo(DataClassJsonMixin):
    version: str = ""
    conn_id: str = ""
    build_id: str | None = None
    boot_id: str | None = None


@_camel
@dataclass(frozen=True)
class Features(DataClassJsonMixin):
    methods: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)


@_camel
@dataclass(frozen=True)
class Policy(DataClassJsonMixin):
    max_payload: int = 26_214_400
    max_buffered_bytes: int = 52_428_800
    tick_interval_ms: int = 30_000
    #: ``policy.attachments`` (``maxBytes``, ``maxImageBytes``) when the gateway sends it.
    attachments: dict[str, int] | None = None


@_camel
@dataclass(frozen=True)
class HelloAuth(DataClassJsonMixin):
    role: str = "operator"
    scopes: list[str] = field(default_factory=list)
    method: str | None = None
    # A secret: never in a repr, and ``to_dict()``/``to_json()`` (of this or of HelloOk)
    # say only that there was one, so a logged or printed hello-ok leaks nothing.
    device_token: str | None = field(default=None, repr=False, metadata=dj_config(encoder=_redacted))
    issued_at_ms: int | None = None
    #: ``auth.deviceTokens``: more device tokens handed over with a bootstrap (setup code)
    #: connect, each ``{deviceToken, role, scopes, issuedAtMs}``.
    device_tokens: list[dict[str, Any]] = field(default_factory=list, repr=False)


@_camel
@dataclass(frozen=True)
class HelloOk(DataClassJsonMixin):
    """The payload of a successful ``connect`` response."""

    protocol: int
    server: ServerInfo = field(default_factory=ServerInfo)
    features: Features = field(default_factory=Features)
    snapshot: dict[str, Any] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    auth: HelloAuth | None = None
    type: str = "hello-ok"

    @classmethod
    def from_payload(cls, payload: Any) -> HelloOk:
        if not isinstance(payload, dict):
            raise ProtocolError("hello-ok payload is not an object")
        if payload.get("type") != "hello-ok":
            raise ProtocolError(f"connect answered with {payload.get('type')!r}, not hello-ok")
        _check(payload, "protocol", int, "hello-ok")
        for key in ("server", "features", "snapshot", "policy", "auth"):
            _check(payload, key, dict, "hello-ok", optional=True)
        # Built field by field (not dataclasses-json's from_dict, which coerces: a string
        # became a list of its characters, ``null`` stayed in a list field).
        raw_server = payload.get("server") or {}
        server = ServerInfo(
            version=_opt(raw_server, "version", str, "hello-ok.server", ""),
            conn_id=_opt(raw_server, "connId", str, "hello-ok.server", ""),
            build_id=_opt(raw_server, "buildId", str, "hello-ok.server", None),
            boot_id=_opt(raw_server, "bootId", str, "hello-ok.server", None),
        )
        raw_features = payload.get("features") or {}
        features = Features(
            methods=_str_list(raw_features, "methods", "hello-ok.features"),
            events=_str_list(raw_features, "events", "hello-ok.features"),
            capabilities=_str_list(raw_features, "capabilities", "hello-ok.features"),
        )
        raw_policy = payload.get("policy") or {}
        defaults = Policy()
        policy = Policy(
            max_payload=_opt(raw_policy, "maxPayload", int, "hello-ok.policy", defaults.max_payload),
            max_buffered_bytes=_opt(
                raw_policy, "maxBufferedBytes", int, "hello-ok.policy", defaults.max_buffered_bytes
            ),
            tick_interval_ms=_opt(raw_policy, "tickIntervalMs", int, "hello-ok.policy", defaults.tick_interval_ms),
            attachments=_int_map(raw_policy.get("attachments")),
        )
        raw_auth = payload.get("auth")
        auth = None
        if raw_auth is not None:
            auth = HelloAuth(
                role=_opt(raw_auth, "role", str, "hello-ok.auth", "operator"),
                scopes=_str_list(raw_auth, "scopes", "hello-ok.auth"),
                method=_opt(raw_auth, "method", str, "hello-ok.auth", None),
                device_token=_opt(raw_auth, "deviceToken", str, "hello-ok.auth", None),
                issued_at_ms=_opt(raw_auth, "issuedAtMs", int, "hello-ok.auth", None),
                device_tokens=[t for t in raw_auth.get("deviceTokens") or [] if _is_handoff(t)],
            )
        return cls(
            protocol=payload["protocol"],
            server=server,
            features=features,
            snapshot=dict(payload.get("snapshot") or {}),
            policy=policy,
            auth=auth,
        )


def _int_map(value: Any) -> dict[str, int] | None:
    """An object of positive integers (``policy.attachments``), else ``None``."""
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items()
            if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0}


def _is_handoff(entry: Any) -> bool:
    """A well-formed ``auth.deviceTokens[]`` entry (others are ignored)."""
    return (isinstance(entry, dict) and isinstance(entry.get("deviceToken"), str) and bool(entry["deviceToken"])
            and isinstance(entry.get("role"), str) and isinstance(entry.get("scopes"), list))
