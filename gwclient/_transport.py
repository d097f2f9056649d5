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

Threads: ``send`` runs on callers' threads (serialised by websocket-client's send lock),
``recv`` on the one reader thread, ``abort``/``ping_nowait``/``close_nowait`` on any
thread and never block.
"""

from __future__ import annotations

import hashlib
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
from websocket._abnf import ABNF, frame_buffer

from ._config import redact_url
from ._errors import ConnectError
from ._proxy import proxy_kwargs

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

    def attach(self, sock: socket.socket) -> None:
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


class _LimitedFrames(frame_buffer):  # type: ignore[misc]
    """websocket-client's frame reader with a size check between the header and the
    payload: a frame over the limit is refused before its payload is read."""

    max_frame = 32 * 1024 * 1024
    #: ``time.monotonic()`` of the last bytes read: a frame trickling in is life too.
    last_activity = 0.0

    def __init__(self, recv_fn: Callable[[int], bytes], skip_utf8_validation: bool) -> None:
        def recv(bufsize: int) -> bytes:
            data = recv_fn(bufsize)
            self.last_activity = time.monotonic()
            return data

        super().__init__(recv, skip_utf8_validation)

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > self.max_frame:
            raise FrameTooLarge(1009, f"frame of {self.length} bytes exceeds the {self.max_frame}-byte limit")


class _WebSocketTransport:
    def __init__(self, ws: websocket.WebSocket, sock: socket.socket) -> None:
        self._ws = ws
        self._sock = sock
        self._frames = _LimitedFrames(ws._recv, True)
        ws.frame_buffer = self._frames

    def set_max_frame(self, limit: int) -> None:
        self._frames.max_frame = limit

    @property
    def last_activity(self) -> float:
        return self._frames.last_activity

    def has_pending(self) -> bool:
        sock = self._sock
        if self._frames.recv_buffer or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def send(self, data: bytes) -> None:
        try:
            self._ws.send(data, websocket.ABNF.OPCODE_TEXT)
        except (OSError, websocket.WebSocketException, AttributeError) as exc:
            raise TransportClosed(None, f"send failed: {exc}") from exc

    def recv(self) -> bytes | None:
        try:
            opcode, data = self._ws.recv_data(control_frame=True)
        except TransportClosed:
            raise
        except (OSError, websocket.WebSocketException, AttributeError) as exc:
            raise TransportClosed(None, str(exc) or type(exc).__name__) from exc
        if opcode == ABNF.OPCODE_TEXT:
            return data if isinstance(data, bytes) else str(data).encode("utf-8")
        if opcode == ABNF.OPCODE_CLOSE:
            code: int | None = None
            reason = ""
            if len(data) >= 2:
                code = struct.unpack("!H", data[:2])[0]
                reason = data[2:].decode("utf-8", "replace")
            raise TransportClosed(code, reason)
        if opcode == ABNF.OPCODE_BINARY:
            raise BinaryFrame(1003, "binary frames are not part of the gateway protocol")
        return None  # ping (answered by websocket-client) or pong: the peer is alive

    def _send_nowait(self, frame: bytes) -> bool:
        lock = self._ws.lock
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
        return self._send_nowait(ABNF.create_frame(b"", ABNF.OPCODE_PING).format())

    def close_nowait(self, code: int, reason: str) -> None:
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:120]
        self._send_nowait(ABNF.create_frame(payload, ABNF.OPCODE_CLOSE).format())
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
