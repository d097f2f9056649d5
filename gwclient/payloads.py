"""Typed views of what the gateway sends: hello-ok parts and method/event payloads.

Each class has ``from_payload(dict)`` (raises :class:`gwclient.ProtocolError` on a wrong
shape) and keeps the whole answer in ``raw``, so fields this version does not type are
still there.  :class:`gwclient.HelloOk` itself is a core name.
"""

from __future__ import annotations

from ._core.frames import Policy, StateVersion
from ._core.payloads import (
    HealthSnapshot,
    PresenceEntry,
    SessionDefaults,
    ShutdownNotice,
    SnapshotPayload,
    Tick,
    presence_entries,
)

__all__ = [
    "HealthSnapshot",
    "Policy",
    "PresenceEntry",
    "SessionDefaults",
    "ShutdownNotice",
    "SnapshotPayload",
    "StateVersion",
    "Tick",
    "presence_entries",
]
