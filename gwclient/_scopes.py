"""Asking for more operator scopes: :func:`request_scopes` (``conn.request_scopes()``).

Over the gateway's live device scope-upgrade methods (openclaw >= 2026.8):

* ``device.scopes.requestUpgrade {scopes}`` files a pairing request for the device's
  *whole* new scope set (it must contain the connection's current scopes, so gwclient
  adds them) and answers ``{requestId}``; an operator approves it on the gateway host
  with ``openclaw devices approve <requestId>``;
* ``device.scopes.waitUpgrade {requestId}`` blocks until it is resolved and answers
  ``{status: "approved", deviceToken, scopes}``, ``{status: "rejected"}`` or
  ``{status: "expired"}``.

On approval the rotated device token is stored, the connection asks for the new scopes
from then on and reconnects, so they take effect without restarting the program (a
request in flight at that moment fails with :class:`~gwclient.Disconnected`).  Older
gateways lack the methods: :class:`~gwclient.UnsupportedMethod`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._config.config import GatewayConfig
from ._core.deadline import check_timeout
from ._core.pushes import Snapshot
from ._engine.waiter import Deadline
from ._errors import GatewayTimeout, ProtocolError, UnsupportedMethod, UsageError

__all__ = ["ScopeUpgrade", "request_scopes"]

log = logging.getLogger("gwclient.connection")

REQUEST = "device.scopes.requestUpgrade"
WAIT = "device.scopes.waitUpgrade"


@dataclass(frozen=True)
class ScopeUpgrade:
    """The outcome of :meth:`GatewayConnection.request_scopes`.

    ``status``: ``"pending"`` (not resolved yet: approve it with :attr:`approve_command`,
    then call again with the same scopes or ``wait=True``), ``"approved"`` (``scopes`` are
    the connection's scopes now), ``"rejected"`` or ``"expired"``."""

    status: Literal["pending", "approved", "rejected", "expired"]
    request_id: str
    scopes: tuple[str, ...]

    @property
    def approve_command(self) -> str:
        """The command that approves it on the gateway host."""
        return f"openclaw devices approve {self.request_id}"

    @property
    def approved(self) -> bool:
        return self.status == "approved"


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    if isinstance(scopes, str):
        scopes = [s for s in scopes.split(",") if s.strip()]
    items = list(scopes) if not isinstance(scopes, (bytes, bytearray)) else []
    if not all(isinstance(s, str) for s in items):
        items = []
    items = [s.strip() for s in items]
    if not items or not all(items):
        raise UsageError("scopes must be a non-empty list of scope names (e.g. ['operator.write'])")
    return items


class ScopeChannel(Protocol):
    """What adopting granted scopes needs of the connection's channel."""

    @property
    def config(self) -> GatewayConfig: ...
    def adopt_scopes(self, scopes: tuple[str, ...], device_token: str | None) -> None: ...


def request_scopes(conn: Any, channel: ScopeChannel, scopes: Iterable[str], *, wait: bool = False,
                   timeout: float | None = 300.0,
                   on_pending: Callable[[ScopeUpgrade], None] | None = None) -> ScopeUpgrade:
    """Ask for ``scopes`` (added to the connection's current ones).

    Returns at once with status ``pending`` (``wait=False``), or waits up to ``timeout``
    seconds for the operator's decision (still ``pending`` if none came); ``on_pending``
    is called (on the caller's thread) with the pending request before the wait, e.g. to
    show its :attr:`~ScopeUpgrade.approve_command`.  Already granted
    scopes answer ``approved`` without asking.  Raises :class:`UnsupportedMethod` on a
    gateway without the scope-upgrade methods, :class:`RequestError` when the gateway
    refuses the request (unknown scope, beyond the operator's role, no paired device)."""
    wanted = _check_scopes(scopes)
    seconds = check_timeout(timeout)
    hello = conn.connect()
    current = list(hello.auth.scopes) if hello.auth is not None else []
    asked = list(dict.fromkeys([*current, *wanted]))
    if set(asked) <= set(current) or "operator.admin" in current:
        return ScopeUpgrade("approved", "", tuple(current))
    methods = hello.features.methods
    if methods and REQUEST not in methods:
        raise UnsupportedMethod(
            f"the gateway (openclaw {hello.server.version or '?'}) has no {REQUEST}: scope upgrades need "
            "openclaw >= 2026.8; re-pair the device with the scopes instead (gwclient pair)",
            code="INVALID_REQUEST", method=REQUEST)
    answer = conn.request(REQUEST, {"scopes": asked})
    request_id = answer.get("requestId") if isinstance(answer, dict) else None
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError(f"{REQUEST} answered without a requestId")
    log.warning("scope upgrade to %s requested: approve it with `openclaw devices approve %s`",
                ",".join(asked), request_id)
    pending = ScopeUpgrade("pending", request_id, tuple(asked))
    if not wait:
        return pending
    if on_pending is not None:
        on_pending(pending)
    try:
        result = conn.request(WAIT, {"requestId": request_id}, timeout=seconds)
    except GatewayTimeout:
        return ScopeUpgrade("pending", request_id, tuple(asked))
    status = result.get("status") if isinstance(result, dict) else None
    if status == "approved":
        granted = tuple(s for s in result.get("scopes") or asked if isinstance(s, str))
        _adopt(conn, channel, granted, result.get("deviceToken"))
        return ScopeUpgrade("approved", request_id, granted)
    if status in ("rejected", "expired"):
        return ScopeUpgrade(status, request_id, tuple(asked))
    raise ProtocolError(f"{WAIT} answered an unknown status {status!r}")


def _adopt(conn: Any, channel: ScopeChannel, scopes: tuple[str, ...], device_token: Any) -> None:
    """Store the rotated device token, ask for ``scopes`` from now on, reconnect."""
    config = channel.config
    deadline = Deadline(2 * config.connect_timeout + 5)
    with conn.subscribe(events=[], include_state=False) as sub:
        before = sub.get(timeout=deadline.remaining())  # the current connection's Snapshot
        number = before.connection_number if isinstance(before, Snapshot) else 0
        # The next connect asks for the new scopes (the channel replaces its socket).
        channel.adopt_scopes(scopes, device_token if isinstance(device_token, str) else None)
        while True:
            item = sub.get(timeout=deadline.remaining())
            if isinstance(item, Snapshot) and item.connection_number > number:
                return
