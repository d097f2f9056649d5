"""ConnectionModeCoordinator: turns explicit config changes into tunnel actions and
endpoint-store updates."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from .._config.config import GatewayConfig, SshTunnelConfig, ssh_local_end_error
from .._errors import ClientClosed, ConfigError, GatewayError, UsageError
from ._endpoint import EndpointConnecting, EndpointReady, EndpointState, EndpointUnavailable, GatewayEndpointStore
from ._manager import RemoteTunnelManager
from ._supervisor import TunnelState, TunnelStatus

__all__ = ["ConnectionModeCoordinator"]

log = logging.getLogger("gwclient.tunnel")

_Key = tuple[SshTunnelConfig, int]



class ConnectionModeCoordinator:
    """Turns explicit config changes into endpoint states (and tunnel actions).

    :meth:`apply` blocks **in the caller's thread**: a direct config (local, or remote
    ``ws(s)://`` with ``ssh=None``) is published as ready at once; an SSH config publishes
    ``connecting``, ensures the tunnel and publishes ``ready`` or ``unavailable``.  Later
    tunnel changes (lost, restarted) are published from the tunnel's supervisor thread.
    Requests never start or restart anything.  ``apply`` calls are serialized (one waits
    for the previous one's tunnel attempt); :meth:`stop` is not, and interrupts it.
    """

    def __init__(self, store: GatewayEndpointStore | None = None, manager: RemoteTunnelManager | None = None,
                 *, ensure_timeout: float = 30.0) -> None:
        self._store = store if store is not None else GatewayEndpointStore()
        self._owns_manager = manager is None
        self._manager = manager if manager is not None else RemoteTunnelManager()
        self._ensure_timeout = ensure_timeout
        self._lock = threading.Lock()
        self._apply_lock = threading.Lock()
        self._config: GatewayConfig | None = None
        self._key: _Key | None = None
        self._generation = 0
        self._stopped = False
        self._remove_listener = self._manager._add_listener(self._on_tunnel)

    @property
    def store(self) -> GatewayEndpointStore:
        return self._store

    @property
    def manager(self) -> RemoteTunnelManager:
        return self._manager

    @property
    def config(self) -> GatewayConfig | None:
        """The last applied config."""
        return self._config

    def apply(self, config: GatewayConfig, *, timeout: float | None = None) -> EndpointState:
        """Switch to ``config`` and return the state published for it.

        Stops the previous tunnel if the new config does not use it.  Errors do not raise:
        they are in the returned :class:`EndpointUnavailable` (``.error``); a
        :class:`TunnelError` is retried in the background and the store turns ready when
        the tunnel comes up.  ``timeout`` (default ``ensure_timeout``) bounds the wait for
        the tunnel; past it the state stays ``connecting``."""
        if not isinstance(config, GatewayConfig):
            raise UsageError("apply() needs a GatewayConfig")
        with self._apply_lock:
            key = self._tunnel_key(config)
            with self._lock:
                if self._stopped:
                    raise ClientClosed("this ConnectionModeCoordinator was stopped")
                old_key = self._key
                self._config, self._key = config, key if not isinstance(key, GatewayError) else None
                self._generation += 1
                generation = self._generation
                if isinstance(key, GatewayError):
                    self._store.publish(EndpointUnavailable(str(key), key))
                elif key is None:
                    self._store.publish(EndpointReady(config))
                else:
                    ssh = key[0]
                    self._store.publish(EndpointConnecting(
                        f"opening SSH tunnel 127.0.0.1:{key[1]} -> {ssh.target}:{ssh.port} -> "
                        f"127.0.0.1:{ssh.remote_port}"))
            if old_key is not None and old_key != key:
                self._manager.stop(*old_key)
            if key is None or isinstance(key, GatewayError):
                return self._store.current()
            try:
                self._manager.ensure(key[0], key[1],
                                     timeout=self._ensure_timeout if timeout is None else timeout)
            except GatewayError as exc:
                log.info("remote endpoint: %s", exc)
            self._refresh(generation)
            return self._store.current()

    def stop(self, *, timeout: float = 15.0) -> None:
        """Tear the tunnel down and publish ``unavailable("stopped")``.  Final; idempotent."""
        with self._lock:
            already = self._stopped
            self._stopped = True
            key, self._key = self._key, None
            self._generation += 1
        if not already:
            self._remove_listener()
        if key is not None:
            self._manager.stop(*key, timeout=timeout)
        if self._owns_manager:
            self._manager.stop_all(timeout=timeout)
        self._store.publish(EndpointUnavailable("stopped"))

    def __enter__(self) -> ConnectionModeCoordinator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _tunnel_key(config: GatewayConfig) -> _Key | ConfigError | None:
        if config.ssh is None:
            return None
        error = ssh_local_end_error(config.url)  # the rule GatewayConfig applies too
        if error is not None:
            return ConfigError(error)
        return (config.ssh, config.port)

    def _on_tunnel(self, status: TunnelStatus) -> None:
        # On the tunnel's supervisor thread: only publishes (never blocks).
        with self._lock:
            if self._stopped or self._key != (status.ssh, status.local_port):
                return
            generation = self._generation
        self._refresh(generation)

    def _refresh(self, generation: int) -> None:
        # Reads the tunnel's *current* status under the lock, so the last refresh always
        # publishes the latest state whatever order the triggers arrive in.
        with self._lock:
            if self._stopped or generation != self._generation or self._key is None or self._config is None:
                return
            status = self._manager.status(*self._key)
            config = self._config
            if status is None:
                self._store.publish(EndpointUnavailable("SSH tunnel not running"))
            elif status.usable:
                self._store.publish(EndpointReady(config))
            elif status.state is TunnelState.STARTING:
                self._store.publish(EndpointConnecting(status.detail))
            elif status.state is TunnelState.STOPPED:
                self._store.publish(EndpointUnavailable("stopped"))
            else:
                self._store.publish(EndpointUnavailable(status.detail, status.error))

    def __repr__(self) -> str:
        return f"<ConnectionModeCoordinator {self._store.current()}>"
