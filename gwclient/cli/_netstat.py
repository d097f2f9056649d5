"""Which processes on this machine hold TCP connections to the gateway port.

The OS side of ``gwclient connections``: it reads the connection table with psutil, keeps
the ESTABLISHED TCP connections whose *remote* port is the gateway port (client ends;
the gateway's own accepted sockets have it as their local port), and groups them by
process.  A process holding more than one is flagged as a duplicate: for one gateway
that usually means a client that opens a socket per call or leaks sockets.

Everything OS-specific goes through two seams, so the grouping is tested without a
network: ``table()`` (the raw connection rows and whether the table was complete) and
``describe(pid)`` (a process's name and command line).  Command lines are shown with
secrets redacted (``--token``/``--password`` values, ``*TOKEN=``/``*PASSWORD=``
assignments, ``token=`` URL query parameters).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

__all__ = [
    "ConnectionReport",
    "Endpoint",
    "ProcessConnections",
    "ProcessInfo",
    "RawConnection",
    "describe_process",
    "gateway_connections",
    "redact_cmdline",
    "system_table",
]

REDACTED = "***"
_SECRET_FLAGS = frozenset({"--token", "--password", "--gateway-token", "--gateway-password"})
_SECRET_FLAG_ASSIGN = re.compile(r"^(--(?:gateway-)?(?:token|password))=.*$", re.IGNORECASE)
_SECRET_ENV_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:TOKEN|PASSWORD|SECRET))=.*$", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"([?&](?:token|password|auth)=)[^&#\s]*", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RawConnection:
    """One row of the OS connection table (psutil's ``sconn``, trimmed)."""

    pid: int | None
    local: Endpoint | None
    remote: Endpoint | None
    status: str


@dataclass(frozen=True)
class ProcessInfo:
    """What could be read about a process.  ``access_denied``: the OS refused (another
    user's process); ``gone``: it exited between the table read and the look-up."""

    name: str | None = None
    cmdline: tuple[str, ...] | None = None
    access_denied: bool = False
    gone: bool = False


@dataclass(frozen=True)
class ProcessConnections:
    """The gateway connections of one process (``pid`` None: sockets the OS did not
    attribute to a process, e.g. another user's on Linux without root)."""

    pid: int | None
    info: ProcessInfo
    sockets: tuple[tuple[Endpoint, Endpoint], ...]

    @property
    def count(self) -> int:
        return len(self.sockets)

    @property
    def duplicate(self) -> bool:
        """More than one connection to the gateway port in one (known) process."""
        return self.pid is not None and self.count > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.info.name,
            "cmdline": list(self.info.cmdline) if self.info.cmdline is not None else None,
            "connections": self.count,
            "duplicate": self.duplicate,
            "accessDenied": self.info.access_denied,
            "sockets": [{"local": str(local), "remote": str(remote)} for local, remote in self.sockets],
        }


@dataclass(frozen=True)
class ConnectionReport:
    """Every process connected to ``port``.  ``complete`` is False when the OS hid part of
    the table (not root on macOS: only readable processes were scanned)."""

    port: int
    processes: tuple[ProcessConnections, ...] = ()
    complete: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def duplicates(self) -> tuple[ProcessConnections, ...]:
        return tuple(p for p in self.processes if p.duplicate)

    @property
    def total(self) -> int:
        return sum(p.count for p in self.processes)

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "total": self.total,
            "duplicates": len(self.duplicates),
            "complete": self.complete,
            "processes": [p.to_json() for p in self.processes],
        }


# ------------------------------------------------------------------ reading the OS


def _endpoint(addr: Any) -> Endpoint | None:
    if not addr:
        return None
    return Endpoint(str(addr[0]), int(addr[1]))


def _raw(conn: Any, pid: int | None) -> RawConnection:
    return RawConnection(pid, _endpoint(conn.laddr), _endpoint(conn.raddr), str(conn.status))


def system_table() -> tuple[list[RawConnection], bool]:
    """The machine's TCP/UDP connection table and whether it is complete.

    ``psutil.net_connections`` needs root on macOS (AccessDenied); then every process we
    may read is asked for its own connections instead, and the table is incomplete."""
    try:
        return [_raw(c, c.pid) for c in psutil.net_connections(kind="inet")], True
    except psutil.AccessDenied:
        pass
    rows: list[RawConnection] = []
    complete = True
    for proc in psutil.process_iter():
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:  # includes ZombieProcess
            continue
        except psutil.AccessDenied:
            complete = False
            continue
        rows.extend(_raw(c, proc.pid) for c in conns)
    return rows, complete


def describe_process(pid: int) -> ProcessInfo:
    """Name and command line of ``pid`` (``access_denied``/``gone`` instead of raising)."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return ProcessInfo(gone=True)
    name: str | None = None
    try:
        name = proc.name()
        cmdline = tuple(proc.cmdline())
    except psutil.NoSuchProcess:
        return ProcessInfo(name=name, gone=True)
    except psutil.AccessDenied:
        return ProcessInfo(name=name, access_denied=True)
    return ProcessInfo(name=name, cmdline=redact_cmdline(cmdline))


def redact_cmdline(args: Iterable[str]) -> tuple[str, ...]:
    """``args`` with secret values replaced by ``***`` (``--token X``, ``--token=X``,
    ``OPENCLAW_GATEWAY_TOKEN=X``, ``...?token=X``)."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.lower() in _SECRET_FLAGS:
            out.append(arg)
            hide_next = True
            continue
        shown = _SECRET_FLAG_ASSIGN.sub(rf"\1={REDACTED}", arg)
        shown = _SECRET_ENV_ASSIGN.sub(rf"\1={REDACTED}", shown)
        out.append(_SECRET_QUERY.sub(rf"\1{REDACTED}", shown))
    return tuple(out)


# ------------------------------------------------------------------------ grouping


def gateway_connections(
    port: int,
    *,
    table: Callable[[], tuple[Sequence[RawConnection], bool]] = system_table,
    describe: Callable[[int], ProcessInfo] = describe_process,
) -> ConnectionReport:
    """The ESTABLISHED TCP connections to ``port`` on this machine, grouped by process
    (sorted by pid; unattributed sockets last)."""
    rows, complete = table()
    by_pid: dict[int | None, list[tuple[Endpoint, Endpoint]]] = {}
    for row in rows:
        if row.status != psutil.CONN_ESTABLISHED or row.remote is None or row.local is None:
            continue
        if row.remote.port != port:
            continue
        by_pid.setdefault(row.pid, []).append((row.local, row.remote))
    processes: list[ProcessConnections] = []
    for pid in sorted(by_pid, key=lambda p: (p is None, p or 0)):
        info = describe(pid) if pid is not None else ProcessInfo(access_denied=True)
        processes.append(ProcessConnections(pid, info, tuple(sorted(by_pid[pid]))))
    notes: list[str] = []
    if not complete:
        notes.append("some processes could not be inspected (run as root to see every connection)")
    if None in by_pid:
        notes.append("some sockets belong to processes of other users (run as root to see which)")
    return ConnectionReport(port, tuple(processes), complete and None not in by_pid, tuple(notes))
