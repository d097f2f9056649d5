"""Helpers of the connection core's plain-assert tests: frames in, effects out."""

from __future__ import annotations

import json
from typing import Any

from gwclient._core.connection import ConnectionCore
from gwclient._core.effects import (
    Effect,
    Publish,
    Send,
    SessionLimits,
    Settle,
)
from gwclient._core.frames import ConnectChallenge
from gwclient._core.retry import RetryPolicy


def build(challenge: ConnectChallenge, request_id: str) -> bytes:
    return json.dumps({"type": "req", "id": request_id, "method": "connect",
                       "params": {"nonce": challenge.nonce}}).encode()


def challenge() -> str:
    return json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n1", "ts": 5}})


def hello(**policy: Any) -> dict[str, Any]:
    return {"type": "hello-ok", "protocol": 4, "server": {"version": "t", "connId": "c"},
            "policy": {"tickIntervalMs": 30000, "maxPayload": 1 << 20, **policy}}


def sent(effects: list[Effect]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in effects if isinstance(e, Send)]


def pushes(effects: list[Effect]) -> list[Any]:
    return [e.push for e in effects if isinstance(e, Publish)]


def settles(effects: list[Effect]) -> list[Settle]:
    return [e for e in effects if isinstance(e, Settle)]


def event(name: str, seq: int | None, payload: Any = None) -> str:
    frame: dict[str, Any] = {"type": "event", "event": name, "payload": payload}
    if seq is not None:
        frame["seq"] = seq
    return json.dumps(frame)


def res(request_id: str, payload: Any = None, *, ok: bool = True, error: dict[str, Any] | None = None) -> str:
    frame: dict[str, Any] = {"type": "res", "id": request_id, "ok": ok}
    if ok:
        frame["payload"] = payload
    else:
        frame["error"] = error
    return json.dumps(frame)


def connected(session: ConnectionCore | None = None, **policy: Any) -> tuple[ConnectionCore, list[Effect]]:
    """A session driven through begin -> opened -> challenge -> hello-ok."""
    s = session or ConnectionCore(SessionLimits(connect_timeout=2.0, label="gw", retry=RetryPolicy(jitter=0)))
    s.retry()
    s.opened(build, 0.0)
    out = s.received(challenge(), 0.0)
    connect = sent(out)[0]
    assert connect["method"] == "connect" and s.phase == "hello"
    effects = s.received(res(connect["id"], hello(**policy)), 0.0)
    assert s.phase == "connected"
    return s, effects


def refuse(s: ConnectionCore, error: dict[str, Any]) -> list[Effect]:
    s.retry()
    s.opened(build, 0.0)
    connect = sent(s.received(challenge(), 0.0))[0]
    return s.received(res(connect["id"], ok=False, error=error), 0.0)


# ------------------------------------------------------------------ handshake
