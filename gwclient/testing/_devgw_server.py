"""The websocket server of :class:`~gwclient.testing.DevGateway` (:class:`GatewayServer`).

Listening socket, one ``devgw-conn-N`` thread per accepted socket (WebSocket
upgrade via ``websockets``' sync ``ServerConnection``), the open connections and
their ``seq``, broadcasts, ticks, restarts, transport faults (drop, close, seq
gaps, raw frames), the socket counters and a complete, synchronous shutdown.
The protocol itself (handshake, auth, methods) is the ``serve(conn)`` callable
the gateway hands in: the server knows nothing of it.
"""

from __future__ import annotations

import itertools
import json
import logging
import selectors
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.sync.server import Server, ServerConnection

from gwclient.testing._devgw_proto import MAX_PAYLOAD

__all__ = ["GatewayServer"]

_log = logging.getLogger("gwclient.testing.devgateway")
_ws_log = logging.getLogger("gwclient.testing.devgateway.ws")
_thread_ids = itertools.count(1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tname(kind: str) -> str:
    return f"devgw-{kind}-{next(_thread_ids)}"


class _CountingProtocol(ServerProtocol):
    """ServerProtocol that reports each websocket ping a client sends."""

    def __init__(self, on_ping: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_ping = on_ping

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            self._on_ping()
        super().recv_frame(frame)


class _DevServerConnection(ServerConnection):
    """ServerConnection whose helper threads carry ``devgw-`` names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.devgw_origin: str | None = None
        super().__init__(*args, **kwargs)
        self.recv_events_thread.name = _tname("recv")

    def start_keepalive(self) -> None:
        super().start_keepalive()
        if self.keepalive_thread is not None:
            self.keepalive_thread.name = _tname("keepalive")


class _ServerStub:
    """What ServerConnection.handshake() reads from its server: ``socket_closed``."""

    def __init__(self) -> None:
        self.socket_closed = threading.Event()


@dataclass(eq=False)
class _Conn:
    """One WebSocket connection (after the HTTP upgrade)."""

    ws: _DevServerConnection
    conn_id: str
    nonce: str
    origin: str | None
    send_lock: threading.RLock = field(default_factory=threading.RLock)
    closed: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    pending_skip: int = 0
    handshaken: bool = False
    client: dict[str, Any] = field(default_factory=dict)
    role: str = ""
    scopes: list[str] = field(default_factory=list)
    auth_method: str = ""
    device_id: str | None = None
    connected_at_ms: int = 0


@dataclass(eq=False)
class _Tracked:
    """One accepted TCP socket and what became of it."""

    sock: socket.socket
    conn: _DevServerConnection | None = None
    state: _Conn | None = None


@dataclass(eq=False)
class _Lifetime:
    """One listening period (start() or restart_end() until stop()/restart_begin())."""

    index: int
    listener: socket.socket
    wake_r: socket.socket
    wake_w: socket.socket
    stub: _ServerStub = field(default_factory=_ServerStub)
    accept_thread: threading.Thread | None = None
    handler_threads: set[threading.Thread] = field(default_factory=set)
    tracked: set[_Tracked] = field(default_factory=set)
    stopping: bool = False


class GatewayServer:
    """Threaded loopback WebSocket server with lifetimes (restarts) and broadcasts.

    ``serve(conn)`` runs in each upgraded connection's ``devgw-conn`` thread (the
    connection is registered before and removed after; a ``ConnectionClosed`` out of it
    is a normal end).  ``cond`` is the gateway's monitor: the server guards its state
    with it and notifies it on every change, so ``wait_for`` predicates see them.
    """

    def __init__(
        self,
        *,
        serve: Callable[[_Conn], None],
        cond: threading.Condition,
        host: str,
        port: int,
        tick_interval_ms: int,
        ping_interval: float | None,
        close_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if tick_interval_ms <= 0:
            raise ValueError("tick_interval_ms must be positive")
        self._serve = serve
        self._host = host
        self._port = port
        self._tick_interval_ms = tick_interval_ms
        self._ping_interval = ping_interval
        self._close_timeout = close_timeout
        self._ssl_context = ssl_context

        self._cond = cond
        self._life_lock = threading.Lock()
        self._closing = threading.Event()  # set by stop(): ends the ticker and delays
        self._threads: set[threading.Thread] = set()
        self._lifetime: _Lifetime | None = None
        self._started = False
        self._stopped = False
        self._start_monotonic = time.monotonic()
        self._ticker: threading.Thread | None = None
        self._ticking = True
        self._tick_lock = threading.Lock()  # stop_ticking() returns only between ticks
        self._conns: set[_Conn] = set()

        self._sockets_accepted = 0
        self._open_sockets = 0
        self._max_open_sockets = 0
        self._origin_headers_seen = 0
        self._upgrade_headers: list[list[tuple[str, str]]] = []
        self._client_closes: list[int | None] = []
        self._pings_received = 0
        self._lifetimes = 0
        self._per_lifetime: list[int] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind and start serving (idempotent)."""
        with self._life_lock:
            if self._stopped:
                raise RuntimeError("DevGateway was stopped; create a new one")
            if self._started:
                return
            self._started = True
            self._begin_lifetime()
            self._ticker = self.spawn("ticker", self._tick_loop)

    def stop(self) -> None:
        """Broadcast ``shutdown {reason:"gateway stopping"}``, close every socket
        1012 "service restart", stop listening and join every thread. Idempotent."""
        with self._life_lock:
            if self._stopped:
                return
            self._stopped = True
            if self._lifetime is not None:
                self._end_lifetime({"reason": "gateway stopping"})
            self._closing.set()
            with self._cond:
                self._cond.notify_all()
            self._join_all()

    def restart(self, *, down_for: float | None = None, restart_expected_ms: int = 1500) -> None:
        """Simulate a gateway restart and block until listening again.

        Broadcasts ``shutdown {reason:"gateway restarting", restartExpectedMs}``,
        closes every socket 1012 "service restart", stops listening (connections
        are refused), waits ``down_for`` seconds (Event wait; cut short by
        :meth:`stop`) and listens again on the same port.
        """
        self.restart_begin(restart_expected_ms=restart_expected_ms)
        if down_for:
            self._closing.wait(down_for)
        if not self._closing.is_set():
            self.restart_end()

    def restart_begin(self, *, restart_expected_ms: int = 1500) -> None:
        """First half of :meth:`restart`: on return the port refuses connections."""
        with self._life_lock:
            if self._lifetime is None or self._stopped:
                raise RuntimeError("DevGateway is not running")
            self._end_lifetime({"reason": "gateway restarting", "restartExpectedMs": restart_expected_ms})

    def restart_end(self) -> None:
        """Second half of :meth:`restart`: listen again on the same port."""
        with self._life_lock:
            if self._lifetime is not None or self._stopped or not self._started:
                raise RuntimeError("DevGateway is not in a restart window")
            self._begin_lifetime()

    def _begin_lifetime(self) -> None:
        listener = socket.create_server((self._host, self._port), backlog=128)
        listener.setblocking(False)
        self._port = listener.getsockname()[1]
        wake_r, wake_w = socket.socketpair()
        with self._cond:
            self._lifetimes += 1
            self._per_lifetime.append(0)
            lt = _Lifetime(self._lifetimes, listener, wake_r, wake_w)
            self._lifetime = lt
            self._cond.notify_all()
        lt.accept_thread = self.spawn("accept", self._accept_loop, lt)
        _log.info("devgateway listening on %s (lifetime %d)", self.url, lt.index)

    def _end_lifetime(self, shutdown_payload: dict[str, Any]) -> None:
        lt = self._lifetime
        assert lt is not None
        with self._tick_lock:  # no tick may follow the shutdown event
            with self._cond:
                lt.stopping = True
                lt.stub.socket_closed.set()
            self.broadcast("shutdown", shutdown_payload)
        lt.wake_w.send(b"x")
        if lt.accept_thread is not None:
            lt.accept_thread.join()
        lt.listener.close()
        lt.wake_r.close()
        lt.wake_w.close()
        with self._cond:
            tracked = list(lt.tracked)
        closers = []
        for item in tracked:
            conn = item.conn
            if conn is not None and conn.protocol.state is State.OPEN:
                closers.append(self.spawn("close", conn.close, 1012, "service restart"))
            elif conn is None or conn.protocol.state is State.CONNECTING:
                self._shutdown_socket(item.sock)
        for closer in closers:
            closer.join()
        for thread in list(lt.handler_threads):
            if thread is not threading.current_thread():
                thread.join()
        with self._cond:
            self._lifetime = None
            self._cond.notify_all()
        self._join_all(keep_ticker=True)
        _log.info("devgateway lifetime %d ended", lt.index)

    def spawn(self, kind: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
        """Start a ``devgw-<kind>-N`` thread that :meth:`stop` (and a restart) joins."""
        thread = threading.Thread(target=target, args=args, name=_tname(kind), daemon=True)
        with self._cond:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()
        return thread

    def _join_all(self, *, keep_ticker: bool = False) -> None:
        current = threading.current_thread()
        while True:
            with self._cond:
                pending = [
                    t
                    for t in self._threads
                    if t is not current and t.is_alive() and not (keep_ticker and t is self._ticker)
                ]
            if not pending:
                return
            for thread in pending:
                thread.join()

    # ------------------------------------------------------------------ address

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
        with self._cond:
            return self._lifetime is not None

    # ------------------------------------------------------------------ counters

    @property
    def sockets_accepted(self) -> int:
        """TCP connections accepted, over all lifetimes."""
        with self._cond:
            return self._sockets_accepted

    @property
    def open_sockets(self) -> int:
        """Accepted TCP sockets not yet fully closed on the server side."""
        with self._cond:
            return self._open_sockets

    @property
    def max_open_sockets(self) -> int:
        """Peak of :attr:`open_sockets`."""
        with self._cond:
            return self._max_open_sockets

    @property
    def handshaken_connections(self) -> int:
        """Connections currently past hello-ok (the targets of :meth:`broadcast`)."""
        with self._cond:
            return sum(1 for cs in self._conns if cs.handshaken)

    def connections(self) -> list[dict[str, Any]]:
        """Info about handshaken connections (see ``DevGateway.connections``)."""
        with self._cond:
            return [
                {
                    "connId": cs.conn_id,
                    "client": dict(cs.client),
                    "role": cs.role,
                    "scopes": list(cs.scopes),
                    "authMethod": cs.auth_method,
                    "deviceId": cs.device_id,
                    "origin": cs.origin,
                    "lastSeq": cs.seq,
                }
                for cs in self._conns
                if cs.handshaken
            ]

    @property
    def origin_headers_seen(self) -> int:
        """Upgrade requests that carried an ``Origin`` header."""
        with self._cond:
            return self._origin_headers_seen

    @property
    def client_close_codes(self) -> list[int | None]:
        """For every connection that ended: the close code the client sent (``None``: the
        socket ended without a close frame from the client)."""
        with self._cond:
            return list(self._client_closes)

    @property
    def upgrade_headers(self) -> list[list[tuple[str, str]]]:
        """The headers of every websocket upgrade request received, oldest first."""
        with self._cond:
            return [list(h) for h in self._upgrade_headers]

    @property
    def pings_received(self) -> int:
        """Websocket ping frames received from clients (keepalive), over all lifetimes."""
        with self._cond:
            return self._pings_received

    def _count_ping(self) -> None:
        with self._cond:
            self._pings_received += 1
            self._cond.notify_all()

    @property
    def lifetimes(self) -> int:
        """Number of times the gateway started listening (1 + restarts)."""
        with self._cond:
            return self._lifetimes

    @property
    def sockets_accepted_per_lifetime(self) -> list[int]:
        """:attr:`sockets_accepted` split by lifetime."""
        with self._cond:
            return list(self._per_lifetime)

    # ------------------------------------------------------------------ events

    def broadcast(self, event: str, payload: Any = None, *, state_version: dict[str, int] | None = None) -> int:
        """Send an event (with the per-connection ``seq``) to every handshaken
        connection; returns how many got it."""
        return sum(1 for cs in self.handshaken() if self.send_event(cs, event, payload, state_version))

    def clear_skips(self) -> None:
        """Forget the pending :meth:`skip_seq` gaps."""
        for cs in self.handshaken():
            with cs.send_lock:
                cs.pending_skip = 0

    def skip_seq(self, n: int = 1) -> None:
        """Make the next event on each currently handshaken connection skip ``n``
        sequence numbers (a gap, as when a slow consumer's event is dropped)."""
        for cs in self.handshaken():
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
        for cs in self.handshaken():
            with cs.send_lock:
                try:
                    cs.ws.send(text)
                    count += 1
                except (ConnectionClosed, OSError):
                    pass
        return count

    # ------------------------------------------------------------------ faults

    def drop_connections(self, timeout: float = 5.0) -> int:
        """Kill every socket without a close frame (TCP shutdown); the client sees
        an abnormal closure. Waits until the server side has let go of them."""
        with self._cond:
            lt = self._lifetime
            if lt is None:
                return 0
            items = set(lt.tracked)
        for item in items:
            self._shutdown_socket(item.sock)
        with self._cond:
            self._cond.wait_for(lambda: not (items & lt.tracked), timeout)
        return len(items)

    def close_connections(self, code: int = 1000, reason: str = "", *, wait: bool = False) -> int:
        """Close every open WebSocket with a close frame ``(code, reason)``.

        Returns at once unless ``wait`` (then after each closing handshake, or
        ``close_timeout``, completes).
        """
        with self._cond:
            conns = [cs.ws for cs in self._conns]
        closers = [self.spawn("close", ws.close, code, reason) for ws in conns]
        if wait:
            for closer in closers:
                closer.join()
        return len(closers)

    def close_handshaken(self, code: int, reason: str, device_id: str | None = None) -> None:
        """Close the handshaken connections (of one device) ``(code, reason)`` from
        ``devgw-close`` threads; returns at once."""
        for cs in self.handshaken():
            if device_id is None or cs.device_id == device_id:
                self.spawn("close", cs.ws.close, code, reason)

    # ------------------------------------------------------------------ for the protocol

    @property
    def tick_interval_ms(self) -> int:
        return self._tick_interval_ms

    @property
    def closing(self) -> bool:
        """True once :meth:`stop` began (run threads and delays end)."""
        return self._closing.is_set()

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self._start_monotonic) * 1000)

    # ------------------------------------------------------------------ transport

    def _accept_loop(self, lt: _Lifetime) -> None:
        selector = selectors.DefaultSelector()
        selector.register(lt.listener, selectors.EVENT_READ, "listen")
        selector.register(lt.wake_r, selectors.EVENT_READ, "wake")
        try:
            while True:
                events = selector.select()
                if any(key.data == "wake" for key, _ in events):
                    return
                try:
                    sock, _addr = lt.listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                sock.setblocking(True)
                with self._cond:
                    if lt.stopping:
                        sock.close()
                        continue
                    item = _Tracked(sock)
                    lt.tracked.add(item)
                    self._sockets_accepted += 1
                    self._per_lifetime[-1] += 1
                    self._open_sockets += 1
                    self._max_open_sockets = max(self._max_open_sockets, self._open_sockets)
                    self._cond.notify_all()
                    thread = threading.Thread(
                        target=self._serve_socket, args=(lt, item), name=_tname("conn"), daemon=True
                    )
                    lt.handler_threads.add(thread)
                    self._threads.add(thread)
                thread.start()
        finally:
            selector.close()

    def _serve_socket(self, lt: _Lifetime, item: _Tracked) -> None:
        conn: _DevServerConnection | None = None
        try:
            item.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                # TLS handshake in this connection's own thread (bounded by a timeout).
                item.sock.settimeout(10.0)
                wrapped = self._ssl_context.wrap_socket(item.sock, server_side=True)
                wrapped.settimeout(None)
                with self._cond:
                    item.sock = wrapped
            protocol = _CountingProtocol(self._count_ping, max_size=MAX_PAYLOAD, logger=_ws_log)
            conn = _DevServerConnection(
                item.sock,
                protocol,
                cast(Server, lt.stub),
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_interval,
                close_timeout=self._close_timeout,
            )
            with self._cond:
                item.conn = conn
            conn.handshake(self._process_request, None, "openclaw-devgateway", 10.0)
            if conn.protocol.state is not State.OPEN:
                conn.close_socket()
                return
            conn.start_keepalive()
            with conn:
                try:
                    self._run_connection(lt, item, conn)
                except ConnectionClosed:
                    pass
                except Exception:  # a DevGateway bug: make it loud, never a clean close
                    _log.exception("devgateway connection handler failed")
                    conn.close(1011, "devgateway internal error")
        except (OSError, TimeoutError, ConnectionClosed):
            _log.debug("connection failed", exc_info=True)
            if conn is not None:
                conn.close_socket()
        except Exception:
            _log.exception("devgateway connection setup failed")
            if conn is not None:
                conn.close_socket()
        finally:
            if conn is None:
                item.sock.close()
            else:
                conn.recv_events_thread.join()
                if conn.keepalive_thread is not None:
                    conn.keepalive_thread.join()
            with self._cond:
                lt.tracked.discard(item)
                self._open_sockets -= 1
                self._cond.notify_all()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if isinstance(connection, _DevServerConnection):
            connection.devgw_origin = origin
        with self._cond:
            self._upgrade_headers.append(list(request.headers.raw_items()))
            if origin is not None:
                self._origin_headers_seen += 1
            self._cond.notify_all()
        return None

    @staticmethod
    def _shutdown_socket(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run_connection(self, lt: _Lifetime, item: _Tracked, ws: _DevServerConnection) -> None:
        """Register one upgraded connection, ``serve`` it, unregister it (its thread)."""
        cs = _Conn(ws=ws, conn_id=str(uuid.uuid4()), nonce=str(uuid.uuid4()), origin=ws.devgw_origin)
        with self._cond:
            item.state = cs
            self._conns.add(cs)
            stopping = lt.stopping
            self._cond.notify_all()
        try:
            if stopping:
                ws.close(1012, "service restart")
                return
            self._serve(cs)
        except ConnectionClosed as exc:
            with self._cond:
                self._client_closes.append(exc.rcvd.code if exc.rcvd is not None else None)
        finally:
            cs.closed.set()
            with self._cond:
                cs.handshaken = False
                self._conns.discard(cs)
                self._cond.notify_all()

    # ------------------------------------------------------------------ sending

    def send(self, cs: _Conn, frame: dict[str, Any]) -> bool:
        """Send one JSON frame; False if the connection is gone."""
        text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: escape them, as JSON.stringify does
            text = json.dumps(frame, separators=(",", ":"))
        with cs.send_lock:
            try:
                cs.ws.send(text)
            except (ConnectionClosed, OSError):
                return False
        return True

    def send_event(
        self,
        cs: _Conn,
        event: str,
        payload: Any = None,
        state_version: dict[str, int] | None = None,
    ) -> bool:
        with cs.send_lock:
            if cs.closed.is_set():
                return False
            cs.seq += 1 + cs.pending_skip
            cs.pending_skip = 0
            frame: dict[str, Any] = {"type": "event", "event": event}
            if payload is not None:
                frame["payload"] = payload
            frame["seq"] = cs.seq
            if state_version is not None:
                frame["stateVersion"] = dict(state_version)
            return self.send(cs, frame)

    def send_res(self, cs: _Conn, req_id: Any, ok: bool, body: Any) -> bool:
        frame: dict[str, Any] = {"type": "res", "id": req_id, "ok": ok}
        if body is not None:  # a handler returning None: no payload key (JS undefined)
            frame["payload" if ok else "error"] = body
        return self.send(cs, frame)

    def handshaken(self) -> list[_Conn]:
        """The connections past hello-ok (a snapshot)."""
        with self._cond:
            return [cs for cs in self._conns if cs.handshaken]

    def _tick_loop(self) -> None:
        interval = self._tick_interval_ms / 1000.0
        next_at = time.monotonic() + interval
        while not self._closing.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + interval, time.monotonic())
            with self._tick_lock:
                lt = self._lifetime
                if self._ticking and lt is not None and not lt.stopping:
                    self.broadcast("tick", {"ts": _now_ms()})
