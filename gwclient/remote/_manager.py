"""RemoteTunnelManager: owns the SSH local-forward tunnels of remote mode."""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .._config.config import SshTunnelConfig
from .._core.retry import RetryPolicy
from .._engine.queue import StateQueue
from .._errors import ConfigError, UsageError
from .._extras import install_hint
from ._supervisor import LOCAL_HOST, Tunnel, TunnelForwarder, TunnelStatus

__all__ = ["DEFAULT_TUNNEL_RETRY", "RemoteTunnelManager", "TunnelSubscription"]

log = logging.getLogger("gwclient.tunnel")

#: The macOS app restarts a dropped tunnel after 2 s; later failures back off further.
DEFAULT_TUNNEL_RETRY = RetryPolicy(initial=2.0, multiplier=2.0, maximum=30.0, jitter=0.2)
#: Consecutive failed attempts (connect, or restart after a loss) before a tunnel gives up
#: (about 3.5 minutes with the default backoff).
DEFAULT_MAX_FAILURES = 10

_Key = tuple[SshTunnelConfig, int]
_Listener = Callable[[TunnelStatus], None]


def _event_wait(event: threading.Event, seconds: float) -> object:
    return event.wait(seconds)


def _port_in_use(port: int) -> bool:
    """Is something bound to 127.0.0.1:port (e.g. the user's own ``ssh -L``)?  A bind probe:
    it does not connect, so it opens no forwarded connection through someone's tunnel."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((LOCAL_HOST, port))
    except OSError as exc:
        return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    finally:
        probe.close()
    return False


class TunnelSubscription(StateQueue[TunnelStatus]):
    """A queue of :class:`TunnelStatus` changes of one manager's tunnels (see
    :meth:`RemoteTunnelManager.subscribe`).  Overflow drops the oldest status."""


@dataclass(frozen=True)
class _TunnelHost:
    """What a manager hands each of its tunnels (a :class:`~._supervisor.TunnelHost`): its
    retry settings, where to announce, and how to build a forwarder from its SSH settings."""

    retry: RetryPolicy
    max_failures: int | None
    wait: Callable[[threading.Event, float], object]
    announce: Callable[[TunnelStatus], None]
    known_hosts: list[Path] | None
    ssh_config: Path | None
    use_agent: bool
    connect_timeout: float
    keepalive: float

    @contextlib.contextmanager
    def forwarder(self, ssh: SshTunnelConfig, local_port: int) -> Iterator[TunnelForwarder]:
        """A new, unstarted forwarder for ``ssh``; the ssh-agent connection its keys need
        stays open until the context exits."""
        # Imported here: paramiko and sshtunnel are loaded only when a tunnel is opened.
        try:
            from ._forwarder import Forwarder
            from ._ssh import HostKeys, resolve, select_keys
        except ModuleNotFoundError as exc:  # the optional extra is missing
            raise ConfigError(f"remote mode needs {exc.name}, which is not installed: "
                              f"{install_hint('remote')}") from exc

        res = resolve(ssh, None if self.ssh_config is None else self.ssh_config.expanduser(), self.known_hosts)
        host_keys = HostKeys(res)
        keys, agent = select_keys(res, use_agent=self.use_agent)
        try:
            try:
                fwd = Forwarder(res, host_keys, keys, local_port=local_port, remote_port=ssh.remote_port,
                                timeout=self.connect_timeout, keepalive=self.keepalive)
            except Exception as exc:  # sshtunnel's argument checks
                raise ConfigError(f"invalid SSH tunnel settings for {ssh.target}: {exc}") from exc
            yield fwd
        finally:
            if agent is not None:
                agent.close()


_managers: weakref.WeakSet[RemoteTunnelManager] = weakref.WeakSet()


class RemoteTunnelManager:
    """Owns the SSH local-forward tunnels of remote mode (at most one per SSH target, local
    port and remote port).

    * :meth:`ensure` blocks until the tunnel is up (or reuses a running one, or a listener
      that is already on the local port), then returns the local port.
    * Each tunnel has a supervisor thread; a dropped SSH connection is reopened with backoff
      (``retry``; waits go through ``wait(event, seconds)``, cut short by :meth:`stop`).
      A :class:`ConfigError` (untrusted host key, rejected key...) is not retried until
      the next :meth:`ensure`; neither is a tunnel that failed ``max_failures`` times in a
      row (``None``: retry forever): it ends ``FAILED`` with the last reason.
    * :meth:`subscribe` gives a queue of :class:`TunnelStatus` changes, drained by your
      own thread (no user code ever runs on a tunnel thread).

    ``known_hosts``: the files to trust (default: ``UserKnownHostsFile``/
    ``GlobalKnownHostsFile`` from the SSH config, else ``~/.ssh/known_hosts`` and
    ``/etc/ssh/ssh_known_hosts``); the first one receives keys accepted under
    ``host_key_policy="openssh"`` with ``StrictHostKeyChecking accept-new``.
    ``ssh_config``: the OpenSSH client config read for HostName, Port, User,
    IdentityFile, known-hosts files, HostKeyAlias and StrictHostKeyChecking (``None``:
    none).  ``use_agent``: try ssh-agent keys when no usable identity file is given.
    ``connect_timeout`` bounds each of TCP connect, SSH handshake and authentication.
    ``max_failures``: consecutive failed attempts before a tunnel gives up (default
    :data:`DEFAULT_MAX_FAILURES`; ``None``: never).  ``wait``: a test seam for the backoff
    waits; it runs on the supervisor thread and must return once ``event`` is set.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        wait: Callable[[threading.Event, float], object] | None = None,
        known_hosts: Sequence[str | os.PathLike[str]] | None = None,
        ssh_config: str | os.PathLike[str] | None = "~/.ssh/config",
        use_agent: bool = True,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        max_failures: int | None = DEFAULT_MAX_FAILURES,
    ) -> None:
        if max_failures is not None and (isinstance(max_failures, bool) or max_failures < 1):
            raise UsageError("max_failures must be a positive integer or None")
        self._host = _TunnelHost(
            retry=retry or DEFAULT_TUNNEL_RETRY,
            max_failures=max_failures,
            wait=wait or _event_wait,
            announce=self._announce,
            known_hosts=None if known_hosts is None else [Path(os.fspath(p)).expanduser() for p in known_hosts],
            ssh_config=None if ssh_config is None else Path(os.fspath(ssh_config)),
            use_agent=use_agent,
            connect_timeout=connect_timeout,
            keepalive=keepalive,
        )
        self._lock = threading.Lock()
        self._tunnels: dict[_Key, Tunnel] = {}
        self._listeners: list[_Listener] = []
        _managers.add(self)

    # -- public API ----------------------------------------------------------------------

    def ensure(self, ssh: SshTunnelConfig, local_port: int, *, timeout: float | None = 30.0) -> int:
        """Make sure ``127.0.0.1:local_port`` forwards to ``127.0.0.1:ssh.remote_port`` on
        ``ssh.host``; block until it does and return ``local_port``.

        Reuses a running tunnel for the same target; reuses (without starting anything)
        whatever already listens on ``local_port`` when no tunnel of this manager owns it.
        Waits for the outcome of one connection attempt: raises :class:`ConfigError` (fix
        the config/known_hosts/key), :class:`TunnelError` (retried in the background),
        :class:`GatewayTimeout` (still trying) or :class:`ClientClosed` (stopped meanwhile)."""
        if not isinstance(ssh, SshTunnelConfig):
            raise UsageError("ensure() needs an SshTunnelConfig")
        if isinstance(local_port, bool) or not isinstance(local_port, int) or not 0 < local_port < 65536:
            raise ConfigError("the tunnel's local port must be an integer 1-65535")
        if threading.current_thread().name.startswith("gwclient-tunnel-"):
            raise UsageError("RemoteTunnelManager.ensure() would block a tunnel thread; call it from your own thread")
        key = (ssh, local_port)
        with self._lock:
            tunnel = self._tunnels.get(key)
            if tunnel is None:
                other = next((t for (s, p), t in self._tunnels.items() if p == local_port), None)
                if other is not None:
                    raise ConfigError(
                        f"local port {local_port} is already forwarded to {other.ssh.target}:{other.ssh.port}; "
                        "stop() that tunnel first or use another port"
                    )
            elif tunnel.thread is None and not _port_in_use(local_port):
                del self._tunnels[key]  # the external listener went away: open our own
                tunnel = None
            if tunnel is None:
                if _port_in_use(local_port):
                    log.info("127.0.0.1:%d is already listening; reusing it for %s (no SSH tunnel started)",
                             local_port, ssh.target)
                    tunnel = Tunnel(self._host, ssh, local_port, external=True)
                    self._tunnels[key] = tunnel
                    return local_port
                tunnel = Tunnel(self._host, ssh, local_port)
                self._tunnels[key] = tunnel
                assert tunnel.thread is not None
                tunnel.thread.start()
        tunnel.ensure(timeout)
        return local_port

    def status(self, ssh: SshTunnelConfig, local_port: int) -> TunnelStatus | None:
        """The tunnel's current status, or None if this manager has no such tunnel."""
        with self._lock:
            tunnel = self._tunnels.get((ssh, local_port))
        return None if tunnel is None else tunnel.status()

    def tunnels(self) -> list[TunnelStatus]:
        with self._lock:
            tunnels = list(self._tunnels.values())
        return [t.status() for t in tunnels]

    def stop(self, ssh: SshTunnelConfig, local_port: int, *, timeout: float = 15.0) -> None:
        """Close one tunnel (its forwarded connections too) and join its threads.  A reused
        external listener is only forgotten.  Unknown tunnels are ignored."""
        with self._lock:
            tunnel = self._tunnels.pop((ssh, local_port), None)
        if tunnel is not None:
            tunnel.stop(time.monotonic() + timeout)

    def stop_all(self, *, timeout: float = 15.0) -> None:
        """Close every tunnel of this manager (the manager stays usable)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            tunnels = list(self._tunnels.values())
            self._tunnels.clear()
        for tunnel in tunnels:
            tunnel.begin_stop()
        for tunnel in tunnels:
            tunnel.stop(deadline)

    def subscribe(self, *, maxsize: int = 64) -> TunnelSubscription:
        """A queue of every later :class:`TunnelStatus` change of this manager's tunnels."""
        sub = TunnelSubscription(max(1, maxsize), what="tunnel subscription", on_close=self._unsubscribe)
        with self._lock:
            self._listeners.append(sub._offer)
        return sub

    def _unsubscribe(self, sub: StateQueue[TunnelStatus]) -> None:
        self._remove_listener(sub._offer)

    def _add_listener(self, listener: _Listener) -> Callable[[], None]:
        """gwclient-internal: call ``listener(status)`` on the supervisor thread (no lock
        held) on every change; it must not block.  Returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._remove_listener(listener)

    def _remove_listener(self, listener: _Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def __enter__(self) -> RemoteTunnelManager:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def __repr__(self) -> str:
        return f"<RemoteTunnelManager {len(self._tunnels)} tunnel(s)>"

    # -- internals ---------------------------------------------------------------------

    def _announce(self, status: TunnelStatus) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(status)
            except Exception:  # a listener bug must not kill the supervisor
                log.exception("tunnel listener failed")


def _stop_all_managers() -> None:
    for manager in list(_managers):
        try:
            manager.stop_all(timeout=2.0)
        except Exception:  # pragma: no cover - exiting anyway
            pass


# Registered after gwclient._connection's handler (gwclient.remote imports gwclient first),
# so it runs first: tunnels close before the connection's exit handler waits for gwclient threads.
atexit.register(_stop_all_managers)

