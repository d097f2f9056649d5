"""The transport seam: opening a gateway websocket and the blocking calls on it.

Every gateway websocket is opened through :func:`open_transport` (or a test's replacement
passed as ``transport_factory``), so tests can count and control sockets.  The default
opens a websocket-client ``WebSocket`` **without an Origin header** (an Origin makes the
gateway treat the client as a browser: no silent local pairing, scopes stripped) on a TCP
socket gwclient creates itself, which has three consequences, each on purpose:

* proxy variables from the environment are never applied (websocket-client skips its
  proxy logic for a given socket, and it has no loopback exemption of its own);
* the socket exists before the upgrade, so :meth:`OpenGuard.abort` can shut it down while
  the upgrade stalls (a peer that accepts TCP and never answers): connect honours the
  caller's deadline and ``shutdown()``;
* :meth:`Transport.abort` shuts the TCP socket down itself.  websocket-client's own
  ``abort()`` does nothing once ``send_close()`` has cleared ``connected``, which used to
  leave an abandoned reader blocked in ``recv()`` forever.

Threads: ``send`` runs on callers' threads (serialised by the transport's own send lock,
whose holder writes every frame queued meanwhile in one ``sendall``),
``recv`` on the one reader thread, ``abort``/``ping_nowait``/``close_nowait`` on any
thread and never block.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import websocket

from .._config.config import redact_url
from .._config.proxy import proxy_kwargs
from .._errors import ConnectError

__all__ = [
    "FrameTooLarge",
    "OpenGuard",
    "Transport",
    "TransportClosed",
    "TransportFactory",
    "TransportOptions",
    "open_transport",
]


class TransportClosed(Exception):
    """Internal: the socket is closed (``code`` None means it dropped without a close frame)."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class FrameTooLarge(TransportClosed):
    """Internal: an inbound frame announced more bytes than the limit (never read)."""


class BinaryFrame(TransportClosed):
    """Internal: the gateway sent a binary frame (protocol 4 is text only)."""


class Transport(Protocol):
    def send(self, data: bytes) -> None:
        """Send one text frame (UTF-8 bytes); raise :class:`TransportClosed` on failure."""
        ...

    def recv(self) -> bytes | None:
        """The next text frame, or ``None`` for a control frame (ping/pong: a sign of life);
        raise :class:`TransportClosed` when the socket ends."""
        ...

    def set_max_frame(self, limit: int) -> None: ...

    def has_pending(self) -> bool:
        """True if more inbound bytes are already waiting (``recv`` would not block)."""
        ...

    @property
    def last_activity(self) -> float:
        """``time.monotonic()`` when bytes last arrived (0.0 if unknown)."""
        ...

    def ping_nowait(self) -> bool:
        """Queue a ping without blocking; False if it could not be sent now."""
        ...

    def close_nowait(self, code: int, reason: str) -> None:
        """Send a close frame if that cannot block, then :meth:`abort`."""
        ...

    def abort(self) -> None:
        """Shut the TCP socket down: wakes a blocked ``recv``/``send`` at once."""
        ...

    def release(self) -> None:
        """Close the file descriptor (called once, by the reader thread, at the end)."""
        ...


