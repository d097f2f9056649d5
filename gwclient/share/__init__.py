"""The local share: one process per user that owns the gateway sockets, and that
short-lived processes attach to over a Unix socket (docs/share.md).

Turn it on with ``GWCLIENT_SHARE=auto`` (or ``required``), the CLI's ``--share MODE``, or
``GatewayConfig(share="auto")``; an attached process uses gwclient exactly as with its
own socket.  This module is the programmatic face of ``gwclient share``:

* :func:`status` — the running share's status (pid, version, uptime, attached processes,
  per gateway config: url, state, connection number, requests relayed, reconnects);
* :func:`start` — start one in the background unless one runs (returns its pid);
* :func:`stop` — ask the running share to exit;
* :class:`ShareServer` — the share itself (``gwclient share run``);
* :func:`socket_path` — where its socket is;
* :func:`mode_from_env` — ``$GWCLIENT_SHARE`` as a mode;
* :func:`open_share` and :class:`OneShot` — the cheap blocking attach the CLI uses for
  one-shot requests (standard library only).

Names load lazily: importing this package costs only the standard library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import OneShot, ShareNotRunning, ShareRefused, open_share
    from ._control import mode_from_env, start, status, stop
    from ._server import ShareServer
    from ._wire import socket_path

__all__ = ["OneShot", "ShareNotRunning", "ShareRefused", "ShareServer", "mode_from_env", "open_share",
           "socket_path", "start", "status", "stop"]

_EXPORTS = {
    "OneShot": "_client",
    "open_share": "_client",
    "mode_from_env": "_control",
    "ShareNotRunning": "_client",
    "ShareRefused": "_client",
    "ShareServer": "_server",
    "socket_path": "_wire",
    "start": "_control",
    "status": "_control",
    "stop": "_control",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
