"""The share's pieces without processes: the session core's interim answer for a waiter
that asks for it, the outbox's bound (drop-oldest events, a gap where they were, answers
never dropped), the event framing, config and error-shape round trips, and the cheap
CLI path's imports (it must not load the websocket stack, cryptography, pykka or
dataclasses-json)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future
from typing import Any

import pytest
from _coreutil import connected, res, sent

import gwclient.share
from gwclient import ConfigError, Event, GatewayConfig, PairingRequired, RetryPolicy, SeqGap, Snapshot
from gwclient._core.effects import Settle
from gwclient._core.frames import decode_error_shape
from gwclient._core.protocol import error_from_shape
from gwclient.share._client import config_to_wire
from gwclient.share._server import Outbox, _Gap, config_from_wire, error_shape


class _Asks:
    """A waiter that asks for the interim answer (as the share's relay does)."""

    def __init__(self) -> None:
        self.interim: Future[Any] = Future()
        self.final: Future[Any] = Future()

    def done(self) -> bool:
        return self.final.done()

    def set_result(self, value: Any) -> None:
        self.final.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        self.final.set_exception(exc)


def _settle_all(effects: list[Any]) -> None:
    for effect in effects:
        if isinstance(effect, Settle):
            effect.waiter.set_result(effect.outcome)


def test_a_two_stage_request_gives_its_interim_answer_to_a_waiter_that_asks() -> None:
    s, _ = connected()
    waiter = _Asks()
    effects = s.submit("r1", "agent", b'{"type":"req","id":"r1","method":"agent"}', waiter, True)
    assert sent(effects)
    _settle_all(s.received(res("r1", {"status": "accepted", "runId": "x"}), 0.0))
    assert waiter.interim.result(0) == {"status": "accepted", "runId": "x"} and not waiter.done()
    _settle_all(s.received(res("r1", {"status": "ok", "runId": "x"}), 0.0))
    assert waiter.final.result(0) == {"status": "ok", "runId": "x"}


def test_an_ordinary_waiter_gets_no_interim_settle() -> None:
    s, _ = connected()
    fut: Future[Any] = Future()
    s.submit("r1", "agent", b"{}", fut, True)
    assert s.received(res("r1", {"status": "accepted"}), 0.0) == []
    assert not fut.done()


def _event(i: int, size: int = 10) -> tuple[Event, int]:
    return Event("burst", {"i": i}, seq=i + 1), size


def test_a_full_outbox_drops_the_oldest_events_and_leaves_a_gap_where_they_were() -> None:
    closed: list[str] = []
    box = Outbox(True, closed.append, max_events=3)
    box._offer(Snapshot(None, 1))  # type: ignore[arg-type]
    box.go_live(b"hello")
    for i in range(3):
        assert box._offer(*_event(i))
    box.put(b"answer")
    for i in range(3, 6):
        box._offer(*_event(i))
    items = box.take()
    assert items is not None
    kinds = [("gap", x.missed) if isinstance(x, _Gap) else x if isinstance(x, bytes) else x[0].payload["i"]
             for x in items]
    assert kinds == [b"hello", ("gap", 3), b"answer", 3, 4, 5]
    assert box.dropped_total == 3 and closed == []


def test_a_gateway_gap_and_a_replaced_gateway_socket_reach_the_outbox() -> None:
    closed: list[str] = []
    box = Outbox(True, closed.append)
    box._offer(Snapshot(None, 1))  # type: ignore[arg-type]
    box.go_live(b"hello")
    box._offer(SeqGap(expected=2, received=5))
    box._offer(Snapshot(None, 2))  # type: ignore[arg-type]
    assert closed and "replaced" in closed[0]
    items = box.take()
    assert items is not None and isinstance(items[1], _Gap) and items[1].missed == 3
    assert box.take() is None


def test_the_config_travels_whole_and_comes_back_with_the_share_off() -> None:
    config = GatewayConfig(url="ws://127.0.0.1:1234", token="t0ken", scopes=("operator.read",),
                           retry=RetryPolicy(initial=0.1, maximum=1.0), share="auto", request_timeout=7.0)
    wire = json.loads(json.dumps(config_to_wire(config)))
    back = config_from_wire(wire)
    assert back == GatewayConfig(url="ws://127.0.0.1:1234", token="t0ken", scopes=("operator.read",),
                                 retry=RetryPolicy(initial=0.1, maximum=1.0), share="off", request_timeout=7.0)
    with pytest.raises(ConfigError):
        config_from_wire({"url": "ws://127.0.0.1:1", "no_such_field": 1})


def test_a_relayed_refusal_becomes_the_same_exception_with_the_same_message() -> None:
    shape = {"code": "NOT_PAIRED", "message": "pairing required",
             "details": {"code": "PAIRING_REQUIRED", "requestId": "req-1"}}
    direct = error_from_shape(decode_error_shape(shape), connect=True)
    relayed = error_from_shape(decode_error_shape(json.loads(json.dumps(error_shape(direct)))), connect=True)
    assert isinstance(relayed, PairingRequired) and relayed.request_id == "req-1"
    assert str(relayed) == str(direct)


def test_the_share_module_exports_are_pinned() -> None:
    assert gwclient.share.__all__ == ["OneShot", "ShareNotRunning", "ShareRefused", "ShareServer", "mode_from_env",
                                      "open_share", "socket_path", "start", "status", "stop"]
    for name in gwclient.share.__all__:
        assert getattr(gwclient.share, name) is not None


def test_the_cheap_cli_path_loads_no_websocket_crypto_actor_or_json_schema_stack() -> None:
    code = ("import sys, gwclient.cli._share as s, gwclient.share._client, gwclient.share._wire; "
            "from gwclient import GatewayConfig, ConfigError, GatewayError, PairingRequired; "
            "GatewayConfig(url='ws://127.0.0.1:1'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('websocket', 'cryptography', 'pykka', 'dataclasses_json', 'marshmallow') "
            "or m in ('gwclient._connection', 'gwclient._core.frames', 'gwclient._config.device')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
