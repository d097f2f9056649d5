"""One SSH tunnel and its supervisor thread (``gwclient-tunnel-<local port>``): opens the
tunnel, watches the SSH connection, restarts it with backoff and gives up after the
manager's ``max_failures`` consecutive failures.

A :class:`Tunnel` gets what it needs from its manager through a :class:`TunnelHost` handed
in at construction (the retry policy, the backoff wait, where to announce a status change
and how to build a forwarder); it owns its own state, the forwarder being started
included, and knows nothing else of the manager.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._config.config import SshTunnelConfig
from .._core.retry import RetryPolicy
from .._errors import ClientClosed, ConfigError, GatewayError, GatewayTimeout, TunnelError

__all__ = ["Tunnel", "TunnelForwarder", "TunnelHost", "TunnelState", "TunnelStatus"]

log = logging.getLogger("gwclient.tunnel")
LOCAL_HOST = "127.0.0.1"


class TunnelState(enum.Enum):
    STARTING = "starting"   #: an explicitly requested attempt is under way
    UP = "up"               #: forwarding
    EXTERNAL = "external"   #: the local port was already listening (someone else's tunnel); reused
    DOWN = "down"           #: failed or lost; retried with backoff in the background
    FAILED = "failed"       #: a ConfigError, or max_failures reached; not retried until ensure() is called again
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


class TunnelForwarder(Protocol):
    """What a tunnel does with the SSH forwarder (``_forwarder.Forwarder``, imported only
    when a tunnel is opened: it needs paramiko and sshtunnel)."""

    def gw_start(self) -> None: ...
    def gw_transport(self) -> Any: ...
    def gw_abort(self) -> None: ...
    def gw_close(self, timeout: float = ...) -> None: ...


class TunnelHost(Protocol):
    """What a :class:`Tunnel` needs from the manager that owns it (passed at construction).

    * ``retry`` / ``max_failures``: the backoff between attempts and when to give up;
    * ``wait(event, seconds)``: the backoff wait (returns once ``event`` is set);
    * ``announce(status)``: publish a status change (called on the supervisor thread, no
      lock held);
    * ``forwarder(ssh, local_port)``: a context that yields a new, unstarted forwarder
      (and keeps what its start needs, e.g. an ssh-agent connection, until it exits);
      raises :class:`ConfigError` for settings that cannot work.
    """

    @property
    def retry(self) -> RetryPolicy: ...
    @property
    def max_failures(self) -> int | None: ...
    def wait(self, event: threading.Event, seconds: float) -> object: ...
    def announce(self, status: TunnelStatus) -> None: ...
    def forwarder(self, ssh: SshTunnelConfig, local_port: int) -> AbstractContextManager[TunnelForwarder]: ...


class Tunnel:
    """One tunnel and its supervisor thread (``gwclient-tunnel-<port>``)."""

    def __init__(self, host: TunnelHost, ssh: SshTunnelConfig, local_port: int,
                 external: bool = False) -> None:
        self._host = host
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
        self.fwd: TunnelForwarder | None = None
        self._starting: TunnelForwarder | None = None  # the forwarder of the attempt under way
        self.thread: threading.Thread | None = None
        if not external:
            self.thread = threading.Thread(target=self._run, name=f"gwclient-tunnel-{local_port}", daemon=True)

    @property
    def where(self) -> str:
        ssh = self.ssh
        return f"{LOCAL_HOST}:{self.local_port} -> {ssh.target}:{ssh.port} -> 127.0.0.1:{ssh.remote_port}"

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

    def _announce(self, status: TunnelStatus | None) -> None:
        if status is not None:
            self._host.announce(status)

    # -- supervisor ------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            final_failure = False  # a ConfigError, or max_failures reached: wait for ensure()
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
            self._announce(announce)
            fwd: TunnelForwarder | None = None
            error: GatewayError | None = None
            try:
                fwd = self._open()
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
                    limit = self._host.max_failures
                    final_failure = isinstance(error, ConfigError)
                    if not final_failure and limit is not None and failures >= limit:
                        gave_up = TunnelError(f"gave up after {failures} failed attempts in a row: {error}")
                        gave_up.__cause__ = error
                        error, final_failure = gave_up, True
                    state = TunnelState.FAILED if final_failure else TunnelState.DOWN
                    announce = self._set(state, str(error), error)
                self.cond.notify_all()
            if self.stopping:
                if fwd is not None:
                    fwd.gw_close()
                break
            self._announce(announce)
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
                self._announce(announce)
            if final_failure:
                log.warning("SSH tunnel %s: %s (not retrying until ensure() is called again)", self.where, error)
                failures = 0
                self.wake.wait()  # until ensure() kicks or stop()
                continue
            if error is not None:
                log.info("SSH tunnel %s: %s", self.where, error)
            delay = self._host.retry.delay(max(0, failures - 1))
            if not self.wake.is_set():
                self._host.wait(self.wake, delay)
        with self.cond:
            self.state, self.detail, self.error = TunnelState.STOPPED, "stopped", None
            self.cond.notify_all()
            final = TunnelStatus(self.ssh, self.local_port, TunnelState.STOPPED, "stopped", None, self.started)
        self._announce(final)

    def _open(self) -> TunnelForwarder:
        """One attempt, on the supervisor thread: a started forwarder, or raise.  While it
        starts, :meth:`stop` can abort it (``self._starting``)."""
        with self._host.forwarder(self.ssh, self.local_port) as fwd:
            with self.cond:
                stopping = self.stopping
                if not stopping:
                    self._starting = fwd
            try:
                if stopping:
                    raise ClientClosed("the SSH tunnel was stopped")
                fwd.gw_start()
            except BaseException:
                fwd.gw_close()
                raise
            finally:
                with self.cond:
                    self._starting = None
        return fwd

    def _watch(self, fwd: TunnelForwarder) -> bool:
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

    def begin_stop(self) -> None:
        """Mark the tunnel stopping and wake its supervisor (returns at once)."""
        with self.cond:
            self.stopping = True
            self.wake.set()
            self.cond.notify_all()

    def stop(self, deadline: float) -> None:
        """Stop the tunnel: abort its SSH connection (or the one being opened) and join
        the supervisor until ``deadline``."""
        self.begin_stop()
        with self.cond:
            forwarders = [f for f in (self.fwd, self._starting) if f is not None]
        for fwd in forwarders:
            fwd.gw_abort()
        if self.thread is not None and self.thread is not threading.current_thread() and self.thread.ident:
            self.thread.join(max(0.0, deadline - time.monotonic()))
            if self.thread.is_alive():
                log.warning("SSH tunnel supervisor %s still running", self.thread.name)
        if self.thread is None:  # external: nothing of ours to stop
            with self.cond:
                self.state, self.detail = TunnelState.STOPPED, "stopped"
