"""gwclient: a blocking Python client for the OpenClaw Gateway.

One gateway websocket per process per effective config, shared by every part of a
program: blocking ``request()`` calls and queue-based event subscriptions.

    >>> from gwclient import GatewayConnection
    >>> conn = GatewayConnection.shared()          # follows OPENCLAW_GATEWAY_* / openclaw.json
    >>> conn.request("health")                     # doctest: +SKIP

The core names live here; the typed payloads are in :mod:`gwclient.payloads`, the device
identity and token store in :mod:`gwclient.device`.

Names are loaded on first use (PEP 562): ``import gwclient`` costs almost nothing, so the
command line starts fast and ``--help`` never loads the websocket stack.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._config import GatewayConfig, SshTunnelConfig
    from ._connection import DEFAULT, GatewayConnection
    from ._errors import (
        AuthRejected,
        ClientClosed,
        ConfigError,
        ConnectError,
        Disconnected,
        EndpointNotReady,
        GatewayError,
        GatewayTimeout,
        GatewayUnavailable,
        PairingRequired,
        ProtocolError,
        ProtocolMismatch,
        RequestError,
        RunAborted,
        RunError,
        RunFailed,
        RunInterrupted,
        RunTimedOut,
        ShareUnavailable,
        TunnelError,
        UsageError,
    )
    from ._frames import HelloOk
    from ._provider import ConfigProvider, EnvironmentConfigProvider
    from ._pushes import ConnectionState, Event, Overflow, Push, SeqGap, Snapshot, StateChange
    from ._retry import RetryPolicy
    from ._runs import Run, RunResult
    from ._subscription import Subscription

# public name -> the private module that defines it
_EXPORTS: dict[str, str] = {
    "Subscription": "_subscription",
    "GatewayConfig": "_config",
    "SshTunnelConfig": "_config",
    "DEFAULT": "_connection",
    "GatewayConnection": "_connection",
    **dict.fromkeys(
        [
            "AuthRejected",
            "ClientClosed",
            "ConfigError",
            "ConnectError",
            "Disconnected",
            "GatewayError",
            "GatewayTimeout",
            "GatewayUnavailable",
            "PairingRequired",
            "ProtocolError",
            "ProtocolMismatch",
            "RequestError",
            "UsageError",
            "TunnelError",
            "EndpointNotReady",
            "RunAborted",
            "RunError",
            "RunFailed",
            "RunInterrupted",
            "RunTimedOut",
            "ShareUnavailable",
        ],
        "_errors",
    ),
    "HelloOk": "_frames",
    "ConfigProvider": "_provider",
    "EnvironmentConfigProvider": "_provider",
    **dict.fromkeys(
        ["ConnectionState", "Event", "Overflow", "Push", "SeqGap", "Snapshot", "StateChange"], "_pushes"
    ),
    "RetryPolicy": "_retry",
    "Run": "_runs",
    "RunResult": "_runs",
}

__all__ = [
    "DEFAULT",
    "AuthRejected",
    "ClientClosed",
    "ConfigError",
    "ConfigProvider",
    "ConnectError",
    "ConnectionState",
    "Disconnected",
    "EndpointNotReady",
    "EnvironmentConfigProvider",
    "Event",
    "GatewayConfig",
    "GatewayConnection",
    "GatewayError",
    "GatewayTimeout",
    "GatewayUnavailable",
    "HelloOk",
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
    "RunResult",
    "RunTimedOut",
    "SeqGap",
    "ShareUnavailable",
    "Snapshot",
    "SshTunnelConfig",
    "StateChange",
    "Subscription",
    "TunnelError",
    "UsageError",
    "__version__",
]


# optional dependency -> the extra that installs it (setup.cfg)
_EXTRAS = {"paramiko": "remote", "sshtunnel": "remote"}

# Names that moved to a public submodule: still found here, with a DeprecationWarning.
_MOVED: dict[str, str] = {
    **dict.fromkeys(
        ["DeviceIdentity", "DeviceStoreError", "DeviceTokenStore", "StoredDeviceToken", "default_state_dir"], "device"
    ),
    **dict.fromkeys(
        [
            "HealthSnapshot",
            "Policy",
            "PresenceEntry",
            "SessionDefaults",
            "ShutdownNotice",
            "SnapshotPayload",
            "StateVersion",
            "Tick",
            "presence_entries",
        ],
        "payloads",
    ),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        moved = _MOVED.get(name)
        if moved is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        warnings.warn(
            f"gwclient.{name} moved to gwclient.{moved}.{name}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module(f"{__name__}.{moved}"), name)
    try:
        imported = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get(exc.name or "")
        if extra is None:
            raise
        raise ModuleNotFoundError(
            f"gwclient.{name} needs {exc.name}, which is not installed: pip install 'gwclient[{extra}]'",
            name=exc.name,
        ) from exc
    value = getattr(imported, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())
