"""The transport seam and the per-socket I/O threads.

Every gateway websocket is opened through :func:`open_transport` (or a test's replacement
passed as ``transport_factory``), so tests can count and control sockets.  The default
opens a websocket-client ``WebSocket`` **without an Origin header**: an Origin makes the
gateway treat the client as a browser (no silent local pairing, scopes stripped).

:class:`SocketWorker` runs two threads per socket and decides nothing:

* ``gwclient-reader-<n>`` opens the socket (a blocking TCP connect and upgrade, so it is
  kept off the actor), then blocks in ``recv()`` and forwards each text frame.
* ``gwclient-writer-<n>`` takes frames from a queue and blocks in ``send()``, so a peer
  that stops reading can never stall the channel actor.

Why two threads rather than sending from the actor: a full socket buffer blocks ``send``;
actors must never block.  Only the reader closes the file descriptor (after the writer
has exited), so no thread ever touches a reused descriptor.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import websocket

from ._config import redact_url
from ._errors import ConnectError
from ._proxy import proxy_kwargs

__all__ = ["SocketWorker", "Transport", "TransportClosed", "TransportFactory", "open_transport"]

log = logging.getLogger("gwclient.transport")

_worker_numbers = itertools.count(1)


class TransportClosed(Exception):
    """Internal: the socket is closed (``code`` None means it dropped without a close frame)."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class Transport(Protocol):
    """What gwclient needs from a websocket.  ``send``/``recv`` are called from different
    threads; ``abort`` may be called from any thread and must wake a blocked ``recv``."""

    def send(self, text: str) -> None: ...

    def recv(self) -> str:
        """Next text frame; raise :class:`TransportClosed` when the socket is closed."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Send a close frame (best effort, may block briefly)."""
        ...

    def ping(self) -> None:
        """Send a websocket ping frame (raise :class:`TransportClosed` on failure)."""
        ...

    def abort(self) -> None: ...

    def release(self) -> None:
        """Close the file descriptor (called once, by the reader thread, at the end)."""
        ...


@dataclass(frozen=True)
class TransportOptions:
    url: str
    open_timeout: float
    tls_fingerprint: str | None = None
    proxy: str | None = None


TransportFactory = Callable[[TransportOptions], Transport]


