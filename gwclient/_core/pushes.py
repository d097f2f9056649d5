"""What a :class:`~gwclient.Subscription` yields.  Frozen dataclasses: pykka does not copy
messages, and several subscribers receive the same object."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Union

from .frames import HelloOk, StateVersion
from .stats import ConnectPhases

__all__ = [
    "ConnectionState",
    "Event",
    "Overflow",
    "Push",
    "SeqGap",
    "Snapshot",
    "StateChange",
]


class ConnectionState(enum.StrEnum):
    """The channel's state machine (DESIGN.md)::

        IDLE -> CONNECTING -> CONNECTED -> RECONNECTING -> CONNECTING -> ...
                     \\-> PAUSED (non-recoverable connect error; waits for a config change)
        any -> CLOSED (shutdown; final)
    """

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    PAUSED = "paused"
    CLOSED = "closed"


@dataclass(frozen=True)
class Snapshot:
    """The gateway's hello-ok: sent first to a new subscriber (if connected) and after every
    (re)connect, so consumers know to re-read any state they keep."""

    hello: HelloOk
    connection_number: int

    @property
    def snapshot(self) -> dict[str, Any]:
        return self.hello.snapshot

    @property
    def state_version(self) -> StateVersion:
        raw = self.hello.snapshot.get("stateVersion") or {}
        return StateVersion(int(raw.get("presence", 0)), int(raw.get("health", 0)))


@dataclass(frozen=True)
class Event:
    """A gateway event frame (``tick``, ``health``, ``presence``, ``chat``...)."""

    event: str
    payload: Any = None
    seq: int | None = None
    state_version: StateVersion | None = None


@dataclass(frozen=True)
class SeqGap:
    """Events were lost: ``received`` arrived where ``expected`` was due.  Yielded before the
    event that revealed the gap.  Refresh state (``health``, ``system-presence``...)."""

    expected: int
    received: int

    @property
    def missed(self) -> int:
        return self.received - self.expected


@dataclass(frozen=True)
class StateChange:
    """The connection moved to ``state``; ``error`` says why when it is PAUSED;
    ``phases`` (:class:`ConnectPhases`) how long the connect took, when it is CONNECTED."""

    state: ConnectionState
    detail: str = ""
    error: BaseException | None = field(default=None, compare=False)
    phases: ConnectPhases | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Overflow:
    """This subscriber's queue was full (``maxsize`` items or ``max_bytes`` bytes):
    ``dropped`` oldest items, ``dropped_bytes`` bytes (their estimated decoded size), were
    discarded to make room (the overflow policy is *drop oldest, then tell*)."""

    dropped: int
    dropped_bytes: int = 0


Push = Union[Snapshot, Event, SeqGap, StateChange, Overflow]  # noqa: UP007 (a runtime alias)
