"""Reaching the share: connect to its socket, start it when nobody listens (exactly one
starter at a time: a lock file), and a small blocking client for one-shot requests.

Standard library only (plus :mod:`gwclient._errors` and :mod:`gwclient._config.locations`, which
are too): ``gwclient call`` through the share must not load the websocket stack, the
device identity's cryptography, pykka or dataclasses-json.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ._wire import (
    KIND_CONTROL,
    KIND_FRAME,
    WIRE_VERSION,
    FrameReader,
    ShareDirError,
    control,
    frame,
    lock_path,
    log_path,
    secure_dir,
    socket_path,
)

__all__ = ["ShareConnection", "ShareNotRunning", "ShareRefused", "open_share", "start_share"]

#: Seconds a starter waits for a share it started to listen.
START_TIMEOUT = 10.0

#: Starts the share in a session of its own and exits at once, so the share is never a
#: child of the process that asked for it (no zombie when it exits, nothing to reap).
_DETACH = "import subprocess, sys; subprocess.Popen(sys.argv[2:], pass_fds=(int(sys.argv[1]),), start_new_session=True)"


class ShareNotRunning(OSError):
    """Nothing listens on the share's socket (and starting one was not asked for)."""


class ShareRefused(OSError):
    """The share cannot be used: another gwclient version, an unsafe directory, a failed
    start.  ``version`` is the share's version when that was the reason."""

    def __init__(self, message: str, *, version: str | None = None) -> None:
        super().__init__(message)
        self.version = version


class ShareConnection:
    """A stream to the share whose ``hello`` has been read and checked."""

    def __init__(self, sock: socket.socket, hello: dict[str, Any], reader: FrameReader) -> None:
        self.sock = sock
        self.hello = hello
        self.reader = reader

    def send_control(self, message: Mapping[str, Any]) -> None:
        self.sock.sendall(control(message))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover - defensive
            pass


def _connect(path: Path, timeout: float) -> ShareConnection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        reader = FrameReader(sock)
        hello = reader.read_control()
    except (OSError, EOFError, ValueError) as exc:
        sock.close()
        if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            raise ShareNotRunning(f"no share listens on {path}") from None
        if isinstance(exc, OSError):
            raise
        raise ShareRefused(f"the share on {path} did not greet: {exc}") from None
    if hello.get("op") != "hello" or hello.get("wire") != WIRE_VERSION or hello.get("version") != __version__:
        sock.close()
        version = hello.get("version")
        raise ShareRefused(f"the share on {path} runs gwclient {version}, this is gwclient {__version__}",
                           version=str(version))
    return ShareConnection(sock, hello, reader)


def open_share(env: Mapping[str, str] | None = None, *, start: bool, timeout: float = 5.0) -> ShareConnection:
    """Connect to the running share; with ``start``, start one if none runs (one starter
    at a time).  Raises :class:`ShareNotRunning`, :class:`ShareRefused` or ``OSError``."""
    path = socket_path(env)
    try:
        secure_dir(path.parent, create=start)
    except ShareDirError as exc:
        if not start and "does not exist" in str(exc):
            raise ShareNotRunning(str(exc)) from None
        raise ShareRefused(str(exc)) from None
    try:
        return _connect(path, timeout)
    except ShareNotRunning:
        if not start:
            raise
    start_share(env, timeout=max(timeout, START_TIMEOUT))
    return _connect(path, timeout)


