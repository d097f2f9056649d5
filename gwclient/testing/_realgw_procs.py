"""Process and port helpers of the real-gateway helper (:mod:`gwclient.testing._realgateway`):
port checks, descendant tracking with psutil, and the ``weakref.finalize`` cleanup."""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gwclient.testing._openclaw_install import RealGatewayError

if TYPE_CHECKING:
    import psutil  # imported where used: `install` needs only the standard library

__all__ = ["port_problem"]

_DEFAULT_GATEWAY_PORT = 18789  # a developer's real gateway: never picked automatically
_PORT_SPAN = 2  # openclaw <= 2026.5.12 also listens on port + 2


# --------------------------------------------------------------------------------------
# Processes


def _port_free(family: socket.AddressFamily, host: str, port: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As Node binds: connections in TIME_WAIT (after a restart) do not block the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        # No IPv6 on this host: the gateway's [::1] listener is moot.
        return family == socket.AF_INET6 and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)
    return True


def port_problem(port: int) -> str | None:
    """Why *port* cannot take a gateway (``None`` when it can).

    The gateway listens on 127.0.0.1 and ::1; openclaw 2026.5.12 and older also on
    ``port + 2`` (their browser-control listener), so that one must be free too.
    """
    if not 0 < port <= 65535 - _PORT_SPAN:
        return f"port {port} is out of range (1-{65535 - _PORT_SPAN}: the gateway also uses port+{_PORT_SPAN})"
    for p in (port, port + _PORT_SPAN):
        if not (_port_free(socket.AF_INET, "127.0.0.1", p) and _port_free(socket.AF_INET6, "::1", p)):
            also = "" if p == port else f" (the gateway also uses port+{_PORT_SPAN})"
            return f"port {p} is in use on loopback{also}"
    return None


def _free_loopback_port() -> int:
    """A port free on 127.0.0.1 and ::1 (the gateway listens on both), with ``port + 2`` free
    as well (older gateways listen there too), never 18789."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != _DEFAULT_GATEWAY_PORT and port_problem(port) is None:
            return port
    raise RealGatewayError("could not find a free loopback port")


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            out[key] = _deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _alive(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _end_processes(procs: Sequence[psutil.Process], timeout: float) -> None:
    """Wait up to *timeout* for *procs* to exit on their own, then SIGTERM, then SIGKILL."""
    import psutil

    alive = [p for p in procs if _alive(p)]
    if not alive:
        return
    _gone, alive = psutil.wait_procs(alive, timeout=timeout)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive:
            return
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _gone, alive = psutil.wait_procs(alive, timeout=5)
    if alive:
        raise RealGatewayError(f"processes {[p.pid for p in alive]} survived SIGKILL")


@dataclass
class _Runtime:
    """State shared with the ``weakref.finalize`` hook (which must not reference the owner)."""

    proc: subprocess.Popen[bytes] | None = None
    descendants: list[psutil.Process] = field(default_factory=list)
    temp_home: Path | None = None


def _emergency_cleanup(rt: _Runtime) -> None:
    """Finalizer: kill a gateway left running and remove the temporary home."""
    import psutil

    proc = rt.proc
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for child in rt.descendants:
        if _alive(child):
            with contextlib.suppress(psutil.Error):
                child.kill()
    rt.proc = None
    if rt.temp_home is not None:
        shutil.rmtree(rt.temp_home, ignore_errors=True)
        rt.temp_home = None
