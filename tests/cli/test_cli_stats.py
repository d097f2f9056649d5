"""The CLI shows the connection's measurements: ``gwclient watch`` puts the connect phases
on each (re)connect line, ``-v`` logs each request's duration."""

from __future__ import annotations

import json

import pytest
from test_cli import Background, gateway_args, gateway_sees_client, run

from gwclient.testing import DevGateway


def test_watch_shows_the_connect_phases_on_each_connect_line(gw: DevGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    bg = Background(monkeypatch, [*gateway_args(gw), "watch", "--events", "custom.ping", "--count", "1",
                                  "--timeout", "30"])
    first = bg.out.wait_for(lambda line: "connected (connection 1)" in line)[-1]
    gw.restart(restart_expected_ms=50)
    again = bg.out.wait_for(lambda line: "reconnected (connection 2)" in line)[-1]
    gateway_sees_client(gw)
    gw.broadcast("custom.ping", {"n": 1})
    assert bg.finish() == 0
    for line in (first, again):
        phases = line.split("; connect ", 1)[1]
        assert phases.startswith("tcp ") and " upgrade " in phases and " challenge " in phases
        assert " hello " in phases and phases.rstrip().endswith(" ms)") and "(total " in phases


def test_watch_json_snapshots_carry_the_connect_phases(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *gateway_args(gw), "watch", "--json", "--events", "none.such", "--timeout", "1")
    assert result.code == 0
    snapshot = next(json.loads(line) for line in result.out.splitlines() if '"snapshot"' in line)
    phases = snapshot["connectPhases"]
    assert set(phases) == {"tcp", "tls", "upgrade", "challenge", "hello", "total"}
    assert phases["tls"] is None and 0 <= phases["tcp"] <= phases["total"]


def test_verbose_logs_each_requests_duration(gw: DevGateway, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "-v", *gateway_args(gw), "call", "echo", "--params", "{}")
    assert result.code == 0
    lines = [line for line in result.err_lines if "gwclient.requests" in line]
    assert len(lines) == 1 and "request echo ok in " in lines[0] and lines[0].endswith(" ms (connection 1)")
    quiet = run(capsys, *gateway_args(gw), "call", "echo", "--params", "{}")
    assert "gwclient.requests" not in quiet.err
