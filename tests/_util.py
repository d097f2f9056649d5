"""Helpers shared by the tests (imported as ``_util``: pytest puts ``tests/`` on sys.path).

``GWCLIENT_TEST_TIME_FACTOR`` (a positive float, default 1) scales every wait a test
allows itself and every test's timeout, for slow or busy machines:
``GWCLIENT_TEST_TIME_FACTOR=3 scripts/test``.  It never makes a test wait longer when
things go right: waits end on events, the factor only moves the point of giving up.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _time_factor() -> float:
    text = os.environ.get("GWCLIENT_TEST_TIME_FACTOR", "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise RuntimeError(f"GWCLIENT_TEST_TIME_FACTOR must be a positive number, got {text!r}")
    return value


TIME_FACTOR = _time_factor()

#: Local ports of module-scoped servers that *another process* connects to at any time
#: (the real gateway's HTTP client opens connections to the model server ahead of its
#: next request).  The leak checker ignores the connections accepted on these ports: no
#: test opened them, and the server closes them itself (idle timeout, module teardown).
SHARED_SERVER_PORTS: set[int] = set()

#: The shared token of the ``gw`` fixture's DevGateway (conftest.py).
DEV_TOKEN = "dev-gateway-token-8c2e"


def scaled(seconds: float) -> float:
    """``seconds`` times ``GWCLIENT_TEST_TIME_FACTOR``."""
    return seconds * TIME_FACTOR


def dev_conn(gw: Any, token: str) -> Any:
    """The shared connection to dev gateway ``gw`` that the run tests use: fast retries,
    short connect and request timeouts."""
    from gwclient import GatewayConfig, GatewayConnection, RetryPolicy

    return GatewayConnection.shared(GatewayConfig(url=gw.url, token=token, retry=RetryPolicy(initial=0.05, maximum=0.5),
                                                  connect_timeout=5.0, request_timeout=10.0))


_SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def python_with_sigint(*args: str) -> list[str]:
    """argv running ``python *args`` with SIGINT at its default, for a child that must see
    Ctrl-C: a shell starts background jobs (``nohup scripts/test &``) with SIGINT ignored,
    and a child inherits that.  (A tiny Python resets it and execs the real command:
    ``preexec_fn`` is unsafe in a process with threads.)"""
    return [sys.executable, "-c", _SIGINT_DEFAULT, *args]


class WrappedTransport:
    """A transport that delegates every call to ``inner``: subclass it to spy on or break
    one call (the transport seam, ``GatewayConnection.shared(transport=...)``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def send(self, data: bytes) -> None:
        self._inner.send(data)

    def recv(self) -> bytes | None:
        data: bytes | None = self._inner.recv()
        return data

    def set_max_frame(self, limit: int) -> None:
        self._inner.set_max_frame(limit)

    @property
    def last_activity(self) -> float:
        return float(self._inner.last_activity)

    def has_pending(self) -> bool:
        return bool(self._inner.has_pending())

    def ping_nowait(self) -> bool:
        return bool(self._inner.ping_nowait())

    def close_nowait(self, code: int, reason: str) -> None:
        self._inner.close_nowait(code, reason)

    def abort(self) -> None:
        self._inner.abort()

    def release(self) -> None:
        self._inner.release()
