"""The shape of ``gwclient.remote``: imports stay light, modules stay small, and the
public names live where the docs say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gwclient
import gwclient.remote

REMOTE = Path(gwclient.remote.__file__).parent


@pytest.mark.parametrize("module", ["gwclient", "gwclient.remote", "gwclient.cli"])
def test_importing_does_not_load_paramiko_or_sshtunnel(module: str) -> None:
    code = (f"import sys, {module}; "
            "loaded = sorted(m for m in ('paramiko', 'sshtunnel') if m in sys.modules); "
            "assert not loaded, loaded")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr


def test_no_remote_module_is_over_400_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in REMOTE.glob("*.py")}
    assert {"_endpoint.py", "_ssh.py", "_forwarder.py", "_supervisor.py", "_manager.py",
            "_coordinator.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_remote_names_live_in_gwclient_remote_and_errors_in_gwclient() -> None:
    for name in ("ConnectionModeCoordinator", "GatewayEndpointStore", "RemoteTunnelManager", "EndpointReady",
                 "TunnelState", "TunnelStatus"):
        assert hasattr(gwclient.remote, name) and name in gwclient.remote.__all__
        assert name not in gwclient.__all__ and not hasattr(gwclient, name)
    assert gwclient.TunnelError is gwclient.remote.TunnelError
    assert gwclient.EndpointNotReady is gwclient.remote.EndpointNotReady
    assert issubclass(gwclient.TunnelError, gwclient.Disconnected)
    assert gwclient.TunnelError.__module__ == "gwclient._errors"  # every exception in one module