class OpenGuard:
    """Lets another thread abort an open in progress (connect, TLS, upgrade)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.aborted = False
        self.marks: tuple[float, ...] = ()  # time.monotonic() of each attach: TCP up, TLS up (stats)

    def attach(self, sock: socket.socket) -> None:
        self.marks += (time.monotonic(),)
        with self._lock:
            self._sock = sock
            aborted = self.aborted
        if aborted:
            _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sock = self._sock
        if sock is not None:
            _shutdown(sock)


@dataclass(frozen=True)
class TransportOptions:
    url: str
    open_timeout: float
    tls_fingerprint: str | None = None
    max_frame: int = 32 * 1024 * 1024
    proxy: str | None = None
    #: Extra upgrade headers (edge auth: wss only, checked by GatewayConfig); secret values.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def _header_kwargs(options: TransportOptions) -> dict[str, Any]:
    """Edge-auth headers for the upgrade request; never sent on to a redirect target."""
    if not options.headers:
        return {}
    return {"header": [f"{name}: {value}" for name, value in options.headers], "redirect_limit": 0}


TransportFactory = Callable[[TransportOptions, OpenGuard], Transport]


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_READ_SIZE = 256 * 1024


def _mask(key: bytes, data: bytes) -> bytes:
    """RFC 6455 client masking: one big-integer XOR (no per-byte Python loop)."""
    n = len(data)
    if not n:
        return b""
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame (what a client sends)."""
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 1 << 16:
        head += bytes((0x80 | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((0x80 | 127,)) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + _mask(key, payload)


class _WebSocketTransport:
    """The websocket after the upgrade, on gwclient's own TCP (or TLS) socket.

    **Reading** (the reader thread): one ``recv`` takes whatever the socket has (up to
    256 KiB) into a buffer, and every complete frame in it is parsed from there: a burst of
    small events costs one system call, not the three or four small reads per frame of
    websocket-client's frame reader.  A frame that announces more than ``max_frame`` bytes
    is refused from its header, before its payload is read.

    **Writing** (callers' threads): a sender appends its frame to a queue and takes the
    send lock; whoever holds the lock writes everything queued in one ``sendall``, so
    concurrent senders hand their frames to one write instead of queueing on the lock for
    one write each.  A frame is written exactly once, in queue order."""

    def __init__(self, ws: websocket.WebSocket, sock: socket.socket) -> None:
        self._ws = ws  # kept for the socket's lifetime (it did the upgrade)
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self.max_frame = 32 * 1024 * 1024
        self._activity = time.monotonic()
        self._send_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[bytes] = []
        #: ``time.monotonic()`` of the last pong read (the keepalive round trip, stats).
        self.pong_at = 0.0

    def set_max_frame(self, limit: int) -> None:
        self.max_frame = limit

    @property
    def last_activity(self) -> float:
        return self._activity

    # -- reading (the reader thread) ---------------------------------------------------

    def _frame_end(self) -> int:
        """The end offset of the complete frame at the read position, or -1; raises
        :class:`FrameTooLarge` as soon as the header is in."""
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if have < 2:
            return -1
        b1 = buf[pos + 1]
        length = b1 & 0x7F
        offset = 2
        if length == 126:
            if have < 4:
                return -1
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            offset = 4
        elif length == 127:
            if have < 10:
                return -1
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            offset = 10
        if length > self.max_frame:
            raise FrameTooLarge(1009, f"frame of {length} bytes exceeds the {self.max_frame}-byte limit")
        if b1 & 0x80:
            offset += 4
        end = pos + offset + length
        return end if end <= len(buf) else -1

    def _fill(self) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        try:
            data = self._sock.recv(_READ_SIZE)
        except (OSError, ValueError) as exc:
            raise TransportClosed(None, str(exc) or type(exc).__name__) from exc
        if not data:
            raise TransportClosed(None, "Connection to remote host was lost.")
        self._activity = time.monotonic()
        self._buf += data

    def recv(self) -> bytes | None:
        while True:
            end = self._frame_end()
            while end < 0:
                self._fill()
                end = self._frame_end()
            buf, pos = self._buf, self._pos
            b0, b1 = buf[pos], buf[pos + 1]
            offset = 2 + (2 if (b1 & 0x7F) == 126 else 8 if (b1 & 0x7F) == 127 else 0)
            if b1 & 0x80:  # a masked server frame (not expected; tolerated)
                key = bytes(buf[pos + offset:pos + offset + 4])
                payload = _mask(key, bytes(buf[pos + offset + 4:end]))
            else:
                payload = bytes(buf[pos + offset:end])
            self._pos = end
            if self._pos == len(buf):
                buf.clear()
                self._pos = 0
            opcode = b0 & 0x0F
            fin = bool(b0 & 0x80)
            if opcode in (_OP_TEXT, _OP_BINARY):
                if self._fragments:
                    raise TransportClosed(1002, "a new message began inside a fragmented one")
                if fin:
                    if opcode == _OP_BINARY:
                        raise BinaryFrame(1003, "binary frames are not part of the gateway protocol")
                    return payload
                self._fragment_op = opcode
                self._fragments = [payload]
                self._check_fragments()
            elif opcode == _OP_CONT:
                if not self._fragments:
                    raise TransportClosed(1002, "a continuation frame without a message")
                self._fragments.append(payload)
                self._check_fragments()
                if fin:
                    data, op = b"".join(self._fragments), self._fragment_op
                    self._fragments = []
                    if op == _OP_BINARY:
                        raise BinaryFrame(1003, "binary frames are not part of the gateway protocol")
                    return data
            elif opcode == _OP_PING:
                self._write(_client_frame(_OP_PONG, payload))
                return None  # a sign of life
            elif opcode == _OP_PONG:
                self.pong_at = time.monotonic()  # the keepalive round trip (stats)
                return None
            elif opcode == _OP_CLOSE:
                code: int | None = None
                reason = ""
                if len(payload) >= 2:
                    code = struct.unpack("!H", payload[:2])[0]
                    reason = payload[2:].decode("utf-8", "replace")
                self._send_nowait(_client_frame(_OP_CLOSE, payload[:2]))  # the close handshake
                raise TransportClosed(code, reason)
            else:
                raise TransportClosed(1002, f"unknown websocket opcode {opcode}")

    def _check_fragments(self) -> None:
        if sum(len(f) for f in self._fragments) > self.max_frame:
            raise FrameTooLarge(1009, f"a fragmented message exceeds the {self.max_frame}-byte limit")

    def has_pending(self) -> bool:
        """A complete frame is buffered, or the socket has bytes (``recv`` would not block
        waiting for the network)."""
        try:
            if self._frame_end() >= 0:
                return True
        except FrameTooLarge:
            return True
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    # -- writing (callers' threads) ----------------------------------------------------

    def send(self, data: bytes) -> None:
        self._write(_client_frame(_OP_TEXT, data))

    def _write(self, frame: bytes) -> None:
        with self._queue_lock:
            self._queue.append(frame)
        with self._send_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if not batch:
                return  # the previous holder wrote ours
            try:
                self._sock.sendall(batch[0] if len(batch) == 1 else b"".join(batch))
            except (OSError, ValueError) as exc:
                raise TransportClosed(None, f"send failed: {exc}") from exc

    def _send_nowait(self, frame: bytes) -> bool:
        lock = self._send_lock
        if not lock.acquire(blocking=False):
            return False  # a caller is sending: that write is a keepalive too
        try:
            sock = self._sock
            if isinstance(sock, ssl.SSLSocket):
                # TLS sockets take no send flags: write only if the kernel has room (a
                # writable TCP socket has at least a third of its buffer free, far more
                # than one small TLS record), so this never blocks either.
                _, writable, _ = select.select([], [sock], [], 0)
                sent = sock.send(frame) if writable else 0
            else:
                sent = sock.send(frame, socket.MSG_DONTWAIT)
        except (OSError, ValueError):
            return False
        finally:
            lock.release()
        if sent != len(frame):  # a partial control frame corrupts the stream
            self.abort()
            return False
        return True

    def ping_nowait(self) -> bool:
        return self._send_nowait(_client_frame(_OP_PING, b""))

    def close_nowait(self, code: int, reason: str) -> None:
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:120]
        self._send_nowait(_client_frame(_OP_CLOSE, payload))
        self.abort()

    def abort(self) -> None:
        _shutdown(self._sock)

    def release(self) -> None:
        try:
            self._sock.close()
        except OSError:  # pragma: no cover - defensive
            pass


def open_transport(options: TransportOptions, guard: OpenGuard) -> Transport:
    """Open the gateway websocket (the default factory).  Raises ``OSError`` or
    ``websocket.WebSocketException`` on network failure, :class:`ConnectError` on an
    untrusted certificate or a fingerprint mismatch (checked before any frame is sent, so
    no secret leaves)."""
    parts = urlsplit(options.url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    kwargs = proxy_kwargs(options.url, options.proxy)
    if "http_proxy_auth" in kwargs:  # an explicit proxy for a remote wss:// gateway
        return _open_through_proxy(options, kwargs)
    raw = socket.create_connection((host, port), timeout=options.open_timeout)
    guard.attach(raw)
    sock: socket.socket = raw
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.scheme == "wss":
            sock = _wrap_tls(raw, host, options, guard)
        ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        try:
            ws.connect(options.url, socket=sock, suppress_origin=True,  # type: ignore[no-untyped-call]
                       timeout=options.open_timeout, **_header_kwargs(options))
        except websocket.WebSocketBadStatusException as exc:
            # Something else listens there (an HTTP server): say so in one line, not with
            # its headers and body; retried with backoff like any unreachable gateway.
            raise ConnectionError(f"{redact_url(options.url)} answered the websocket upgrade with HTTP "
                                  f"{exc.status_code} (not an OpenClaw gateway?)") from None
        # From here on the reader blocks in recv() until a frame, a close or abort();
        # liveness is the session's watchdog, not a socket timeout.
        sock.settimeout(None)
        transport = _WebSocketTransport(ws, sock)
        transport.set_max_frame(options.max_frame)
        return transport
    except BaseException:
        _shutdown(sock)
        sock.close()
        raise


def _open_through_proxy(options: TransportOptions, kwargs: dict[str, Any]) -> Transport:
    """A remote ``wss://`` gateway behind an explicitly configured proxy: websocket-client
    opens the tunnel (CONNECT or SOCKS) and the TLS session.  The open cannot be aborted
    from another thread here; it is bounded by ``open_timeout``."""
    sslopt: dict[str, Any] = {}
    if options.tls_fingerprint:
        sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    try:
        ws = websocket.create_connection(options.url, timeout=options.open_timeout, suppress_origin=True,
                                         enable_multithread=True, sslopt=sslopt, skip_utf8_validation=True,
                                         **kwargs, **_header_kwargs(options))
    except ssl.SSLCertVerificationError as exc:
        raise _untrusted(options, exc) from exc
    sock: Any = ws.sock
    try:
        _check_pin(sock, options)
        sock.settimeout(None)
    except BaseException:
        ws.shutdown()  # type: ignore[no-untyped-call]
        raise
    transport = _WebSocketTransport(ws, sock)
    transport.set_max_frame(options.max_frame)
    return transport


def _wrap_tls(raw: socket.socket, host: str, options: TransportOptions, guard: OpenGuard) -> socket.socket:
    ctx = ssl.create_default_context()
    if options.tls_fingerprint:
        # The pin replaces CA validation (self-signed gateway certificates are the norm).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        tls = ctx.wrap_socket(raw, server_hostname=host)
        guard.attach(tls)  # wrap_socket detached ``raw``: abort through the TLS socket now
    except ssl.SSLCertVerificationError as exc:
        raise _untrusted(options, exc) from exc
    try:
        _check_pin(tls, options)
    except ConnectError:
        tls.close()
        raise
    return tls


def _untrusted(options: TransportOptions, exc: ssl.SSLCertVerificationError) -> ConnectError:
    """Retrying cannot fix a certificate: a typed error that pauses reconnecting."""
    return ConnectError(
        f"TLS certificate of {redact_url(options.url)} is not trusted ({exc.verify_message}); "
        "pin it with tls_fingerprint (gateway.remote.tlsFingerprint) or install its CA",
        code="TLS_CERT_UNTRUSTED",
    )


def _check_pin(tls: Any, options: TransportOptions) -> None:
    """With a pinned fingerprint, the certificate must match before any frame is sent."""
    if not options.tls_fingerprint:
        return
    seen = hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
    if seen != options.tls_fingerprint:
        raise ConnectError(
            f"TLS certificate fingerprint mismatch for {redact_url(options.url)}: "
            f"expected sha256 {options.tls_fingerprint}, got {seen}",
            code="TLS_FINGERPRINT_MISMATCH",
        )
