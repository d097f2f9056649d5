"""Remote mode: the SSH tunnel, the endpoint store and the coordinator (DESIGN.md).

Three parts, as in the macOS client's refactor (PROTOCOL.md §5.4):

* :class:`RemoteTunnelManager` owns the SSH local-forward tunnels (``ssh -N -L``
  equivalents built on ``sshtunnel``/``paramiko``): at most one per (SSH target, local
  port, remote port).  :meth:`~RemoteTunnelManager.ensure` blocks until the tunnel is up
  and reuses a running one (or any listener already on the local port, e.g. the user's
  own ``ssh -L``).  Each tunnel has a supervisor thread that restarts it with backoff
  when the SSH connection drops, and gives up after ``max_failures`` failures in a row.
  Nothing here is started by a request.
* :class:`GatewayEndpointStore` publishes the effective endpoint: :class:`EndpointReady`,
  :class:`EndpointConnecting` or :class:`EndpointUnavailable`.  It is a
  :data:`~gwclient.ConfigProvider`, so ``GatewayConnection.shared(provider=store)``
  follows it; asking it for a config while the endpoint is not ready raises at once.
* :class:`ConnectionModeCoordinator` turns an explicit config change
  (:meth:`~ConnectionModeCoordinator.apply`) into tunnel actions and store updates.

Modules: ``_endpoint`` (states and store), ``_ssh`` (SSH settings, host keys, keys),
``_forwarder`` (the sshtunnel glue), ``_supervisor`` (one tunnel and its thread),
``_manager``, ``_coordinator``.  ``paramiko`` and ``sshtunnel`` are imported only when a
tunnel is opened, so neither ``import gwclient`` nor ``import gwclient.remote`` loads them.

No ``sshtunnel`` or ``paramiko`` exception crosses this package's API: bad keys, untrusted
or changed host keys and refused authentication raise :class:`~gwclient.ConfigError`; an
unreachable SSH server, a failed handshake or a busy local port raise
:class:`~gwclient.TunnelError` (a :class:`~gwclient.Disconnected`); both chain the
original as ``__cause__``.  Messages and logs never contain key material (gwclient takes
no key passphrases at all: encrypted keys must be loaded into ssh-agent).

Threads (all daemon, all joined by ``stop``): ``gwclient-tunnel-<port>`` (supervisor),
``gwclient-tunnel-ssh-<n>`` (paramiko transport), ``gwclient-tunnel-listen-<port>``
(the local listener) and ``gwclient-tunnel-conn-<n>`` (one per forwarded connection).
None of them runs user code: state changes reach you through
:meth:`GatewayEndpointStore.subscribe` and :meth:`RemoteTunnelManager.subscribe` queues.
"""

from __future__ import annotations

from .._config.config import SshTunnelConfig
from .._errors import EndpointNotReady, TunnelError
from ._coordinator import ConnectionModeCoordinator
from ._endpoint import (
    EndpointConnecting,
    EndpointReady,
    EndpointState,
    EndpointSubscription,
    EndpointUnavailable,
    GatewayEndpointStore,
)
from ._manager import DEFAULT_MAX_FAILURES, DEFAULT_TUNNEL_RETRY, RemoteTunnelManager, TunnelSubscription
from ._supervisor import TunnelState, TunnelStatus

__all__ = [
    "DEFAULT_MAX_FAILURES",
    "DEFAULT_TUNNEL_RETRY",
    "ConnectionModeCoordinator",
    "EndpointConnecting",
    "EndpointNotReady",
    "EndpointReady",
    "EndpointState",
    "EndpointSubscription",
    "EndpointUnavailable",
    "GatewayEndpointStore",
    "RemoteTunnelManager",
    "SshTunnelConfig",
    "TunnelError",
    "TunnelState",
    "TunnelStatus",
    "TunnelSubscription",
]
