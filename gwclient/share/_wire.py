"""The share's Unix-socket framing and where its socket lives (standard library only: the
cheap attach path of the CLI imports this and nothing of the engine).

Framing: every message is a 5-byte header, one kind byte and a big-endian 32-bit length,
then that many bytes.  Kind ``F`` carries one protocol-4 frame (the JSON text a gateway
websocket would carry, relayed as is); kind ``C`` carries a share control message (a JSON
object with an ``op``):

* share -> process, right after the accept: ``{"op": "hello", "version", "wire", "pid"}``
  (the process checks the version *before* it sends anything, secrets included);
* process -> share: ``{"op": "attach", "pid", "version", "config": {...}, "events": bool}``,
  or ``{"op": "status"}`` / ``{"op": "stop"}`` (answered with one ``C`` and a close);
* either way: ``{"op": "ping"}`` / ``{"op": "pong"}``; share -> process ``{"op": "close",
  "reason"}`` just before it closes the stream (the reason reaches the process's log).

The socket directory is ``$XDG_RUNTIME_DIR/gwclient`` if that variable names an absolute
directory (without it: ``/run/user/<uid>/gwclient`` if that exists), else the gwclient
state directory; it must be a real directory (not a
symlink), owned by the user and closed to others (mode 0700, fixed if it is ours and
only wider, refused if it belongs to someone else or is a shared sticky directory).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "HEADER",
    "KIND_CONTROL",
    "KIND_FRAME",
    "WIRE_VERSION",
    "FrameReader",
    "ShareDirError",
    "control",
    "frame",
    "lock_path",
    "log_path",
    "peer_uid",
    "secure_dir",
    "share_dir",
    "socket_path",
]

WIRE_VERSION = 1
HEADER = struct.Struct(">cI")
KIND_FRAME = b"F"
KIND_CONTROL = b"C"
_MAX_CONTROL = 1024 * 1024


class ShareDirError(OSError):
    """The share's directory is unsafe or unusable (the message says why)."""


def frame(data: bytes, kind: bytes = KIND_FRAME) -> bytes:
    return HEADER.pack(kind, len(data)) + data


def control(message: Mapping[str, Any]) -> bytes:
    return frame(json.dumps(message, separators=(",", ":")).encode("utf-8"), KIND_CONTROL)


class FrameReader:
    """Reads framed messages from a blocking socket, many per ``recv`` call."""

    def __init__(self, sock: socket.socket, max_frame: int = 32 * 1024 * 1024) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0

    def buffered(self) -> bool:
        """A whole message is already buffered (reading it does not block)."""
        avail = len(self._buf) - self._pos
        if avail < HEADER.size:
            return False
        _, length = HEADER.unpack_from(self._buf, self._pos)
        return bool(avail >= HEADER.size + int(length))

    def _fill(self) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        chunk = self.sock.recv(262144)
        if not chunk:
            raise EOFError("the peer closed the stream")
        self._buf += chunk

    def read(self) -> tuple[bytes, bytes]:
        """``(kind, payload)``; raises ``EOFError`` at the end, ``OSError`` on a socket
        error, ``ValueError`` for a message over the limit (never read)."""
        while len(self._buf) - self._pos < HEADER.size:
            self._fill()
        kind, length = HEADER.unpack_from(self._buf, self._pos)
        limit = self.max_frame if kind == KIND_FRAME else _MAX_CONTROL
        if length > limit:
            raise ValueError(f"message of {length} bytes exceeds the {limit}-byte limit")
        while len(self._buf) - self._pos < HEADER.size + length:
            self._fill()
        start = self._pos + HEADER.size
        data = bytes(self._buf[start:start + length])
        self._pos = start + length
        return kind, data

    def read_control(self) -> dict[str, Any]:
        kind, data = self.read()
        if kind != KIND_CONTROL:
            raise ValueError("expected a share control message")
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ValueError("a share control message must be a JSON object")
        return message


# ---------------------------------------------------------------------------- locations


def _state_dir(env: Mapping[str, str]) -> Path:
    from .._config.locations import default_state_dir  # standard library only

    return default_state_dir(env)


def share_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/gwclient``; without the variable (cron jobs do not get it) the
    directory systemd gives the user, ``/run/user/<uid>/gwclient``, if it exists, so a
    share run as a user service and a cron job find each other; else the state dir."""
    source: Mapping[str, str] = os.environ if env is None else env
    runtime = source.get("XDG_RUNTIME_DIR", "").strip()
    if not runtime and os.path.isdir(f"/run/user/{os.geteuid()}"):
        runtime = f"/run/user/{os.geteuid()}"
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "gwclient"
    return _state_dir(source)


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    return share_dir(env) / "share.sock"


def lock_path(env: Mapping[str, str] | None = None) -> Path:
    return share_dir(env) / "share.lock"


def log_path(env: Mapping[str, str] | None = None) -> Path:
    return _state_dir(os.environ if env is None else env) / "share.log"


def secure_dir(path: Path, *, create: bool) -> None:
    """Make sure ``path`` is a directory only we can enter; raises :class:`ShareDirError`."""
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ShareDirError(f"cannot create the share directory {path}: {exc.strerror or exc}") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ShareDirError(f"the share directory {path} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise ShareDirError(f"the share directory {path} is a symlink; refusing it")
    if not stat.S_ISDIR(st.st_mode):
        raise ShareDirError(f"the share directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ShareDirError(f"the share directory {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise ShareDirError(f"the share directory {path} is writable by others (mode {mode:o}); refusing it")
    if mode & 0o077:
        os.chmod(path, 0o700)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix stream socket (``None`` if the
    platform cannot say: then nobody is trusted)."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    getpeereid = getattr(os, "getpeereid", None)  # not in the standard library today
    if getpeereid is not None:  # pragma: no cover - BSD/macOS
        return int(getpeereid(sock.fileno())[0])
    local_peercred = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:  # pragma: no cover - macOS: struct xucred
        raw = sock.getsockopt(0, local_peercred, 76)  # SOL_LOCAL, sizeof(struct xucred)
        _version, uid = struct.unpack_from("2I", raw)
        return int(uid)
    return None  # pragma: no cover


def peer_pid(sock: socket.socket) -> int | None:
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[0])
    return None  # pragma: no cover
