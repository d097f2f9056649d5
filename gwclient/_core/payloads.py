"""Typed views of the stable event and method payloads, so consumers stay thin.

Each ``from_payload`` tolerates unknown keys (newer gateways add fields) and keeps the
whole payload in ``raw``; a payload that is not an object, or lacks a required field,
raises :class:`~gwclient.ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from dataclasses_json import DataClassJsonMixin, LetterCase, Undefined, dataclass_json

from .._errors import ProtocolError
from .frames import StateVersion

__all__ = [
    "HealthSnapshot",
    "PresenceEntry",
    "SessionDefaults",
    "ShutdownNotice",
    "SnapshotPayload",
    "Tick",
    "presence_entries",
]

_camel = dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)  # type: ignore[call-overload]
_P = TypeVar("_P", bound="_Payload")


class _Payload(DataClassJsonMixin):
    _required: tuple[str, ...] = ()

    @classmethod
    def from_payload(cls: type[_P], payload: Any) -> _P:
        if not isinstance(payload, dict):
            raise ProtocolError(f"{cls.__name__} payload is not an object")
        missing = [key for key in cls._required if payload.get(key) is None]
        if missing:
            raise ProtocolError(f"{cls.__name__} payload lacks {', '.join(missing)}")
        try:
            obj = cls.from_dict(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"{cls.__name__} payload: {exc!r}") from exc
        object.__setattr__(obj, "raw", payload)
        return obj


@_camel
@dataclass(frozen=True)
class Tick(_Payload):
    """``tick`` event: ``{ts}`` every ``policy.tickIntervalMs``."""

    _required = ("ts",)
    ts: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@_camel
@dataclass(frozen=True)
class ShutdownNotice(_Payload):
    """``shutdown`` event: the gateway is stopping (``restart_expected_ms`` set when it is
    restarting).  gwclient waits about that long before its first reconnect."""

    _required = ("reason",)
    reason: str = ""
    restart_expected_ms: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@_camel
@dataclass(frozen=True)
class PresenceEntry(_Payload):
    """One entry of ``system-presence`` / the ``presence`` event / the snapshot."""

    _required = ("ts",)
    ts: int = 0
    host: str | None = None
    client_id: str | None = None
    ip: str | None = None
    version: str | None = None
    platform: str | None = None
    device_family: str | None = None
    mode: str | None = None
    reason: str | None = None
    text: str | None = None
    device_id: str | None = None
    instance_id: str | None = None
    roles: list[str] | None = None
    scopes: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def presence_entries(payload: Any) -> list[PresenceEntry]:
    """Entries from a ``system-presence`` answer (a list) or a ``presence`` event
    (``{presence: [...]}``)."""
    items = payload.get("presence") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ProtocolError("presence payload is not a list of entries")
    return [PresenceEntry.from_payload(item) for item in items]


@_camel
@dataclass(frozen=True)
class HealthSnapshot(_Payload):
    """``health`` answer and event.  Only the stable top-level keys are typed."""

    ok: bool | None = None
    ts: int | None = None
    duration_ms: int | None = None
    heartbeat_seconds: int | None = None
    default_agent_id: str | None = None
    channels: dict[str, Any] | None = None
    agents: list[Any] | None = None
    sessions: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@_camel
@dataclass(frozen=True)
class SessionDefaults(_Payload):
    default_agent_id: str | None = None
    main_key: str | None = None
    main_session_key: str | None = None
    model_configured: bool | None = None
    scope: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@_camel
@dataclass(frozen=True)
class SnapshotPayload(_Payload):
    """``hello-ok.snapshot``: presence, health, state versions, uptime, session defaults."""

    presence: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)
    state_version: StateVersion = field(default_factory=StateVersion)
    uptime_ms: int | None = None
    session_defaults: dict[str, Any] | None = None
    config_path: str | None = None
    state_dir: str | None = None
    auth_mode: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def presence_entries(self) -> list[PresenceEntry]:
        return presence_entries(self.presence)

    @property
    def health_snapshot(self) -> HealthSnapshot:
        return HealthSnapshot.from_payload(self.health)

    @property
    def defaults(self) -> SessionDefaults | None:
        if self.session_defaults is None:
            return None
        return SessionDefaults.from_payload(self.session_defaults)
