"""The sshtunnel glue: ``SSHTunnelForwarder`` doing what gwclient needs (host-key checks,
typed errors, named and joined threads).

Imported only when a tunnel is opened: it needs ``sshtunnel`` and ``paramiko``.

What still depends on sshtunnel internals, and why (sshtunnel >=0.4,<0.6, bounded in setup.cfg):

* ``_connect_to_gateway`` is replaced: sshtunnel's version checks no host key unless it is
  given one exact key, tries keys and agent on its own, and turns every failure into a
  generic "Could not establish session" after logging the cause.  gwclient opens the
  paramiko transport itself (connect timeout, keepalive, known_hosts, typed errors) and
  hands it to sshtunnel by setting ``_transport``, the attribute sshtunnel forwards over.
* ``_make_ssh_forward_server_class`` returns a subclass of ``_ThreadingForwardServer``
  whose handler threads are named ``gwclient-tunnel-conn-<n>`` and can be woken and joined
  (sshtunnel leaves them to the garbage collector).
* ``_make_ssh_forward_server`` is wrapped only to keep the bind error (sshtunnel logs it
  and later raises "An error occurred while opening tunnels." without a cause).
* ``_serve_forever_wrapper`` is wrapped only to name (``gwclient-tunnel-listen-<port>``)
  and track the listener thread.
* ``gw_close`` replaces ``stop()``: sshtunnel's stop() blocks forever on a listener whose
  serve thread never ran and joins nothing; it reads ``_server_list``.
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import paramiko  # type: ignore[import-untyped]
import sshtunnel

from .._errors import ConfigError, GatewayError, TunnelError
from ._ssh import HostKeys, Resolved, describe_os_error, fingerprint

log = logging.getLogger("gwclient.tunnel")
_SSHTUNNEL_LOGGER = "gwclient.tunnel.sshtunnel"
_PARAMIKO_LOGGER = "gwclient.tunnel.paramiko"
LOCAL_HOST = "127.0.0.1"

_transport_numbers = itertools.count(1)
_conn_numbers = itertools.count(1)

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


class Forwarder(sshtunnel.SSHTunnelForwarder):  # type: ignore[misc]
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

    def __init__(self, res: Resolved, host_keys: HostKeys, keys: Sequence[Any], *, local_port: int,
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
            remote_bind_address=(LOCAL_HOST, remote_port),
            local_bind_address=(LOCAL_HOST, local_port),
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
            raise TunnelError(f"cannot listen on {LOCAL_HOST}:{local_bind_address[1]}: "
                              f"{_describe_local_bind(cause)}") from cause

    def _serve_forever_wrapper(self, _srv: Any, poll_interval: float = 0.1) -> None:
        me = threading.current_thread()
        me.name = f"gwclient-tunnel-listen-{_srv.local_port}"
        with self._gw_lock:
            self._gw_serve_threads.append(me)
        super()._serve_forever_wrapper(_srv, poll_interval)

    def _gw_open_transport(self) -> Any:
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
            transport = self._gw_open_transport()
        except GatewayError:
            raise
        except OSError as exc:
            raise TunnelError(f"cannot reach SSH server {where}: {describe_os_error(exc)}") from exc
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
            raise TunnelError(f"SSH handshake with {where} failed: {describe_os_error(exc)}") from exc
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
                raise TunnelError(f"SSH authentication with {where} failed: {describe_os_error(exc)}") from exc
            if transport.is_authenticated():
                log.debug("SSH %s@%s: authenticated with %s", res.user, where, fingerprint(key))
                return
            raise ConfigError(f"SSH server {where} wants more than a public key for {res.user!r} "
                              "(e.g. a second factor), which gwclient cannot provide")
        fps = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in self._gw_keys)
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
    return describe_os_error(exc)
