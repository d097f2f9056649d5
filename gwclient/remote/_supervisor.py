"""One SSH tunnel and its supervisor thread (``gwclient-tunnel-<local port>``): opens the
tunnel, watches the SSH connection, restarts it with backoff and gives up after the
manager's ``max_failures`` consecutive failures."""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._config.config import SshTunnelConfig
from .._errors import ClientClosed, ConfigError, GatewayError, GatewayTimeout, TunnelError

if TYPE_CHECKING:
    from ._forwarder import Forwarder
    from ._manager import RemoteTunnelManager

__all__ = ["TunnelState", "TunnelStatus"]

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


class Tunnel:
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
        self.fwd: Forwarder | None = None
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
            self.manager._announce(announce)
            fwd: Forwarder | None = None
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
                    limit = self.manager._max_failures
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
            if final_failure:
                log.warning("SSH tunnel %s: %s (not retrying until ensure() is called again)", self.where, error)
                failures = 0
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

    def _watch(self, fwd: Forwarder) -> bool:
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