def start_share(env: Mapping[str, str] | None = None, *, timeout: float = START_TIMEOUT) -> int | None:
    """Start a share in the background unless one answers; returns its pid (``None`` if
    another starter's share answered).  Concurrent starters serialise on a lock file, so
    twenty at once start exactly one."""
    import fcntl  # here: only a starter needs it

    path = socket_path(env)
    secure_dir(path.parent, create=True)
    fd = os.open(lock_path(env), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _connect(path, 2.0).close()
            return None  # started by someone else meanwhile
        except ShareNotRunning:
            pass
        except ShareRefused:
            raise
        return _spawn(env, timeout)
    finally:
        os.close(fd)  # releases the lock


def _spawn(env: Mapping[str, str] | None, timeout: float) -> int:
    """``gwclient share run`` detached (own session, stdio to the log file); returns once
    it listens (it writes its pid to the ready pipe after ``listen()``)."""
    import select
    import subprocess
    child_env = dict(os.environ if env is None else env)
    package_root = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [child_env.get("PYTHONPATH", "")])])
    log_file = log_path(env)
    secure_dir(log_file.parent, create=True)
    read_end, write_end = os.pipe()
    try:
        log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            share = [sys.executable, "-m", "gwclient", "share", "run", "--ready-fd", str(write_end)]
            subprocess.run([sys.executable, "-c", _DETACH, str(write_end), *share],
                           stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, pass_fds=(write_end,),
                           close_fds=True, env=child_env, cwd="/", timeout=timeout, check=False)
        finally:
            os.close(log_fd)
        os.close(write_end)
        write_end = -1
        deadline = time.monotonic() + timeout
        got = b""
        while not got.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShareRefused(f"the share did not start within {timeout:g} s (see {log_file})")
            readable, _, _ = select.select([read_end], [], [], left)
            if readable:
                chunk = os.read(read_end, 32)
                if not chunk:
                    raise ShareRefused(f"the share exited while starting (see {log_file})")
                got += chunk
        return int(got)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


# ------------------------------------------------------------------ the one-shot client


def config_to_wire(config: Any) -> dict[str, Any]:
    """A :class:`~gwclient.GatewayConfig` as JSON for the attach message (secrets
    included: it travels only over the share's private socket)."""
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "share":
            continue
        if f.name == "retry" and value is not None:
            value = {g.name: getattr(value, g.name) for g in dataclasses.fields(value) if g.name != "rng"}
        elif f.name == "ssh" and value is not None:
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


class OneShot:
    """A blocking attach for a few requests (the CLI's cheap path): attach, answer the
    synthesized challenge, read hello-ok, then one request at a time."""

    def __init__(self, share: ShareConnection, config: Any, timeout: float) -> None:
        self._share = share
        share.sock.settimeout(timeout)
        # The attach and the connect in one write: the share reads them in order (its
        # challenge carries nothing a share-attached process signs).
        self._counter = 1
        connect = {"type": "req", "id": "1:oneshot", "method": "connect", "params": {"share": True}}
        share.sock.sendall(control({"op": "attach", "pid": os.getpid(), "version": __version__,
                                    "config": config_to_wire(config), "events": False})
                           + frame(json.dumps(connect).encode()))
        self._expect_challenge()
        self.hello = self._answer("1:oneshot", "connect")

    def _expect_challenge(self) -> None:
        kind, data = self._read()
        message = json.loads(data) if kind == KIND_FRAME else {}
        if message.get("event") != "connect.challenge":
            raise ConnectionError("the share did not send connect.challenge")

    def _read(self) -> tuple[bytes, bytes]:
        while True:
            kind, data = self._share.reader.read()
            if kind == KIND_CONTROL:
                message = json.loads(data)
                if message.get("op") == "close":
                    raise ConnectionError(f"the share closed the stream: {message.get('reason', '')}")
                continue
            return kind, data

    def _call(self, method: str, params: Any) -> Any:
        self._counter += 1
        rid = f"{self._counter}:oneshot"
        body = {"type": "req", "id": rid, "method": method}
        if params is not None:
            body["params"] = params
        self._share.sock.sendall(frame(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()))
        return self._answer(rid, method)

    def _answer(self, rid: str, method: str) -> Any:
        while True:
            _, data = self._read()
            message = json.loads(data)
            if message.get("type") != "res" or message.get("id") != rid:
                continue  # an event: not asked for, skipped
            if message.get("ok"):
                return message.get("payload")
            raise _error(message.get("error"), method)

    def request(self, method: str, params: Any = None, *, expect_final: bool = False) -> Any:
        payload = self._call(method, params)
        if expect_final and isinstance(payload, dict) and payload.get("status") == "accepted":
            while True:  # the final answer of a two-stage method comes on the same id
                _, data = self._read()
                message = json.loads(data)
                if message.get("type") == "res" and message.get("id") == f"{self._counter}:oneshot":
                    if message.get("ok"):
                        return message.get("payload")
                    raise _error(message.get("error"), method)
        return payload

    def close(self) -> None:
        self._share.close()


def _error(shape: Any, method: str) -> Exception:
    """The gateway's error shape as the library's exception (the rare path: the mapping
    module is imported only here)."""
    from .._core.frames import decode_error_shape
    from .._core.protocol import error_from_shape

    return error_from_shape(decode_error_shape(shape), method=method)
