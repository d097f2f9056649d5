"""The public address, counters, events and faults of the DevGateway server base
(:class:`gwclient.testing._devgw_server.GatewayServerBase`), a mixin the base inherits."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from gwclient.testing._devgw_server import _Conn, _Lifetime

__all__: list[str] = []

_P = TypeVar("_P", bound="_GatewayServerPublic")


class _GatewayServerPublic:
    """Public state and controls of :class:`GatewayServerBase` (which provides what is
    declared below)."""

    # Set by GatewayServerBase.__init__.
    _host: str
    _port: int
    _ssl_context: ssl.SSLContext | None
    _lock: threading.RLock
    _cond: threading.Condition
    _lifetime: _Lifetime | None
    _ticking: bool
    _tick_lock: threading.Lock
    _conns: set[_Conn]
    _sockets_accepted: int
    _open_sockets: int
    _max_open_sockets: int
    _origin_headers_seen: int
    _upgrade_headers: list[list[tuple[str, str]]]
    _pings_received: int
    _lifetimes: int
    _per_lifetime: list[int]

    if TYPE_CHECKING:

        def _spawn(self, kind: str, target: Callable[..., Any], *args: Any) -> threading.Thread: ...
        def _handshaken(self) -> list[_Conn]: ...
        def _send_event(
            self, cs: _Conn, event: str, payload: Any = None, state_version: dict[str, int] | None = None
        ) -> bool: ...
        @staticmethod
        def _shutdown_socket(sock: socket.socket) -> None: ...

    # ------------------------------------------------------------------ public: address

    @property
    def host(self) -> str:
        """The listening host (127.0.0.1 by default)."""
        return self._host

    @property
    def port(self) -> int:
        """The listening port (the picked one once started; stable across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://<host>:<port>`` (``wss://`` with an ``ssl_context``)."""
        return f"{'wss' if self._ssl_context is not None else 'ws'}://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        """True while listening (False before start, in a restart window and after stop)."""
        with self._lock:
            return self._lifetime is not None

    # ------------------------------------------------------------------ public: counters

    @property
    def sockets_accepted(self) -> int:
        """TCP connections accepted, over all lifetimes."""
        with self._lock:
            return self._sockets_accepted

    @property
    def open_sockets(self) -> int:
        """Accepted TCP sockets not yet fully closed on the server side."""
        with self._lock:
            return self._open_sockets

    @property
    def max_open_sockets(self) -> int:
        """Peak of :attr:`open_sockets`."""
        with self._lock:
            return self._max_open_sockets

    @property
    def handshaken_connections(self) -> int:
        """Connections currently past hello-ok (the targets of :meth:`broadcast`)."""
        with self._lock:
            return sum(1 for cs in self._conns if cs.handshaken)

    @property
    def origin_headers_seen(self) -> int:
        """Upgrade requests that carried an ``Origin`` header."""
        with self._lock:
            return self._origin_headers_seen

    @property
    def upgrade_headers(self) -> list[list[tuple[str, str]]]:
        """The headers of every websocket upgrade request received, oldest first (they
        may hold secrets: edge-auth headers)."""
        with self._lock:
            return [list(h) for h in self._upgrade_headers]

    @property
    def pings_received(self) -> int:
        """Websocket ping frames received from clients (keepalive), over all lifetimes."""
        with self._lock:
            return self._pings_received

    def _count_ping(self) -> None:
        with self._cond:
            self._pings_received += 1
            self._cond.notify_all()

    @property
    def lifetimes(self) -> int:
        """Number of times the gateway started listening (1 + restarts)."""
        with self._lock:
            return self._lifetimes

    @property
    def sockets_accepted_per_lifetime(self) -> list[int]:
        """:attr:`sockets_accepted` split by lifetime."""
        with self._lock:
            return list(self._per_lifetime)

    def wait_for(self: _P, predicate: Callable[[_P], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` is true (re-checked on every state change:
        counters, connection open/close, requests, pairing); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # ------------------------------------------------------------------ public: events

    def broadcast(self, event: str, payload: Any = None, *, state_version: dict[str, int] | None = None) -> int:
        """Send an event (with the per-connection ``seq``) to every handshaken
        connection; returns how many got it."""
        return sum(1 for cs in self._handshaken() if self._send_event(cs, event, payload, state_version))

    def skip_seq(self, n: int = 1) -> None:
        """Make the next event on each currently handshaken connection skip ``n``
        sequence numbers (a gap, as when a slow consumer's event is dropped)."""
        for cs in self._handshaken():
            with cs.send_lock:
                cs.pending_skip += n

    def stop_ticking(self) -> None:
        """Stop sending ``tick`` events (to trigger the client's tick watchdog).
        No tick is sent after this returns."""
        with self._tick_lock:
            self._ticking = False

    def start_ticking(self) -> None:
        """Resume ``tick`` events."""
        with self._tick_lock:
            self._ticking = True

    def send_raw(self, text: str | bytes) -> int:
        """Send ``text`` verbatim to every handshaken connection: a text frame for a
        ``str``, a binary frame for ``bytes``."""
        count = 0
        for cs in self._handshaken():
            with cs.send_lock:
                try:
                    cs.ws.send(text)
                    count += 1
                except (ConnectionClosed, OSError):
                    pass
        return count

    # ------------------------------------------------------------------ public: faults

    def drop_connections(self, timeout: float = 5.0) -> int:
        """Kill every socket without a close frame (TCP shutdown); the client sees
        an abnormal closure. Waits until the server side has let go of them."""
        with self._lock:
            lt = self._lifetime
            if lt is None:
                return 0
            items = set(lt.tracked)
        for item in items:
            self._shutdown_socket(item.sock)
        self.wait_for(lambda _gw: not (items & lt.tracked), timeout)
        return len(items)

    def close_connections(self, code: int = 1000, reason: str = "", *, wait: bool = False) -> int:
        """Close every open WebSocket with a close frame ``(code, reason)``.

        Returns at once unless ``wait`` (then after each closing handshake, or
        ``close_timeout``, completes).
        """
        with self._lock:
            conns = [cs.ws for cs in self._conns]
        closers = [self._spawn("close", ws.close, code, reason) for ws in conns]
        if wait:
            for closer in closers:
                closer.join()
        return len(closers)
