"""The public surface: the names each public module exports, pinned, and the CLI using
only public modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gwclient
import gwclient.device
import gwclient.payloads
import gwclient.runs

CLI = Path(gwclient.__file__).resolve().parent / "cli"

CORE = [
    "DEFAULT",
    "AuthRejected",
    "ClientClosed",
    "ConfigError",
    "ConfigProvider",
    "ConnectError",
    "ConnectPhases",
    "ConnectionState",
    "ConnectionStats",
    "Disconnected",
    "EnvironmentConfigProvider",
    "Event",
    "GatewayConfig",
    "GatewayConnection",
    "GatewayError",
    "GatewayTimeout",
    "GatewayUnavailable",
    "HelloOk",
    "MissingScope",
    "Overflow",
    "PairingRequired",
    "ProtocolError",
    "ProtocolMismatch",
    "Push",
    "RequestError",
    "RetryPolicy",
    "Run",
    "RunAborted",
    "RunError",
    "RunFailed",
    "RunInterrupted",
    "RunReplyUnknown",
    "RunResult",
    "RunTimedOut",
    "ScopeUpgrade",
    "SeqGap",
    "SetupCode",
    "ShareUnavailable",
    "Snapshot",
    "StateChange",
    "Subscription",
    "UnsupportedMethod",
    "UsageError",
    "decode_setup_code",
    "__version__",
]
# Errors and the SSH settings stay here; the rest of remote mode lives in gwclient.remote.
REMOTE = ["EndpointNotReady", "SshTunnelConfig", "TunnelError"]
PAYLOADS = ["HealthSnapshot", "Policy", "PresenceEntry", "SessionDefaults", "ShutdownNotice", "SnapshotPayload",
            "StateVersion", "Tick", "presence_entries"]
RUNS = ["AgentUpdate", "LifecycleUpdate", "Run", "RunResult", "RunUpdate", "StatusUpdate", "TextDelta", "ToolUpdate",
        "UsageUpdate"]
DEVICE = ["DeviceIdentity", "DeviceStoreError", "DeviceTokenStore", "StoredDeviceToken", "default_state_dir"]


def test_the_exported_names_are_pinned() -> None:
    assert sorted(gwclient.__all__) == sorted(CORE + REMOTE)
    assert sorted(gwclient.payloads.__all__) == sorted(PAYLOADS)
    assert sorted(gwclient.device.__all__) == sorted(DEVICE)
    assert sorted(gwclient.runs.__all__) == sorted(RUNS)


@pytest.mark.parametrize("module", [gwclient, gwclient.payloads, gwclient.device, gwclient.runs],
                         ids=lambda m: m.__name__)
def test_every_exported_name_resolves(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))  # type: ignore[attr-defined]


def test_a_moved_name_still_resolves_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"gwclient\.DeviceIdentity moved to gwclient\.device"):
        moved = gwclient.DeviceIdentity  # type: ignore[attr-defined]
    assert moved is gwclient.device.DeviceIdentity
    with pytest.raises(AttributeError):
        gwclient.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_import_gwclient_loads_nothing_heavy() -> None:
    code = ("import sys, gwclient\n"
            "heavy = {'pykka', 'websocket', 'websockets', 'paramiko', 'sshtunnel', 'psutil', 'cryptography',"
            " 'dataclasses_json', 'json5'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
            "             or (m.startswith('gwclient._') and m != 'gwclient._version')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "[]"


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = "gwclient.cli"
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names += [module] if node.module else [f"{base}.{alias.name}" for alias in node.names]
            else:
                names.append(node.module or "")
    return names


def test_the_cli_uses_only_public_gwclient_modules() -> None:
    files = sorted(CLI.glob("*.py"))
    assert len(files) >= 8
    private = []
    for path in files:
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "gwclient" or name.startswith("gwclient.cli"):
                continue  # not gwclient, or the CLI's own modules
            if any(part.startswith("_") for part in parts[1:]):
                private.append(f"{path.name}: {name}")
    assert private == []


def test_no_cli_module_is_over_400_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in CLI.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes


def test_remote_mode_without_the_remote_extra_says_what_to_install() -> None:
    code = ("import socket, sys\n"
            "sys.modules['paramiko'] = None  # as if not installed\n"
            "sys.modules['sshtunnel'] = None\n"
            "from gwclient import SshTunnelConfig\n"
            "from gwclient.remote import RemoteTunnelManager\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
            "manager = RemoteTunnelManager()\n"
            "try:\n"
            "    manager.ensure(SshTunnelConfig.parse_target('me@127.0.0.1:1'), port, timeout=10)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n"
            "finally:\n"
            "    manager.stop_all()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "ConfigError" in out.stdout and "pip install 'gwclient[remote]'" in out.stdout, out.stdout + out.stderr
