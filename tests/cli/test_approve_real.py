"""The approve command gwclient prints runs on this machine: against a real gateway with
silent local pairing off (``scripts/real-gateway --require-pairing``'s config), a fresh
device gets PairingRequired; the printed command (``<checkout>/scripts/openclaw devices
approve <id>``, since no ``openclaw`` is on PATH), run as the gateway host would (the
line ``scripts/real-gateway --require-pairing`` prints: the gateway's home and state dir,
``--url`` and ``--token``), approves it, and the device connects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gwclient import GatewayConfig, GatewayConnection, PairingRequired, RetryPolicy
from gwclient.testing._realgateway import REQUIRE_PAIRING_CONFIG, RealGateway, RealGatewayError, approve_command_line

pytestmark = [pytest.mark.realgateway, pytest.mark.usefixtures("shutdown_all_after")]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_printed_approve_command_approves_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no openclaw on PATH (and maybe an old system Node)
    gw = RealGateway(config=REQUIRE_PAIRING_CONFIG)
    try:
        gw.start()
    except RealGatewayError as exc:
        # openclaw before 2026.9.6 rejects the switch; README: "openclaw >= 2026.9.6".
        assert "gateway.nodes.pairing" in str(exc)
        gw.close()
        return
    with gw:
        config = GatewayConfig(url=gw.url, token=gw.token, state_dir=str(tmp_path / "device"),
                               retry=RetryPolicy(initial=0.2, maximum=2.0), connect_timeout=20.0)
        conn = GatewayConnection.shared(config)
        with pytest.raises(PairingRequired) as info:
            conn.connect(timeout=30)
        command = info.value.approve_command
        assert command is not None and command.startswith(f"{REPO / 'scripts' / 'openclaw'} devices approve ")
        # Run as the gateway host would (scripts/real-gateway --require-pairing prints this line).
        line = approve_command_line(gw, info.value.request_id or "")
        assert command in line
        shell_env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "GWCLIENT_CACHE": os.environ["GWCLIENT_CACHE"]}
        approved = subprocess.run(["bash", "-c", line], env=shell_env, capture_output=True, text=True,
                                  timeout=120, check=False, stdin=subprocess.DEVNULL, cwd=gw.home)
        assert approved.returncode == 0, gw.redact(approved.stdout + approved.stderr)
        assert (info.value.request_id or "?") in approved.stdout, gw.redact(approved.stdout + approved.stderr)
        hello = conn.wait_for_pairing(timeout=60, poll_interval=1.0)  # retries until the approval is seen
        assert hello.auth is not None and hello.auth.device_token
