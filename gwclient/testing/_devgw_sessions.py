"""Session subscriptions of a :class:`~gwclient.testing.DevGateway`
(:class:`SessionSubscriptions`): ``sessions.messages.subscribe``/``unsubscribe`` and
``sessions.subscribe``, kept per connection like the real gateway's (lost on reconnect
until the client subscribes again), and the ``session.message``/``sessions.changed``
pushes a test publishes to the subscribers."""

from __future__ import annotations

import copy
import threading
from typing import Any

from gwclient.testing._devgw_proto import error_shape
from gwclient.testing._devgw_server import GatewayServer, _Conn

__all__ = ["SESSION_METHODS", "SessionSubscriptions", "canonical_session_key"]

SESSION_METHODS = ("sessions.messages.subscribe", "sessions.messages.unsubscribe", "sessions.subscribe")


def canonical_session_key(key: str, agent_id: str = "main") -> str:
    """``"main"`` -> ``agent:main:main``; keys without the ``agent:<id>:`` prefix get it."""
    key = key.strip()
    return key if key.startswith("agent:") else f"agent:{agent_id}:{key}"


class SessionSubscriptions:
    """Who is subscribed to what, by connection id.  Thread-safe: changes take ``cond``
    (the gateway's monitor) and notify it, so ``DevGateway.wait_for`` predicates see them."""

    def __init__(self, server: GatewayServer, cond: threading.Condition) -> None:
        self._server = server
        self._cond = cond
        self._messages: dict[str, set[str]] = {}  # conn id -> canonical session keys
        self._sessions: set[str] = set()  # conn ids that called sessions.subscribe
        self.requests: list[tuple[str, Any]] = []  # (method, params) of every request, in order

    def handle(self, cs: _Conn, method: str, params: Any) -> tuple[bool, Any]:
        """Answer one of :data:`SESSION_METHODS`: ``(ok, payload or error)``."""
        with self._cond:
            self.requests.append((method, copy.deepcopy(params)))
        if method == "sessions.subscribe":
            with self._cond:
                self._sessions.add(cs.conn_id)
                self._cond.notify_all()
            return True, {"subscribed": True}
        key = params.get("key") if isinstance(params, dict) else None
        if not isinstance(key, str) or not key.strip():
            return False, error_shape("INVALID_REQUEST", "invalid sessions.messages params: key required")
        canonical = canonical_session_key(key)
        with self._cond:
            keys = self._messages.setdefault(cs.conn_id, set())
            if method.endswith(".subscribe"):
                keys.add(canonical)
            else:
                keys.discard(canonical)
            subscribed = canonical in keys
            self._cond.notify_all()
        return True, {"subscribed": subscribed, "key": canonical}

    def subscribers(self, key: str) -> int:
        """How many open connections are subscribed to ``key``'s messages."""
        canonical = canonical_session_key(key)
        open_ids = {cs.conn_id for cs in self._server.handshaken()}
        with self._cond:
            return sum(1 for cid, keys in self._messages.items() if cid in open_ids and canonical in keys)

    def publish_message(self, key: str, message: Any) -> int:
        """Send ``session.message`` to the connections subscribed to ``key``."""
        canonical = canonical_session_key(key)
        with self._cond:
            targets = {cid for cid, keys in self._messages.items() if canonical in keys}
        payload = {"sessionKey": canonical, "agentId": canonical.split(":")[1], "message": message}
        return sum(1 for cs in self._server.handshaken()
                   if cs.conn_id in targets and self._server.send_event(cs, "session.message", payload))

    def publish_changed(self, payload: Any) -> int:
        """Send ``sessions.changed`` to the connections that called ``sessions.subscribe``."""
        with self._cond:
            targets = set(self._sessions)
        return sum(1 for cs in self._server.handshaken()
                   if cs.conn_id in targets and self._server.send_event(cs, "sessions.changed", payload))
