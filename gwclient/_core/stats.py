"""What a channel has done, counted: :class:`ChannelCounters` (plain ints owned by the
connection core, incremented under the channel's lock), the connect phases of each attempt,
and the frozen :class:`ConnectionStats` snapshot that
:meth:`GatewayConnection.stats() <gwclient.GatewayConnection.stats>` returns.  Pure: the
times come from the shell, which already has them.

Costs on the hot path: one or two ``+= 1`` on attributes of a ``__slots__`` object, in
code that already holds the channel lock (the connection core) or that only one thread runs
(the reader's control-frame branch, the timer's ping).  No lock of its own, no clock read
on the request path: the core is given the times it already has.

Counted where (all under the channel's lock unless noted):

* ``connects``: attempts started (``ConnectionCore._begin``), successful or not;
* ``requests``: request frames handed to the socket after hello-ok (callers' and the
  sticky re-subscriptions; never ``connect``);
* ``ok`` / ``errors``: answers and failures of requests by error code; failures that never
  reached the gateway count too (``PAUSED`` refusals, ``PAYLOAD_TOO_LARGE``, requests failed
  because nothing listened), timeouts as ``TIMEOUT``, requests pending when the socket
  dropped as ``DISCONNECTED``;
* ``events`` / ``gaps``: event frames delivered after hello-ok, sequence gaps seen;
* ``bytes_in`` / ``bytes_out``: text-frame payload bytes (websocket framing excluded);
* connect phases: the reader marks the start of the open and the :class:`OpenGuard`
  marks when TCP (and TLS) were up; the core marks the challenge and hello-ok;
* ``last_rtt``: from a keepalive ping (the timer thread marks the send) to its pong (the
  reader thread; pings are sent only when ``ping_interval`` or a short
  ``liveness_timeout`` asks for them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._errors import ClientClosed, Disconnected, GatewayError, GatewayTimeout

__all__ = ["ChannelCounters", "ConnectPhases", "ConnectionStats", "error_code", "idle_stats"]


@dataclass(frozen=True)
class ConnectPhases:
    """How long one successful connect took, phase by phase (seconds).

    ``tcp``: the TCP connect (to the SSH tunnel's local end in remote mode), ``None`` when
    websocket-client opened the socket itself (an explicit proxy); ``tls``: the TLS
    handshake (``None`` for ``ws://``); ``upgrade``: the HTTP websocket upgrade (with the
    proxy tunnel when there is one); ``challenge``: until ``connect.challenge`` arrived;
    ``hello``: from sending ``connect`` to ``hello-ok`` (the gateway's authentication);
    ``total``: all of it."""

    tcp: float | None
    tls: float | None
    upgrade: float
    challenge: float
    hello: float
    total: float

    def describe(self) -> str:
        """One line for people: ``tcp 0.4 ms, upgrade 1.2 ms, ... (total 9.8 ms)``."""
        parts = [(name, getattr(self, name)) for name in ("tcp", "tls", "upgrade", "challenge", "hello")]
        shown = ", ".join(f"{name} {_ms(value)}" for name, value in parts if value is not None)
        return f"{shown} (total {_ms(self.total)})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def error_code(error: BaseException) -> str:
    """The key an error is counted under: the gateway's code (``INVALID_REQUEST``...),
    ``TIMEOUT``, ``DISCONNECTED``, ``CLOSED``, else the exception's class name."""
    code = getattr(error, "code", None)
    if isinstance(code, str) and code:
        return code
    if isinstance(error, GatewayTimeout):
        return "TIMEOUT"
    if isinstance(error, Disconnected):
        return "DISCONNECTED"
    if isinstance(error, ClientClosed):
        return "CLOSED"
    return type(error).__name__ if isinstance(error, GatewayError) else "ERROR"


class ChannelCounters:
    """One channel's counters.  Not thread-safe by itself: every writer holds the channel's
    lock or is the only thread that writes that field (see the module docstring)."""

    __slots__ = (
        "_challenge_at",
        "_open",
        "_ping_at",
        "bytes_in",
        "bytes_out",
        "connects",
        "errors",
        "events",
        "first_connected",
        "gaps",
        "last_rtt",
        "ok",
        "pauses",
        "phases",
        "requests",
    )

    def __init__(self) -> None:
        self.connects = 0
        self.pauses = 0
        self.requests = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.events = 0
        self.gaps = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.phases: ConnectPhases | None = None
        self.last_rtt: float | None = None
        self.first_connected: float | None = None  # time.monotonic() of the first hello-ok
        self._open: tuple[float, tuple[float, ...], float] | None = None
        self._challenge_at = 0.0
        self._ping_at = 0.0

    # -- requests (connection core, under the lock) ------------------------------------------

    def answered(self, outcome: object) -> None:
        if isinstance(outcome, BaseException):
            self.failed(outcome)
        else:
            self.ok += 1

    def failed(self, error: BaseException, count: int = 1) -> None:
        if count:
            key = error_code(error)
            self.errors[key] = self.errors.get(key, 0) + count

    # -- connect phases -------------------------------------------------------------------

    def opened(self, started: float, marks: tuple[float, ...], now: float) -> None:
        """Reader thread, under the lock: the socket is open (``marks``: when TCP, then TLS,
        were up, from the :class:`~gwclient._engine.transport.OpenGuard`)."""
        self._open = (started, marks, now)
        self._challenge_at = 0.0

    def challenged(self, now: float) -> None:
        self._challenge_at = now

    def connected(self, now: float) -> ConnectPhases | None:
        """hello-ok accepted at ``now``: the phases of this connect (None if unknown)."""
        if self.first_connected is None:
            self.first_connected = now
        if self._open is None or not self._challenge_at:
            return None
        started, marks, opened = self._open
        tcp = marks[0] - started if marks else None
        tls = marks[1] - marks[0] if len(marks) > 1 else None
        upgrade = opened - (marks[-1] if marks else started)
        self.phases = ConnectPhases(tcp=tcp, tls=tls, upgrade=upgrade, challenge=self._challenge_at - opened,
                                    hello=now - self._challenge_at, total=now - started)
        self._open = None
        return self.phases

    # -- keepalive round trip -------------------------------------------------------------

    def ping_sending(self, now: float) -> None:
        """Timer thread (the only writer of the ping mark), before the ping goes out."""
        self._ping_at = now

    def control_frame(self, pong_at: float) -> None:
        """Reader thread, under the lock: a control frame arrived; ``pong_at`` is when the
        transport last read a pong (0.0 if it cannot tell)."""
        ping_at = self._ping_at
        if ping_at and pong_at >= ping_at:
            self.last_rtt = pong_at - ping_at
            self._ping_at = 0.0

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self, *, state: str, connection: int, pending: int, dropped: int, now: float,
                 wall: float) -> ConnectionStats:
        """Under the lock: a frozen copy (``now``: ``time.monotonic()``, ``wall``: ``time.time()``)."""
        since = None
        if self.first_connected is not None:
            since = wall - (now - self.first_connected)
        return ConnectionStats(
            state=state, connection=connection, connects=self.connects,
            reconnects=max(0, connection - 1), pauses=self.pauses, requests=self.requests, ok=self.ok,
            errors=MappingProxyType(dict(self.errors)), pending=pending, events=self.events, gaps=self.gaps,
            dropped=dropped, bytes_in=self.bytes_in, bytes_out=self.bytes_out, connect_phases=self.phases,
            last_rtt=self.last_rtt, since=since,
        )


@dataclass(frozen=True)
class ConnectionStats:
    """A snapshot of what one connection has done (:meth:`GatewayConnection.stats()
    <gwclient.GatewayConnection.stats>`).  Counters are totals since the channel (the
    socket of this config) was created; they never go down."""

    #: The connection state now (``"idle"``, ``"connected"``, ``"reconnecting"``...).
    state: str
    #: The number of the current (or last) socket that completed the handshake; 0 before.
    connection: int
    #: Connect attempts started, successful or not.
    connects: int
    #: Successful connects after the first (``connection - 1``).
    reconnects: int
    #: Times connecting paused (a refusal that retrying cannot fix).
    pauses: int
    #: Request frames sent after hello-ok (never ``connect``).
    requests: int
    #: Requests answered ``ok:true``.
    ok: int
    #: Failed requests by error code (gateway codes, ``TIMEOUT``, ``DISCONNECTED``...).
    errors: Mapping[str, int]
    #: Requests sent and not answered yet, plus those waiting for the connect.
    pending: int
    #: Event frames delivered after hello-ok.
    events: int
    #: Sequence gaps seen (:class:`SeqGap` pushes).
    gaps: int
    #: Events dropped by full subscription queues (all subscriptions of this connection).
    dropped: int
    #: Text-frame payload bytes received / sent.
    bytes_in: int
    bytes_out: int
    #: The phases of the last successful connect (None before the first).
    connect_phases: ConnectPhases | None
    #: The last keepalive ping's round trip in seconds (None if no ping was answered).
    last_rtt: float | None
    #: ``time.time()`` of the first successful connect (None before it).
    since: float | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (for ``--json`` output and status files)."""
        phases = self.connect_phases
        return {
            "state": self.state, "connection": self.connection, "connects": self.connects,
            "reconnects": self.reconnects, "pauses": self.pauses, "requests": self.requests, "ok": self.ok,
            "errors": dict(self.errors), "pending": self.pending, "events": self.events, "gaps": self.gaps,
            "dropped": self.dropped, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "connect_phases": None if phases is None else {
                "tcp": phases.tcp, "tls": phases.tls, "upgrade": phases.upgrade, "challenge": phases.challenge,
                "hello": phases.hello, "total": phases.total},
            "last_rtt": self.last_rtt, "since": self.since,
        }


def idle_stats(state: str) -> ConnectionStats:
    """The stats of a connection that never bound a channel (or was shut down)."""
    return ConnectionStats(state=state, connection=0, connects=0, reconnects=0, pauses=0, requests=0, ok=0,
                           errors=MappingProxyType({}), pending=0, events=0, gaps=0, dropped=0, bytes_in=0,
                           bytes_out=0, connect_phases=None, last_rtt=None, since=None)
