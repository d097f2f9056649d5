"""``gwclient pair --scopes a,b [--wait]`` against the dev gateway serving the scope-upgrade
methods (issue 18, point 2): it prints the exact approve command, exits 4 while pending
and 0 once granted."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from _util import DEV_TOKEN
from test_cli import Result, run

from gwclient import GatewayConfig, GatewayConnection
from gwclient.testing import DevGateway

pytestmark = pytest.mark.usefixtures("shutdown_all_after")


def serve_upgrades(gw: DevGateway, decision: dict[str, Any], decided: threading.Event) -> list[Any]:
    asked: list[Any] = []

    def request(params: Any) -> Any:
        asked.append(params)
        return {"requestId": f"up-{len(asked)}"}

    gw.set_handler("device.scopes.requestUpgrade", request)

    def wait(params: Any) -> Any:
        decided.wait(10)
        return {"requestId": params["requestId"], **decision}

    gw.set_handler("device.scopes.waitUpgrade", wait)
    return asked


def pair(capsys: pytest.CaptureFixture[str], gw: DevGateway, *args: str) -> Result:
    return run(capsys, "--url", gw.url, "--token", DEV_TOKEN, "pair", *args)


def pair_read_only(gw: DevGateway) -> None:
    """This device pairs with operator.read only (its stored device token says so)."""
    conn = GatewayConnection.shared(GatewayConfig(url=gw.url, token=DEV_TOKEN, scopes=("operator.read",)))
    conn.connect()
    conn.shutdown()


def test_pair_scopes_prints_the_approve_command_and_exits_4(gw: DevGateway,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    decided = threading.Event()
    asked = serve_upgrades(gw, {}, decided)
    pair_read_only(gw)
    result = pair(capsys, gw, "--scopes", "operator.write")
    assert result.code == 4, result.err
    lines = result.out.splitlines()
    assert "scopes:    upgrade to operator.read, operator.write pending approval (request up-1)" in lines
    assert "approve:   openclaw devices approve up-1" in lines
    assert asked == [{"scopes": ["operator.read", "operator.write"]}]
    machine = pair(capsys, gw, "--scopes", "operator.write", "--json")
    record = json.loads(machine.out.splitlines()[-1])
    assert machine.code == 4 and record["scopeUpgrade"] == "pending"
    assert record["approveCommand"] == "openclaw devices approve up-2"
    GatewayConnection.shutdown_all()


def test_pair_scopes_wait_until_granted(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    decided = threading.Event()
    decided.set()
    serve_upgrades(gw, {"status": "approved", "deviceToken": "dt-new-1",
                        "scopes": ["operator.read", "operator.write"]}, decided)
    pair_read_only(gw)
    result = pair(capsys, gw, "--scopes", "operator.write", "--wait", "--timeout", "20")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "approve:   openclaw devices approve up-1" in lines  # shown before the wait
    assert lines[-1] == "scopes:    granted (operator.read, operator.write)"
    assert gw.connect_requests[-1]["scopes"] == ["operator.read", "operator.write"]
    assert "dt-new-1" not in result.out + result.err
    GatewayConnection.shutdown_all()
