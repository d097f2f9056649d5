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

from ._version import __version__

if TYPE_CHECKING:
    from ._config.config import GatewayConfig, SshTunnelConfig
    from ._config.provider import ConfigProvider, EnvironmentConfigProvider
    from ._config.setup_code import SetupCode, decode_setup_code
    from ._connection import DEFAULT, GatewayConnection
    from ._core.frames import HelloOk
    from ._core.pushes import ConnectionState, Event, Overflow, Push, SeqGap, Snapshot, StateChange
    from ._core.retry import RetryPolicy
    from ._core.stats import ConnectionStats, ConnectPhases
    from ._engine.subscription import Subscription
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
        MissingScope,
        PairingRequired,
        ProtocolError,
        ProtocolMismatch,
        RequestError,
        RunAborted,
        RunError,
        RunFailed,
        RunInterrupted,
        RunReplyUnknown,
        RunTimedOut,
        ShareUnavailable,
        TunnelError,
        UnsupportedMethod,
        UsageError,
    )
    from ._runs import Run, RunResult
    from ._scopes import ScopeUpgrade

# public name -> the private module that defines it
_EXPORTS: dict[str, str] = {
    "Subscription": "_engine.subscription",
    "GatewayConfig": "_config.config",
    "SshTunnelConfig": "_config.config",
    "SetupCode": "_config.setup_code",
    "decode_setup_code": "_config.setup_code",
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
            "MissingScope",
            "PairingRequired",
            "ProtocolError",
            "ProtocolMismatch",
            "RequestError",
            "UsageError",
            "UnsupportedMethod",
            "TunnelError",
            "EndpointNotReady",
            "RunAborted",
            "RunError",
            "RunFailed",
            "RunInterrupted",
            "RunReplyUnknown",
            "RunTimedOut",
            "ShareUnavailable",
        ],
        "_errors",
    ),
    "HelloOk": "_core.frames",
    "ConfigProvider": "_config.provider",
    "EnvironmentConfigProvider": "_config.provider",
    **dict.fromkeys(
        ["ConnectionState", "Event", "Overflow", "Push", "SeqGap", "Snapshot", "StateChange"], "_core.pushes"
    ),
    "RetryPolicy": "_core.retry",
    "Run": "_runs",
    "RunResult": "_runs",
    "ConnectionStats": "_core.stats",
    "ConnectPhases": "_core.stats",
    "ScopeUpgrade": "_scopes",
}

__all__ = [
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
    "EndpointNotReady",
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
    "SshTunnelConfig",
    "StateChange",
    "Subscription",
    "TunnelError",
    "UnsupportedMethod",
    "UsageError",
    "__version__",
    "decode_setup_code",
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
        from ._extras import install_hint
        raise ModuleNotFoundError(
            f"gwclient.{name} needs {exc.name}, which is not installed: {install_hint(extra)}",
            name=exc.name,
        ) from exc
    value = getattr(imported, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())
