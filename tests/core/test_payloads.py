"""Typed payload helpers: tolerant of new keys, strict about shape, raw kept."""

from __future__ import annotations

import pytest

from gwclient import ProtocolError
from gwclient._core.frames import HelloOk
from gwclient._core.pushes import Snapshot
from gwclient.payloads import (
    HealthSnapshot,
    ShutdownNotice,
    SnapshotPayload,
    StateVersion,
    Tick,
    presence_entries,
)


def test_tick_and_shutdown() -> None:
    assert Tick.from_payload({"ts": 5, "new": 1}).ts == 5
    notice = ShutdownNotice.from_payload({"reason": "gateway restarting", "restartExpectedMs": 1500})
    assert (notice.reason, notice.restart_expected_ms) == ("gateway restarting", 1500)
    assert ShutdownNotice.from_payload({"reason": "gateway stopping"}).restart_expected_ms is None
    with pytest.raises(ProtocolError, match="lacks ts"):
        Tick.from_payload({})
    with pytest.raises(ProtocolError, match="not an object"):
        ShutdownNotice.from_payload("stop")


def test_presence_entries_from_method_and_event() -> None:
    entry = {"ts": 1, "host": "box", "clientId": "cli", "mode": "cli", "scopes": ["operator.read"], "x": 1}
    from_method = presence_entries([entry])
    from_event = presence_entries({"presence": [entry]})
    assert from_method == from_event
    assert from_method[0].client_id == "cli" and from_method[0].raw["x"] == 1
    with pytest.raises(ProtocolError):
        presence_entries({"presence": "nope"})
    with pytest.raises(ProtocolError):
        presence_entries([{"host": "no ts"}])


def test_health_and_snapshot() -> None:
    health = HealthSnapshot.from_payload({"ok": True, "ts": 9, "durationMs": 3, "defaultAgentId": "main",
                                          "somethingNew": {"a": 1}})
    assert health.ok and health.duration_ms == 3 and health.raw["somethingNew"] == {"a": 1}
    snap = SnapshotPayload.from_payload({
        "presence": [{"ts": 1, "host": "h"}], "health": {"ok": True},
        "stateVersion": {"presence": 3, "health": 4}, "uptimeMs": 10,
        "sessionDefaults": {"defaultAgentId": "main", "mainKey": "main", "mainSessionKey": "agent:main:main",
                            "modelConfigured": False},
    })
    assert snap.state_version == StateVersion(3, 4)
    assert snap.presence_entries[0].host == "h"
    assert snap.health_snapshot.ok is True
    assert snap.defaults is not None and snap.defaults.main_session_key == "agent:main:main"
    hello = HelloOk.from_payload({"type": "hello-ok", "protocol": 4, "snapshot": snap.raw})
    assert Snapshot(hello, 1).state_version == StateVersion(3, 4)
