"""gwclient: a blocking Python client for the OpenClaw Gateway.

One gateway websocket per process per effective config, shared by every part of a
program: blocking ``request()`` calls and queue-based event subscriptions.

    >>> from gwclient import GatewayConnection
    >>> conn = GatewayConnection.shared()          # follows OPENCLAW_GATEWAY_* / openclaw.json
    >>> conn.request("health")                     # doctest: +SKIP
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from ._bus import Subscription
from ._config import GatewayConfig, SshTunnelConfig, default_state_dir
from ._connection import DEFAULT, GatewayConnection
from ._device import DeviceIdentity, DeviceStoreError, DeviceTokenStore, StoredDeviceToken
from ._errors import (
    AuthRejected,
    ClientClosed,
    ConfigError,
    ConnectError,
    Disconnected,
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
    UsageError,
)
from ._frames import HelloOk, Policy, StateVersion
from ._payloads import (
    HealthSnapshot,
    PresenceEntry,
    SessionDefaults,
    ShutdownNotice,
    SnapshotPayload,
    Tick,
    presence_entries,
)
from ._provider import ConfigProvider, EnvironmentConfigProvider
from ._pushes import ConnectionState, Event, Overflow, Push, SeqGap, Snapshot, StateChange
from ._retry import RetryPolicy
from ._runs import (
    AgentUpdate,
    LifecycleUpdate,
    Run,
    RunResult,
    RunUpdate,
    StatusUpdate,
    TextDelta,
    ToolUpdate,
    UsageUpdate,
)
from ._tunnel import (
    ConnectionModeCoordinator,
    EndpointConnecting,
    EndpointNotReady,
    EndpointReady,
    EndpointState,
    EndpointSubscription,
    EndpointUnavailable,
    GatewayEndpointStore,
    RemoteTunnelManager,
    TunnelError,
    TunnelState,
    TunnelStatus,
)

__all__ = [
    "DEFAULT",
    "AgentUpdate",
    "AuthRejected",
    "ClientClosed",
    "ConfigError",
    "ConfigProvider",
    "ConnectError",
    "ConnectionModeCoordinator",
    "ConnectionState",
    "DeviceIdentity",
    "DeviceStoreError",
    "DeviceTokenStore",
    "Disconnected",
    "EndpointConnecting",
    "EndpointNotReady",
    "EndpointReady",
    "EndpointState",
    "EndpointSubscription",
    "EndpointUnavailable",
    "EnvironmentConfigProvider",
    "Event",
    "GatewayConfig",
    "GatewayConnection",
    "GatewayEndpointStore",
    "GatewayError",
    "GatewayTimeout",
    "GatewayUnavailable",
    "HealthSnapshot",
    "HelloOk",
    "LifecycleUpdate",
    "Overflow",
    "PairingRequired",
    "Policy",
    "PresenceEntry",
    "ProtocolError",
    "ProtocolMismatch",
    "Push",
    "RemoteTunnelManager",
    "RequestError",
    "RetryPolicy",
    "Run",
    "RunAborted",
    "RunError",
    "RunFailed",
    "RunInterrupted",
    "RunResult",
    "RunTimedOut",
    "RunUpdate",
    "SeqGap",
    "SessionDefaults",
    "ShutdownNotice",
    "Snapshot",
    "SnapshotPayload",
    "SshTunnelConfig",
    "StateChange",
    "StateVersion",
    "StatusUpdate",
    "StoredDeviceToken",
    "Subscription",
    "TextDelta",
    "Tick",
    "ToolUpdate",
    "TunnelError",
    "TunnelState",
    "TunnelStatus",
    "UsageError",
    "UsageUpdate",
    "__version__",
    "default_state_dir",
    "presence_entries",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
