"""Remote mode: the SSH tunnel, the endpoint store and the coordinator (DESIGN.md).

Three parts, as in the macOS client's refactor (PROTOCOL.md §5.4):

* :class:`RemoteTunnelManager` owns the SSH local-forward tunnels (``ssh -N -L``
  equivalents built on ``sshtunnel``/``paramiko``): at most one per (SSH target, local
  port, remote port).  :meth:`~RemoteTunnelManager.ensure` blocks until the tunnel is up
  and reuses a running one (or any listener already on the local port, e.g. the user's
  own ``ssh -L``).  Each tunnel has a supervisor thread that restarts it with backoff
  when the SSH connection drops.  Nothing here is started by a request.
* :class:`GatewayEndpointStore` publishes the effective endpoint: :class:`EndpointReady`,
  :class:`EndpointConnecting` or :class:`EndpointUnavailable`.  It is a
  :data:`~gwclient.ConfigProvider`, so ``GatewayConnection.shared(provider=store)``
  follows it; asking it for a config while the endpoint is not ready raises at once.
* :class:`ConnectionModeCoordinator` turns an explicit config change
  (:meth:`~ConnectionModeCoordinator.apply`) into tunnel actions and store updates.

No ``sshtunnel`` or ``paramiko`` exception crosses this module's API: bad keys, untrusted
or changed host keys and refused authentication raise :class:`ConfigError`; an
unreachable SSH server, a failed handshake or a busy local port raise
:class:`TunnelError` (a :class:`Disconnected`); both chain the original as
``__cause__``.  Messages and logs never contain key material (gwclient takes no key
passphrases at all: encrypted keys must be loaded into ssh-agent).

Threads (all daemon, all joined by ``stop``): ``gwclient-tunnel-<port>`` (supervisor),
``gwclient-tunnel-ssh-<n>`` (paramiko transport), ``gwclient-tunnel-listen-<port>``
(the local listener) and ``gwclient-tunnel-conn-<n>`` (one per forwarded connection).
"""

from __future__ import annotations

import atexit
import base64
import enum
import errno
import getpass
import hashlib
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

import paramiko  # type: ignore[import-untyped]
import sshtunnel

from ._config import GatewayConfig, SshTunnelConfig
from ._errors import ClientClosed, ConfigError, Disconnected, GatewayError, GatewayTimeout, UsageError
from ._retry import RetryPolicy

__all__ = [
    "ConnectionModeCoordinator",
    "EndpointConnecting",
    "EndpointNotReady",
    "EndpointReady",
    "EndpointState",
    "EndpointSubscription",
    "EndpointUnavailable",
    "GatewayEndpointStore",
    "RemoteTunnelManager",
    "TunnelError",
    "TunnelState",
    "TunnelStatus",
]

log = logging.getLogger("gwclient.tunnel")
_SSHTUNNEL_LOGGER = "gwclient.tunnel.sshtunnel"
_PARAMIKO_LOGGER = "gwclient.tunnel.paramiko"

#: The macOS app restarts a dropped tunnel after 2 s; later failures back off further.
DEFAULT_TUNNEL_RETRY = RetryPolicy(initial=2.0, multiplier=2.0, maximum=30.0, jitter=0.2)
_DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
_DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
_DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_ACCEPT_NEW = frozenset({"accept-new", "no", "off", "false"})
_LOCAL_HOST = "127.0.0.1"

_transport_numbers = itertools.count(1)
_conn_numbers = itertools.count(1)


# =========================================================================== errors


class TunnelError(Disconnected):
    """The SSH tunnel could not be opened or was lost: the SSH server is unreachable, the
    SSH handshake failed or the local port is taken.  Transient: the tunnel manager keeps
    retrying with backoff until the tunnel is stopped."""


class EndpointNotReady(Disconnected):
    """The endpoint store was asked for a config while the remote endpoint is connecting
    or unavailable (``state`` says which and why).  Retry after the endpoint is ready
    (:meth:`GatewayEndpointStore.wait_ready`)."""

    def __init__(self, message: str, *, state: EndpointState) -> None:
        super().__init__(message)
        self.state = state


# =========================================================================== endpoint states


@dataclass(frozen=True)
class EndpointReady:
    """The gateway can be reached with ``config`` (for SSH: the tunnel is up)."""

    config: GatewayConfig
    kind: ClassVar[str] = "ready"

    def __str__(self) -> str:
        return f"ready ({self.config.redacted_url})"


@dataclass(frozen=True)
class EndpointConnecting:
    """The endpoint is being set up (an SSH tunnel is opening)."""

    detail: str
    kind: ClassVar[str] = "connecting"

    def __str__(self) -> str:
        return f"connecting: {self.detail}"


@dataclass(frozen=True)
class EndpointUnavailable:
    """No usable endpoint: ``reason`` says why; ``error`` is the typed error behind it
    (:class:`ConfigError`: fix the config; :class:`TunnelError`: retried in the background;
    ``None``: not configured or stopped).  ``error`` is not part of equality."""

    reason: str
    error: GatewayError | None = field(default=None, compare=False, repr=False)
    kind: ClassVar[str] = "unavailable"

    def __str__(self) -> str:
        return f"unavailable: {self.reason}"


