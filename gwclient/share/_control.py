"""``status``, ``start`` and ``stop`` of the running share (standard library only)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from ._client import ShareNotRunning, open_share, start_share
from ._wire import socket_path

__all__ = ["mode_from_env", "start", "status", "stop"]


def mode_from_env(env: Mapping[str, str] | None = None) -> str:
    """``$GWCLIENT_SHARE`` (``off``, ``auto`` or ``required``; default ``off``); raises
    :class:`~gwclient.ConfigError` for anything else."""
    from .._config.values import share_mode_from_env

    return share_mode_from_env(env)


def status(timeout: float = 5.0) -> dict[str, Any]:
    """The running share's status; raises :class:`ShareNotRunning` if none answers,
    :class:`ShareRefused` for a share of another gwclient version (its version is in the
    exception)."""
    share = open_share(start=False, timeout=timeout)
    try:
        share.send_control({"op": "status"})
        answer = share.reader.read_control()
    finally:
        share.close()
    answer.pop("op", None)
    return answer


def start(timeout: float = 10.0) -> int | None:
    """Start a share in the background unless one answers; its pid (``None``: one was
    already running)."""
    try:
        open_share(start=False, timeout=timeout).close()
        return None
    except ShareNotRunning:
        pass
    return start_share(timeout=timeout)


def stop(timeout: float = 10.0) -> int | None:
    """Ask the running share to exit and wait until its socket is gone; its pid, or
    ``None`` if none was running."""
    try:
        share = open_share(start=False, timeout=timeout)
    except ShareNotRunning:
        return None
    try:
        share.send_control({"op": "stop"})
        answer = share.reader.read_control()
    finally:
        share.close()
    pid = answer.get("pid")
    deadline = time.monotonic() + timeout
    path = socket_path()
    while time.monotonic() < deadline and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # pragma: no cover
            break
        if not path.exists():
            break
        time.sleep(0.02)
    return pid if isinstance(pid, int) else None