class _WebSocketTransport:
    """websocket-client's low-level ``WebSocket``: ``send`` and ``recv`` have separate locks
    and ``abort()`` shuts the socket down, which wakes a blocked ``recv``."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws

    def send(self, text: str) -> None:
        try:
            self._ws.send(text)
        except (OSError, websocket.WebSocketException) as exc:
            raise TransportClosed(None, f"send failed: {exc}") from exc

    def recv(self) -> str:
        while True:
            try:
                opcode, data = self._ws.recv_data()
            except (OSError, websocket.WebSocketException) as exc:
                raise TransportClosed(None, str(exc) or type(exc).__name__) from exc
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code: int | None = None
                reason = ""
                if len(data) >= 2:
                    code = struct.unpack("!H", data[:2])[0]
                    reason = data[2:].decode("utf-8", "replace")
                raise TransportClosed(code, reason)
            # ping/pong/continuation control frames: websocket-client answers pings itself.

    def ping(self) -> None:
        try:
            self._ws.ping()
        except (OSError, websocket.WebSocketException) as exc:
            raise TransportClosed(None, f"ping failed: {exc}") from exc

    def close(self, code: int, reason: str) -> None:
        try:
            self._ws.send_close(code, reason.encode("utf-8"))
        except (OSError, websocket.WebSocketException):
            pass

    def abort(self) -> None:
        try:
            self._ws.abort()  # type: ignore[no-untyped-call]
        except (OSError, websocket.WebSocketException):  # pragma: no cover - defensive
            pass

    def release(self) -> None:
        try:
            self._ws.shutdown()  # type: ignore[no-untyped-call]
        except (OSError, websocket.WebSocketException):  # pragma: no cover - defensive
            pass


def open_transport(options: TransportOptions) -> Transport:
    """Open the gateway websocket (the default factory).  Raises ``OSError`` or
    ``websocket.WebSocketException`` on network failure, :class:`ConnectError` on a TLS
    fingerprint mismatch (checked before any frame, so no secret is ever sent)."""
    sslopt: dict[str, Any] = {}
    if options.tls_fingerprint:
        # The pin replaces CA validation (self-signed gateway certificates are the norm).
        sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    try:
        ws = websocket.create_connection(
            options.url,
            timeout=options.open_timeout,
            suppress_origin=True,
            enable_multithread=True,
            sslopt=sslopt,
            skip_utf8_validation=True,
            **proxy_kwargs(options.url, options.proxy),
        )
    except ssl.SSLCertVerificationError as exc:
        # Retrying cannot fix a certificate: a typed error that pauses reconnecting.
        raise ConnectError(
            f"TLS certificate of {redact_url(options.url)} is not trusted ({exc.verify_message}); "
            "pin it with tls_fingerprint (gateway.remote.tlsFingerprint) or install its CA",
            code="TLS_CERT_UNTRUSTED",
        ) from exc
    try:
        if options.tls_fingerprint:
            sock: Any = ws.sock
            der = sock.getpeercert(binary_form=True) if sock is not None else None
            seen = hashlib.sha256(der or b"").hexdigest()
            if seen != options.tls_fingerprint:
                err = ConnectError(
                    f"TLS certificate fingerprint mismatch for {redact_url(options.url)}: "
                    f"expected sha256 {options.tls_fingerprint}, got {seen}",
                    code="TLS_FINGERPRINT_MISMATCH",
                )
                raise err
        # From here on the reader blocks in recv() until a frame, a close or abort();
        # liveness is the channel's tick watchdog, not a socket timeout.
        ws.settimeout(None)
    except BaseException:
        ws.shutdown()  # type: ignore[no-untyped-call]
        raise
    return _WebSocketTransport(ws)


_CLOSE = object()
_PING = object()


class SocketWorker:
    """One socket's reader and writer threads.  Callbacks run on the reader thread and must
    only forward (``actor_ref.tell``); they never decide anything."""

    def __init__(
        self,
        factory: TransportFactory,
        options: TransportOptions,
        *,
        on_open: Callable[[SocketWorker], None],
        on_open_failed: Callable[[BaseException], None],
        on_frame: Callable[[str], None],
        on_closed: Callable[[int | None, str], None],
        label: str,
        prepare: Callable[[], Any] | None = None,
    ) -> None:
        self.number = next(_worker_numbers)
        self._factory = factory
        self._options = options
        self._on_open = on_open
        self._on_open_failed = on_open_failed
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._prepare = prepare
        #: What ``prepare`` returned (set on the reader thread before ``on_open`` runs).
        self.prepared: Any = None
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._transport: Transport | None = None
        self._lock = threading.Lock()
        self._aborted = False
        self.reader = threading.Thread(
            target=self._read_loop, name=f"gwclient-reader-{self.number}", daemon=True
        )
        self.writer = threading.Thread(
            target=self._write_loop, name=f"gwclient-writer-{self.number}", daemon=True
        )
        self.label = label

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.reader, self.writer]

    def start(self) -> None:
        # Threads are started last, after every attribute they read exists.
        self.reader.start()

    def send(self, text: str) -> None:
        """Queue a frame for the writer thread (never blocks)."""
        self._outbox.put(text)

    def ping(self) -> None:
        """Queue a websocket ping for the writer thread (never blocks)."""
        self._outbox.put(_PING)

    def run_io(self, fn: Callable[[], None]) -> None:
        """Run a small blocking chore (e.g. a file write) on the writer thread, in order
        with the frames (never blocks the caller)."""
        self._outbox.put(fn)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame from the writer thread, then abort the socket (never blocks)."""
        self._outbox.put((_CLOSE, code, reason))

    def abort(self) -> None:
        """Wake a blocked ``recv``/``send`` at once (never blocks)."""
        with self._lock:
            self._aborted = True
            transport = self._transport
        if transport is not None:
            transport.abort()
        self._outbox.put(None)

    # -- threads --------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            if self._prepare is not None:
                self.prepared = self._prepare()
            transport = self._factory(self._options)
        except BaseException as exc:  # network, TLS, handshake errors: all reported
            self._outbox.put(None)
            self._on_open_failed(exc)
            return
        with self._lock:
            self._transport = transport
            aborted = self._aborted
        self.writer.start()
        code: int | None = None
        reason = ""
        try:
            if aborted:
                transport.abort()
                raise TransportClosed(None, "aborted")
            self._on_open(self)
            while True:
                self._on_frame(transport.recv())
        except TransportClosed as closed:
            code, reason = closed.code, closed.reason
        except BaseException as exc:  # pragma: no cover - a bug in a callback
            log.exception("reader %s stopped by an unexpected error", self.label)
            reason = repr(exc)
        finally:
            transport.abort()
            self._outbox.put(None)
            self.writer.join()
            transport.release()
            self._on_closed(code, reason)

    def _write_loop(self) -> None:
        transport = self._transport
        assert transport is not None
        broken = False
        while True:
            item = self._outbox.get()
            if item is None:
                break
            if isinstance(item, tuple):
                _, code, reason = item
                if not broken:
                    transport.close(code, reason)
                transport.abort()
                break
            if callable(item):
                _run_chore(item)
            elif not broken:
                try:
                    if item is _PING:
                        transport.ping()
                    else:
                        transport.send(item)  # type: ignore[arg-type]
                except TransportClosed:
                    # Keep draining: chores queued behind this frame (a device-token save,
                    # settling connect() waiters) must still run.  The abort wakes the
                    # reader, which queues the final None.
                    transport.abort()
                    broken = True
        # Chores queued after the end marker still run; frames are dropped (the channel
        # fails their requests when the reader reports the close).
        while True:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            if callable(item):
                _run_chore(item)


def _run_chore(chore: Callable[[], None]) -> None:
    try:
        chore()
    except Exception:  # pragma: no cover - the chore logs its own errors
        log.exception("I/O chore failed")