EndpointState: TypeAlias = EndpointReady | EndpointConnecting | EndpointUnavailable


def _not_ready_error(state: EndpointConnecting | EndpointUnavailable) -> GatewayError:
    if isinstance(state, EndpointConnecting):
        return EndpointNotReady(f"remote endpoint not ready: {state.detail}", state=state)
    message = f"remote endpoint unavailable: {state.reason}"
    if isinstance(state.error, ConfigError):
        # Not something a retry fixes: keep the "fix the config" category.
        return ConfigError(message)
    return EndpointNotReady(message, state=state)


# =========================================================================== endpoint store


class EndpointSubscription:
    """A queue of endpoint states: first the state current at :meth:`GatewayEndpointStore.subscribe`,
    then every change.  Overflow policy: the oldest queued state is dropped (the newest
    one, which is what matters, is always kept).  Iterate it, or call :meth:`get`."""

    def __init__(self, store: GatewayEndpointStore, maxsize: int) -> None:
        self._store = store
        self._items: deque[EndpointState] = deque(maxlen=max(1, maxsize))
        self._cond = threading.Condition()
        self._closed = False

    def _offer(self, state: EndpointState) -> None:
        with self._cond:
            if not self._closed:
                self._items.append(state)
                self._cond.notify_all()

    def get(self, timeout: float | None = None) -> EndpointState:
        """The next state; raises :class:`GatewayTimeout` after ``timeout`` seconds and
        :class:`ClientClosed` once the subscription is closed and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise ClientClosed("endpoint subscription closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise GatewayTimeout(f"no endpoint state change within {timeout:g} s")
                self._cond.wait(remaining)
            return self._items.popleft()

    def __iter__(self) -> Iterator[EndpointState]:
        while True:
            try:
                yield self.get()
            except ClientClosed:
                return

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._store._unsubscribe(self)

    def __enter__(self) -> EndpointSubscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class GatewayEndpointStore:
    """The single publisher of the effective gateway endpoint.

    A :data:`~gwclient.ConfigProvider`: calling it (or :meth:`config`) returns the ready
    :class:`GatewayConfig` or raises at once (:class:`EndpointNotReady`, or
    :class:`ConfigError` when the endpoint is unusable until the config is fixed); it
    never blocks and never starts a tunnel.  ``GatewayConnection.shared(provider=store)``
    follows it and reconnects once when the ready config changes.
    """

    def __init__(self, initial: EndpointState | None = None) -> None:
        self._cond = threading.Condition()
        self._state: EndpointState = initial if initial is not None else EndpointUnavailable("not configured")
        self._subs: list[EndpointSubscription] = []

    def current(self) -> EndpointState:
        with self._cond:
            return self._state

    def publish(self, state: EndpointState) -> bool:
        """Make ``state`` current and tell subscribers; a state equal to the current one is
        ignored.  Returns whether it changed."""
        if not isinstance(state, (EndpointReady, EndpointConnecting, EndpointUnavailable)):
            raise UsageError("publish() takes an EndpointReady, EndpointConnecting or EndpointUnavailable")
        with self._cond:
            if state == self._state:
                return False
            self._state = state
            for sub in self._subs:  # under the lock: every subscriber sees one order
                sub._offer(state)
            self._cond.notify_all()
        log.debug("endpoint %s", state)
        return True

    def subscribe(self, *, maxsize: int = 64) -> EndpointSubscription:
        """A queue of states, starting with the current one."""
        with self._cond:
            sub = EndpointSubscription(self, maxsize)
            sub._offer(self._state)
            self._subs.append(sub)
            return sub

    def _unsubscribe(self, sub: EndpointSubscription) -> None:
        with self._cond:
            if sub in self._subs:
                self._subs.remove(sub)

    def config(self) -> GatewayConfig:
        """The ready config, else raise (see the class docstring)."""
        state = self.current()
        if isinstance(state, EndpointReady):
            return state.config
        raise _not_ready_error(state) from getattr(state, "error", None)

    def __call__(self) -> GatewayConfig:
        return self.config()

    def wait_ready(self, timeout: float | None = None) -> GatewayConfig:
        """Block until the endpoint is ready and return its config; raises
        :class:`GatewayTimeout` (chained to the current state's error) after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not isinstance(self._state, EndpointReady):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    state = self._state
                    raise GatewayTimeout(f"remote endpoint not ready within {timeout:g} s ({state})") \
                        from getattr(state, "error", None)
                self._cond.wait(remaining)
            return self._state.config

    def __repr__(self) -> str:
        return f"<GatewayEndpointStore {self.current()}>"


# =========================================================================== SSH settings


def _expand(path: str) -> Path:
    return Path(os.path.expanduser(path))


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fingerprint(key: Any) -> str:
    fp = getattr(key, "fingerprint", None)
    if isinstance(fp, str) and fp:
        return fp
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class _Resolved:
    """One SSH target after ``~/.ssh/config`` (like ``ssh`` would see it)."""

    target: str            # for messages: user@host:port as configured
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    explicit_identity: bool
    known_hosts: tuple[Path, ...]
    write_known_hosts: Path | None
    host_key_names: tuple[str, ...]
    accept_new: bool
    policy: str


def _resolve(ssh: SshTunnelConfig, ssh_config_file: Path | None,
             known_hosts: Sequence[Path] | None) -> _Resolved:
    options: dict[str, Any] = {}
    if ssh_config_file is not None:
        try:
            options = dict(paramiko.SSHConfig.from_path(str(ssh_config_file)).lookup(ssh.host))
        except FileNotFoundError:
            options = {}
        except OSError as exc:
            raise ConfigError(f"cannot read SSH config {ssh_config_file}: {_describe_os_error(exc)}") from exc
        except Exception as exc:  # paramiko ConfigParseError, Match exec failures...
            raise ConfigError(f"cannot use SSH config {ssh_config_file}: {type(exc).__name__}") from exc
    for name in ("proxycommand", "proxyjump"):
        value = options.get(name)
        if value and str(value).lower() != "none":
            raise ConfigError(
                f"the SSH config for {ssh.host!r} uses {name} (from {ssh_config_file}), which gwclient's "
                f"built-in SSH client does not support; open the tunnel yourself "
                f"(ssh -N -L <local port>:127.0.0.1:{ssh.remote_port} {ssh.target}) and gwclient reuses it"
            )
    hostname = str(options.get("hostname") or ssh.host)
    port = ssh.port
    if port == 22 and options.get("port"):
        try:
            port = int(options["port"])
        except ValueError as exc:
            raise ConfigError(f"invalid Port in SSH config for {ssh.host!r}") from exc
    user = ssh.user or options.get("user")
    if not user:
        try:
            user = getpass.getuser()
        except Exception as exc:  # no USER/LOGNAME and no passwd entry
            raise ConfigError("no SSH user: set one in the SSH target (user@host)") from exc
    if ssh.identity_file:
        identities: tuple[Path, ...] = (_expand(ssh.identity_file),)
    else:
        configured = options.get("identityfile") or []
        identities = tuple(_expand(p) for p in (configured or _DEFAULT_IDENTITIES))
    if known_hosts is not None:
        files = tuple(known_hosts)
        write = files[0] if files else None
    else:
        user_files = str(options.get("userknownhostsfile") or "").split() or list(_DEFAULT_USER_KNOWN_HOSTS)
        global_files = str(options.get("globalknownhostsfile") or "").split() or list(_DEFAULT_GLOBAL_KNOWN_HOSTS)
        users = [_expand(p) for p in user_files if p.lower() != "none"]
        files = tuple(users + [_expand(p) for p in global_files if p.lower() != "none"])
        write = users[0] if users else None
    alias = str(options.get("hostkeyalias") or hostname)
    name = alias if port == 22 else f"[{alias}]:{port}"
    strict = str(options.get("stricthostkeychecking") or "ask").lower()
    accept_new = ssh.host_key_policy == "openssh" and strict in _ACCEPT_NEW
    return _Resolved(
        target=f"{ssh.target}:{ssh.port}", hostname=hostname, port=port, user=str(user),
        identity_files=identities, explicit_identity=bool(ssh.identity_file), known_hosts=files,
        write_known_hosts=write, host_key_names=(name,), accept_new=accept_new,
        policy=ssh.host_key_policy,
    )


class _HostKeys:
    """known_hosts lookups and checks for one resolved target."""

    def __init__(self, res: _Resolved) -> None:
        self._res = res
        self._keys = paramiko.HostKeys()
        for path in res.known_hosts:
            if not path.is_file():
                continue
            try:
                self._keys.load(str(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read known_hosts file {path}: {_describe_os_error(exc)}") from exc
            except Exception as exc:  # a corrupt entry paramiko does not skip
                raise ConfigError(f"cannot parse known_hosts file {path} ({type(exc).__name__})") from exc
        self.known: dict[str, Any] = {}
        for name in res.host_key_names:
            entry = self._keys.lookup(name)
            if entry:
                for keytype in entry.keys():
                    self.known.setdefault(keytype, entry[keytype])

    def prefer_known_types(self, transport: Any) -> None:
        """Ask the server for a key type we already know (as OpenSSH and SSHClient do)."""
        if not self.known:
            return
        options = transport.get_security_options()
        offered = list(options.key_types)
        wanted: list[str] = []
        for keytype in self.known:
            if keytype == "ssh-rsa":
                wanted.extend(t for t in ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if t in offered)
            elif keytype in offered:
                wanted.append(keytype)
        if wanted:
            options.key_types = wanted + [t for t in offered if t not in wanted]

    def verify(self, server_key: Any) -> None:
        res = self._res
        fp = f"{server_key.get_name()} {_fingerprint(server_key)}"
        where = f"{res.hostname}:{res.port}"
        files = ", ".join(str(p) for p in res.known_hosts) or "no known_hosts file"
        if self.known:
            ours = self.known.get(server_key.get_name())
            if ours is not None and ours.asbytes() == server_key.asbytes():
                return
            raise ConfigError(
                f"SSH host key of {where} does not match known_hosts ({files}): the server presented "
                f"{fp}. Either someone is intercepting the connection or the host key changed; if the "
                f"change is expected, remove the old entry (ssh-keygen -R '{res.host_key_names[0]}') "
                "and add the verified new key"
            )
        if res.accept_new and res.write_known_hosts is not None:
            self._remember(server_key, res.write_known_hosts)
            log.warning("permanently added %s (%s) to %s (host_key_policy 'openssh', StrictHostKeyChecking "
                        "from the SSH config)", res.host_key_names[0], fp, res.write_known_hosts)
            return
        why = ("host_key_policy 'strict' requires a known host key" if res.policy == "strict"
               else "the SSH config's StrictHostKeyChecking does not accept new keys (and gwclient cannot ask)")
        raise ConfigError(
            f"SSH host key of {where} is not trusted ({fp}): {why}. Verify the fingerprint out of band, "
            f"then add it to known_hosts ({files}), e.g. by connecting once with "
            f"`ssh -p {res.port} {res.user}@{res.hostname}`"
        )

    def _remember(self, key: Any, path: Path) -> None:
        line = paramiko.hostkeys.HostKeyEntry(list(self._res.host_key_names), key).to_line()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            raise ConfigError(f"cannot record the new SSH host key in {path}: {_describe_os_error(exc)}") from exc


def _load_key(path: Path) -> tuple[Any | None, bool]:
    """``(key, encrypted)``; raises ConfigError for a missing or unusable file."""
    try:
        return paramiko.PKey.from_path(str(path)), False
    except (TypeError, paramiko.PasswordRequiredException):
        # cryptography raises TypeError for an encrypted key without a password.
        return None, True
    except FileNotFoundError as exc:
        raise ConfigError(f"SSH identity file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read SSH identity file {path}: {_describe_os_error(exc)}") from exc
    except Exception as exc:  # ValueError, UnknownKeyType, SSHException...
        raise ConfigError(f"SSH identity file {path} is not a supported private key "
                          f"(OpenSSH or PEM; ed25519, ecdsa or rsa)") from exc


# =========================================================================== sshtunnel glue


class _ForwardServer(sshtunnel._ThreadingForwardServer):  # type: ignore[misc]
    """sshtunnel's threading forward server with named, tracked handler threads that can
    be woken and joined (sshtunnel leaves them to the garbage collector)."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._gw_lock = threading.Lock()
        self._gw_threads: list[threading.Thread] = []
        self._gw_requests: set[socket.socket] = set()
        self._gw_closing = False
        super().__init__(*args, **kwargs)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._gw_lock:
            if self._gw_closing:
                self.shutdown_request(request)
                return
            self._gw_requests.add(request)
            self._gw_threads = [t for t in self._gw_threads if t.is_alive()]
            thread = threading.Thread(target=self._gw_handle, args=(request, client_address),
                                      name=f"gwclient-tunnel-conn-{next(_conn_numbers)}", daemon=True)
            self._gw_threads.append(thread)
        thread.start()

    def _gw_handle(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._gw_lock:
                self._gw_requests.discard(request)

    def gw_begin_close(self) -> None:
        """Refuse new connections and wake every handler (EOF on its local socket)."""
        with self._gw_lock:
            self._gw_closing = True
            requests = list(self._gw_requests)
        for request in requests:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def gw_threads(self) -> list[threading.Thread]:
        with self._gw_lock:
            return list(self._gw_threads)


class _Forwarder(sshtunnel.SSHTunnelForwarder):  # type: ignore[misc]
    """``SSHTunnelForwarder`` with the parts gwclient needs done differently:

    * the SSH connection (``_connect_to_gateway``): connect timeout, host-key verification
      against known_hosts (sshtunnel checks nothing unless given one exact key) and real
      errors (sshtunnel logs the cause and raises a generic "Could not establish session");
    * named, tracked threads, and a teardown that joins them (``gw_close``).
    """

    _server_list: list[Any]
    tunnel_is_up: dict[Any, bool]

    skip_tunnel_checkup = True     # the check opens a real forwarded connection to the gateway
    daemon_forward_servers = True  # never hold up interpreter exit; gw_close joins them
    daemon_transport = True

    def __init__(self, res: _Resolved, host_keys: _HostKeys, keys: Sequence[Any], *, local_port: int,
                 remote_port: int, timeout: float, keepalive: float) -> None:
        self._gw_res = res
        self._gw_host_keys = host_keys
        self._gw_keys = list(keys)
        self._gw_timeout = timeout
        self._gw_lock = threading.Lock()
        self._gw_transports: list[Any] = []
        self._gw_serve_threads: list[threading.Thread] = []
        self._gw_started = False
        self._gw_aborted = False
        super().__init__(
            ssh_address_or_host=(res.hostname, res.port),
            ssh_config_file=None,          # resolved by gwclient (_resolve)
            ssh_username=res.user,
            ssh_pkey=self._gw_keys[0],     # a PKey: sshtunnel's file loader hides errors
            allow_agent=False,             # keys are chosen by gwclient
            host_pkey_directories=[],
            remote_bind_address=(_LOCAL_HOST, remote_port),
            local_bind_address=(_LOCAL_HOST, local_port),
            logger=logging.getLogger(_SSHTUNNEL_LOGGER),  # else sshtunnel adds a stderr handler
            set_keepalive=keepalive,
            threaded=True,
            mute_exceptions=False,
        )

    # -- sshtunnel overrides ------------------------------------------------------------

    def _make_ssh_forward_server_class(self, remote_address_: Any) -> type:
        return _ForwardServer

    def _make_ssh_forward_server(self, remote_address: Any, local_bind_address: Any) -> None:
        # sshtunnel logs a bind failure and later raises "An error occurred while opening
        # tunnels." without the cause; keep it.
        try:
            super()._make_ssh_forward_server(remote_address, local_bind_address)
        except sshtunnel.BaseSSHTunnelForwarderError as exc:
            cause = exc.__context__ or exc
            raise TunnelError(f"cannot listen on {_LOCAL_HOST}:{local_bind_address[1]}: "
                              f"{_describe_local_bind(cause)}") from cause

    def _serve_forever_wrapper(self, _srv: Any, poll_interval: float = 0.1) -> None:
        me = threading.current_thread()
        me.name = f"gwclient-tunnel-listen-{_srv.local_port}"
        with self._gw_lock:
            self._gw_serve_threads.append(me)
        super()._serve_forever_wrapper(_srv, poll_interval)

    def _get_transport(self) -> Any:
        res = self._gw_res
        sock = socket.create_connection((res.hostname, res.port), timeout=self._gw_timeout)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # ssh's TCPKeepAlive=yes
            transport = paramiko.Transport(sock)
        except BaseException:
            sock.close()
            raise
        transport.name = f"gwclient-tunnel-ssh-{next(_transport_numbers)}"
        transport.daemon = self.daemon_transport
        transport.set_log_channel(_PARAMIKO_LOGGER)
        transport.set_keepalive(int(self.set_keepalive or 0))
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = self._gw_timeout
        with self._gw_lock:
            self._gw_transports.append(transport)
            aborted = self._gw_aborted
        if aborted:
            transport.close()
            raise TunnelError("the SSH tunnel was stopped while connecting")
        return transport

    def _connect_to_gateway(self) -> None:
        # Raises gwclient errors, which sshtunnel's start() lets through unchanged.
        res = self._gw_res
        where = f"{res.hostname}:{res.port}"
        try:
            transport = self._get_transport()
        except GatewayError:
            raise
        except OSError as exc:
            raise TunnelError(f"cannot reach SSH server {where}: {_describe_os_error(exc)}") from exc
        self._transport = transport
        self._gw_host_keys.prefer_known_types(transport)
        try:
            transport.start_client(timeout=self._gw_timeout)
            if not transport.completion_event.is_set():
                raise TunnelError(f"SSH handshake with {where} timed out after {self._gw_timeout:g} s")
            server_key = transport.get_remote_server_key()
        except GatewayError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise TunnelError(f"SSH handshake with {where} failed: {_describe_os_error(exc)}") from exc
        self._gw_host_keys.verify(server_key)
        rejected: BaseException | None = None
        for key in self._gw_keys:
            try:
                transport.auth_publickey(res.user, key)
            except paramiko.BadAuthenticationType as exc:
                raise ConfigError(
                    f"SSH server {where} does not accept public-key authentication for {res.user!r} "
                    f"(it offers: {', '.join(exc.allowed_types) or 'nothing'})"
                ) from exc
            except paramiko.AuthenticationException as exc:
                rejected = exc
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise TunnelError(f"SSH authentication with {where} failed: {_describe_os_error(exc)}") from exc
            if transport.is_authenticated():
                log.debug("SSH %s@%s: authenticated with %s", res.user, where, _fingerprint(key))
                return
            raise ConfigError(f"SSH server {where} wants more than a public key for {res.user!r} "
                              "(e.g. a second factor), which gwclient cannot provide")
        fps = ", ".join(f"{k.get_name()} {_fingerprint(k)}" for k in self._gw_keys)
        raise ConfigError(f"SSH server {where} rejected the key(s) for user {res.user!r}: {fps}") from rejected

    # -- gwclient side ---------------------------------------------------------------

    def gw_start(self) -> None:
        try:
            self.start()
        except GatewayError:
            raise
        except Exception as exc:  # BaseSSHTunnelForwarderError and anything unexpected
            raise TunnelError(f"cannot open the SSH tunnel to {self._gw_res.target}: {exc}") from exc
        self._gw_started = True

    def gw_transport(self) -> Any:
        with self._gw_lock:
            return self._gw_transports[-1] if self._gw_transports else None

    def gw_abort(self) -> None:
        """From another thread: make a running start()/connection end soon."""
        with self._gw_lock:
            self._gw_aborted = True
            transports = list(self._gw_transports)
        for transport in transports:
            _close_transport(transport)

    def gw_close(self, timeout: float = 5.0) -> None:
        """Stop the listener, the forwarded connections and the SSH connection; join every
        thread; close every socket.  (sshtunnel's stop() blocks forever on a listener whose
        serve thread never ran, and joins nothing.)"""
        deadline = time.monotonic() + timeout
        servers: list[_ForwardServer] = list(self._server_list)
        for srv in servers:
            srv.gw_begin_close()
        if self._gw_started:
            for srv in servers:
                srv.shutdown()  # stops serve_forever (poll interval 0.1 s)
        self.gw_abort()
        with self._gw_lock:
            threads: list[threading.Thread] = list(self._gw_serve_threads) + list(self._gw_transports)
        for srv in servers:
            threads.extend(srv.gw_threads())
        me = threading.current_thread()
        for thread in threads:
            if thread is not me and thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        for srv in servers:
            srv.server_close()
        with self._gw_lock:
            for transport in self._gw_transports:
                transport.sock.close()
        self._server_list = []
        self.tunnel_is_up = {}
        self.is_alive = False
        alive = [t.name for t in threads if t.is_alive() and t is not me]
        if alive:
            log.warning("SSH tunnel threads still running after %g s: %s", timeout, ", ".join(alive))


def _close_transport(transport: Any) -> None:
    try:
        transport.close()
    except Exception:  # pragma: no cover - closing anyway
        pass
    try:
        transport.sock.close()
    except OSError:  # pragma: no cover
        pass


def _describe_local_bind(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return "the port is already in use"
    return _describe_os_error(exc)


def _port_in_use(port: int) -> bool:
    """Is something bound to 127.0.0.1:port (e.g. the user's own ``ssh -L``)?  A bind probe:
    it does not connect, so it opens no forwarded connection through someone's tunnel."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((_LOCAL_HOST, port))
    except OSError as exc:
        return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    finally:
        probe.close()
    return False


# =========================================================================== tunnel manager


class TunnelState(enum.Enum):
    STARTING = "starting"   #: an explicitly requested attempt is under way
    UP = "up"               #: forwarding
    EXTERNAL = "external"   #: the local port was already listening (someone else's tunnel); reused
    DOWN = "down"           #: failed or lost; retried with backoff in the background
    FAILED = "failed"       #: a ConfigError; not retried until ensure() is called again
    STOPPED = "stopped"


@dataclass(frozen=True)
class TunnelStatus:
    ssh: SshTunnelConfig
    local_port: int
    state: TunnelState
    detail: str = ""
    error: GatewayError | None = field(default=None, compare=False, repr=False)
    #: Attempts made so far (connects, including restarts).
    attempts: int = 0

    @property
    def usable(self) -> bool:
        return self.state in (TunnelState.UP, TunnelState.EXTERNAL)


TunnelListener = Callable[[TunnelStatus], None]
_Key = tuple[SshTunnelConfig, int]


def _event_wait(event: threading.Event, seconds: float) -> object:
    return event.wait(seconds)


class _Tunnel:
    """One tunnel and its supervisor thread (``gwclient-tunnel-<port>``)."""

    def __init__(self, manager: RemoteTunnelManager, ssh: SshTunnelConfig, local_port: int,
                 external: bool = False) -> None:
        self.manager = manager
        self.ssh = ssh
        self.local_port = local_port
        self.cond = threading.Condition()
        self.wake = threading.Event()
        self.stopping = False
        self.state = TunnelState.EXTERNAL if external else TunnelState.STARTING
        self.detail = "reusing a listener already on the local port" if external else "opening"
        self.error: GatewayError | None = None
        self.started = 0        # attempts begun
        self.finished = 0       # attempts finished
        self.in_attempt = False
        self.kicked = False
        self.fwd: _Forwarder | None = None
        self.thread: threading.Thread | None = None
        if not external:
            self.thread = threading.Thread(target=self._run, name=f"gwclient-tunnel-{local_port}", daemon=True)

    @property
    def where(self) -> str:
        ssh = self.ssh
        return f"{_LOCAL_HOST}:{self.local_port} -> {ssh.target}:{ssh.port} -> 127.0.0.1:{ssh.remote_port}"

    def status(self) -> TunnelStatus:
        with self.cond:
            return TunnelStatus(self.ssh, self.local_port, self.state, self.detail, self.error, self.started)

    def _set(self, state: TunnelState, detail: str, error: GatewayError | None = None) -> TunnelStatus | None:
        """Under self.cond.  Returns the status to announce (None if unchanged)."""
        if (state, detail) == (self.state, self.detail) and error is self.error:
            return None
        self.state, self.detail, self.error = state, detail, error
        self.cond.notify_all()
        return TunnelStatus(self.ssh, self.local_port, state, detail, error, self.started)

    # -- supervisor ------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self.cond:
                if self.stopping:
                    break
                self.in_attempt = True
                self.started += 1
                announce = None
                if self.kicked or self.started == 1:
                    announce = self._set(TunnelState.STARTING, f"opening SSH tunnel {self.where}")
                self.kicked = False
                self.wake.clear()
            self.manager._announce(announce)
            fwd: _Forwarder | None = None
            error: GatewayError | None = None
            try:
                fwd = self.manager._open(self)
            except GatewayError as exc:
                error = exc
            except Exception as exc:  # pragma: no cover - a bug; never let it escape the thread
                log.exception("SSH tunnel %s: unexpected error", self.where)
                error = TunnelError(f"SSH tunnel failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            with self.cond:
                self.in_attempt = False
                self.finished += 1
                if self.stopping:
                    announce = None
                elif fwd is not None:
                    self.fwd = fwd
                    failures = 0
                    announce = self._set(TunnelState.UP, f"forwarding {self.where}")
                else:
                    assert error is not None
                    failures += 1
                    state = TunnelState.FAILED if isinstance(error, ConfigError) else TunnelState.DOWN
                    announce = self._set(state, str(error), error)
                self.cond.notify_all()
            if self.stopping:
                if fwd is not None:
                    fwd.gw_close()
                break
            self.manager._announce(announce)
            if fwd is not None:
                log.info("SSH tunnel up: %s", self.where)
                lost = self._watch(fwd)
                fwd.gw_close()
                with self.cond:
                    self.fwd = None
                    if self.stopping or not lost:
                        break
                    failures = 1
                    err = TunnelError(f"SSH connection to {self.ssh.target}:{self.ssh.port} lost")
                    announce = self._set(TunnelState.DOWN, str(err), err)
                log.warning("SSH tunnel lost: %s; restarting", self.where)
                self.manager._announce(announce)
            if isinstance(error, ConfigError):
                log.warning("SSH tunnel %s: %s (not retrying until ensure() is called again)", self.where, error)
                self.wake.wait()  # until ensure() kicks or stop()
                continue
            if error is not None:
                log.info("SSH tunnel %s: %s", self.where, error)
            delay = self.manager._retry.delay(max(0, failures - 1))
            if not self.wake.is_set():
                self.manager._wait(self.wake, delay)
        with self.cond:
            self.state, self.detail, self.error = TunnelState.STOPPED, "stopped", None
            self.cond.notify_all()
            final = TunnelStatus(self.ssh, self.local_port, TunnelState.STOPPED, "stopped", None, self.started)
        self.manager._announce(final)

    def _watch(self, fwd: _Forwarder) -> bool:
        """Block while the SSH connection lives.  True if it was lost (not stopped)."""
        transport = fwd.gw_transport()
        while transport is not None and transport.is_alive():
            if self.stopping:
                return False
            transport.join(1.0)
        return not self.stopping

    # -- control -----------------------------------------------------------------------

    def _usable(self) -> bool:
        return self.state in (TunnelState.UP, TunnelState.EXTERNAL)

    def ensure(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            if self._usable():
                return
            target = self.finished + 1
            if not self.in_attempt:
                self.kicked = True
                self.wake.set()
            while self.finished < target and not self.stopping:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise GatewayTimeout(f"SSH tunnel {self.where} not up within {timeout:g} s")
                self.cond.wait(remaining)
            if self.stopping:
                raise ClientClosed("the SSH tunnel was stopped")
            if self._usable():
                return
            error = self.error
        assert error is not None
        raise error

    def stop(self, deadline: float) -> None:
        with self.cond:
            self.stopping = True
            self.wake.set()
            fwd = self.fwd
            self.cond.notify_all()
        if fwd is not None:
            fwd.gw_abort()
        pending = self.manager._pending_forwarder(self)
        if pending is not None:
            pending.gw_abort()
        if self.thread is not None and self.thread is not threading.current_thread() and self.thread.ident:
            self.thread.join(max(0.0, deadline - time.monotonic()))
            if self.thread.is_alive():
                log.warning("SSH tunnel supervisor %s still running", self.thread.name)
        if self.thread is None:  # external: nothing of ours to stop
            with self.cond:
                self.state, self.detail = TunnelState.STOPPED, "stopped"


_managers: weakref.WeakSet[RemoteTunnelManager] = weakref.WeakSet()


class RemoteTunnelManager:
    """Owns the SSH local-forward tunnels of remote mode (at most one per SSH target, local
    port and remote port).

    * :meth:`ensure` blocks until the tunnel is up (or reuses a running one, or a listener
      that is already on the local port), then returns the local port.
    * Each tunnel has a supervisor thread; a dropped SSH connection is reopened with backoff
      (``retry``; waits go through ``wait(event, seconds)``, cut short by :meth:`stop`).
      A :class:`ConfigError` (untrusted host key, rejected key...) is not retried until
      the next :meth:`ensure`.
    * Listeners (:meth:`add_listener`) get a :class:`TunnelStatus` on every change, called
      on the supervisor thread with no lock held.

    ``known_hosts``: the files to trust (default: ``UserKnownHostsFile``/
    ``GlobalKnownHostsFile`` from the SSH config, else ``~/.ssh/known_hosts`` and
    ``/etc/ssh/ssh_known_hosts``); the first one receives keys accepted under
    ``host_key_policy="openssh"`` with ``StrictHostKeyChecking accept-new``.
    ``ssh_config``: the OpenSSH client config read for HostName, Port, User,
    IdentityFile, known-hosts files, HostKeyAlias and StrictHostKeyChecking (``None``:
    none).  ``use_agent``: try ssh-agent keys when no usable identity file is given.
    ``connect_timeout`` bounds each of TCP connect, SSH handshake and authentication.
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
    ) -> None:
        self._retry = retry or DEFAULT_TUNNEL_RETRY
        self._wait = wait or _event_wait
        self._known_hosts = None if known_hosts is None else [Path(os.fspath(p)).expanduser() for p in known_hosts]
        self._ssh_config = None if ssh_config is None else Path(os.fspath(ssh_config))
        self._use_agent = use_agent
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._lock = threading.Lock()
        self._tunnels: dict[_Key, _Tunnel] = {}
        self._pending: dict[_Tunnel, _Forwarder] = {}
        self._listeners: list[TunnelListener] = []
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
                    tunnel = _Tunnel(self, ssh, local_port, external=True)
                    self._tunnels[key] = tunnel
                    return local_port
                tunnel = _Tunnel(self, ssh, local_port)
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
            with tunnel.cond:
                tunnel.stopping = True
                tunnel.wake.set()
                tunnel.cond.notify_all()
        for tunnel in tunnels:
            tunnel.stop(deadline)

    def add_listener(self, listener: TunnelListener) -> Callable[[], None]:
        """Call ``listener(status)`` on every status change; returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def __enter__(self) -> RemoteTunnelManager:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def __repr__(self) -> str:
        return f"<RemoteTunnelManager {len(self._tunnels)} tunnel(s)>"

    # -- internals ---------------------------------------------------------------------

    def _announce(self, status: TunnelStatus | None) -> None:
        if status is None:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(status)
            except Exception:  # a listener bug must not kill the supervisor
                log.exception("tunnel listener failed")

    def _pending_forwarder(self, tunnel: _Tunnel) -> _Forwarder | None:
        with self._lock:
            return self._pending.get(tunnel)

    def _keys(self, res: _Resolved) -> tuple[list[Any], Any | None]:
        """The keys to try, in order, and the ssh-agent connection to close afterwards."""
        keys: list[Any] = []
        encrypted: list[Path] = []
        for path in res.identity_files:
            if not res.explicit_identity and not path.is_file():
                continue  # default / ssh-config identities are optional, like in ssh
            try:
                key, is_encrypted = _load_key(path)
            except ConfigError:
                if res.explicit_identity:
                    raise
                log.warning("skipping unusable SSH identity %s", path)
                continue
            if key is not None:
                keys.append(key)
            elif is_encrypted:
                encrypted.append(path)
        agent = None
        if self._use_agent and os.environ.get("SSH_AUTH_SOCK") and not (res.explicit_identity and keys):
            try:
                agent = paramiko.Agent()
                keys.extend(agent.get_keys())
            except Exception as exc:  # an unreachable agent is like no agent
                log.info("ssh-agent not usable: %s", type(exc).__name__)
        if not keys:
            if agent is not None:
                agent.close()
            if encrypted:
                names = ", ".join(str(p) for p in encrypted)
                raise ConfigError(
                    f"SSH identity {names} is passphrase-protected and gwclient never asks for passphrases: "
                    f"load it into ssh-agent (ssh-add {encrypted[0]}) or use an unencrypted key"
                )
            raise ConfigError(
                f"no SSH key available for {res.user}@{res.hostname}: set ssh.identity_file "
                "(gateway.remote.sshIdentity) or load a key into ssh-agent"
            )
        return keys, agent

    def _open(self, tunnel: _Tunnel) -> _Forwarder:
        """One attempt, on the supervisor thread: a started forwarder, or raise."""
        ssh = tunnel.ssh
        res = _resolve(ssh, None if self._ssh_config is None else self._ssh_config.expanduser(), self._known_hosts)
        host_keys = _HostKeys(res)
        keys, agent = self._keys(res)
        try:
            try:
                fwd = _Forwarder(res, host_keys, keys, local_port=tunnel.local_port, remote_port=ssh.remote_port,
                                 timeout=self._connect_timeout, keepalive=self._keepalive)
            except Exception as exc:  # sshtunnel's argument checks
                raise ConfigError(f"invalid SSH tunnel settings for {ssh.target}: {exc}") from exc
            with self._lock:
                self._pending[tunnel] = fwd
            with tunnel.cond:
                stopping = tunnel.stopping
            try:
                if stopping:
                    raise ClientClosed("the SSH tunnel was stopped")
                fwd.gw_start()
            except BaseException:
                fwd.gw_close()
                raise
            finally:
                with self._lock:
                    self._pending.pop(tunnel, None)
            return fwd
        finally:
            if agent is not None:
                agent.close()


def _stop_all_managers() -> None:
    for manager in list(_managers):
        try:
            manager.stop_all(timeout=2.0)
        except Exception:  # pragma: no cover - exiting anyway
            pass


# Registered after gwclient._connection's handler, so it runs first: tunnels close before
# the connection's exit handler waits for gwclient threads.
atexit.register(_stop_all_managers)


# =========================================================================== coordinator


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
        self._remove_listener = self._manager.add_listener(self._on_tunnel)

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
        if config.host not in ("127.0.0.1", "localhost"):
            return ConfigError(
                f"with an SSH tunnel the url must be ws://127.0.0.1:<port> or ws://localhost:<port> "
                f"(the tunnel listens on 127.0.0.1), got {config.redacted_url!r}"
            )
        return (config.ssh, config.port)

    def _on_tunnel(self, status: TunnelStatus) -> None:
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
