"""The attached side inside the engine: a :class:`~gwclient._engine.transport.Transport` over the
share's Unix socket, and the transport factory a channel uses when ``config.share`` is
``auto`` or ``required``.

The channel's usual session core runs over it: the share sends ``connect.challenge``, the
core answers with a ``connect`` request (unsigned: the device identity and its crypto are
the share's business; the transport says ``via_share`` so the channel skips them), and the
share answers with its gateway connection's hello-ok or the gateway's refusal.  A share
that cannot be used means a direct socket (``auto``, one warning per process) or
:class:`~gwclient.ShareUnavailable` (``required``).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import sys
import threading
import time

from .._config.config import GatewayConfig
from .._engine.transport import FrameTooLarge, OpenGuard, Transport, TransportClosed, TransportFactory, TransportOptions
from .._errors import ShareUnavailable
from .._version import __version__
from ._client import ShareNotRunning, ShareRefused, config_to_wire, open_share
from ._wire import KIND_CONTROL, FrameReader, control, frame

__all__ = ["ShareTransport", "share_factory"]

log = logging.getLogger("gwclient.share")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)


class ShareTransport:
    """One attached stream.  ``send`` on callers' threads (a lock serialises them),
    ``recv`` on the channel's reader thread, ``abort`` from anywhere."""

    via_share = True

    def __init__(self, sock: socket.socket, reader: FrameReader) -> None:
        self._sock = sock
        self._reader = reader
        self._send_lock = threading.Lock()
        self._last = time.monotonic()

    def send(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self._sock.sendall(frame(data))
        except OSError as exc:
            raise TransportClosed(None, f"send to the share failed: {exc}") from exc

    def recv(self) -> bytes | None:
        try:
            kind, data = self._reader.read()
        except ValueError as exc:
            raise FrameTooLarge(1009, str(exc)) from None
        except EOFError:
            raise TransportClosed(None, "the share closed the stream") from None
        except OSError as exc:
            raise TransportClosed(None, f"the share's stream failed: {exc}") from None
        self._last = time.monotonic()
        if kind == KIND_CONTROL:
            message = json.loads(data)
            if message.get("op") == "close":
                reason = str(message.get("reason", ""))
                log.info("the share closed this process's stream: %s", reason)
                raise TransportClosed(None, f"share: {reason}")
            return None  # pong: a sign of life
        return data

    def set_max_frame(self, limit: int) -> None:
        self._reader.max_frame = limit

    def has_pending(self) -> bool:
        if self._reader.buffered():
            return True
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    @property
    def last_activity(self) -> float:
        return self._last

    def ping_nowait(self) -> bool:
        if not self._send_lock.acquire(blocking=False):
            return False
        try:
            self._sock.send(control({"op": "ping"}), socket.MSG_DONTWAIT)
            return True
        except OSError:
            return False
        finally:
            self._send_lock.release()

    def close_nowait(self, code: int, reason: str) -> None:
        self.abort()

    def abort(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def release(self) -> None:
        try:
            self._sock.close()
        except OSError:  # pragma: no cover - defensive
            pass


def attach(config: GatewayConfig, timeout: float, guard: OpenGuard | None = None) -> ShareTransport:
    """Attach to the share (starting it if none runs); raises ``OSError`` subclasses."""
    share = open_share(start=True, timeout=timeout)
    if guard is not None:
        guard.attach(share.sock)
    try:
        share.send_control({"op": "attach", "pid": os.getpid(), "version": __version__,
                            "config": config_to_wire(config), "events": True})
        share.sock.settimeout(None)
    except BaseException:
        share.close()
        raise
    return ShareTransport(share.sock, share.reader)


def share_factory(config: GatewayConfig, direct: TransportFactory) -> TransportFactory:
    """The factory of a channel whose config asks for the share."""

    def factory(options: TransportOptions, guard: OpenGuard) -> Transport:
        mode = config.share
        reason: str
        if sys.platform == "win32" or not hasattr(socket, "AF_UNIX"):  # pragma: no cover
            reason = "Unix sockets are not available on this platform"
        elif config.ssh is not None:
            reason = "SSH-tunnelled configs are not shared"
        else:
            try:
                return attach(config, options.open_timeout, guard)
            except ShareRefused as exc:
                reason = str(exc)
            except ShareNotRunning as exc:  # pragma: no cover - a start was asked for
                reason = str(exc)
            except OSError as exc:
                reason = f"cannot attach to the share: {exc.strerror or exc}"
        if mode == "required":
            raise ShareUnavailable(f"GWCLIENT_SHARE=required but the share cannot be used: {reason}")
        _warn_once("direct", "the share cannot be used (%s); using a direct socket", reason)
        return direct(options, guard)

    return factory
