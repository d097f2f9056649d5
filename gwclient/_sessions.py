"""Session subscriptions that survive reconnects (a mixin of :class:`GatewayConnection`).

The gateway keys ``sessions.messages.subscribe`` and ``sessions.subscribe`` by connection:
after a reconnect they are gone until the client asks again (PROTOCOL.md R5).  Here they
are *sticky requests* of the channel's session core: sent once when the first subscriber
for a key appears, re-sent after every hello-ok **before** the fresh :class:`Snapshot` is
handed to subscribers, and released (``sessions.messages.unsubscribe``) when the last
subscriber for that key closes.  Many subscribers to one key make one server
subscription.  All of it runs on the shared socket: no socket of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._core.pushes import Event
from ._errors import UsageError

if TYPE_CHECKING:
    from ._connection import Default
    from ._engine.registry import Channel
    from ._engine.subscription import Subscription

__all__ = ["SessionsMixin", "canonical_session_key"]


def canonical_session_key(key: str, agent_id: str | None = None) -> str:
    """The gateway's canonical form: ``"main"`` -> ``agent:main:main``; a key without the
    ``agent:<id>:`` prefix gets it (``agent_id`` or ``main``)."""
    key = key.strip()
    return key if key.startswith("agent:") else f"agent:{agent_id or 'main'}:{key}"


class SessionsMixin:
    """``subscribe_session`` / ``subscribe_sessions`` on top of the bus and sticky requests."""

    _stickies: dict[object, list[Any]]

    def _channel(self, config: Any = None) -> Channel:  # provided by GatewayConnection
        raise NotImplementedError

    def _subscribe(self, events: list[str] | None, maxsize: int | None, max_bytes: int | Default | None, *,
                   include_state: bool = True, accept: Callable[[Event], bool] | None = None,
                   on_close: Callable[[], None] | None = None) -> Subscription:  # provided by GatewayConnection
        raise NotImplementedError

    def subscribe_session(self, session_key: str, *, agent_id: str | None = None, include_approvals: bool = False,
                          maxsize: int | None = None) -> Subscription:
        """A :class:`Subscription` of ``session.message`` events (and ``session.approval``
        with ``include_approvals``) for one session, kept across reconnects.

        Yields like :meth:`subscribe` (a Snapshot first, state changes, a new Snapshot after
        every reconnect: by then the subscription has been re-issued).  ``session_key`` is
        the gateway's key (``agent:main:work``; ``"main"`` means ``agent:main:main``).
        Closing the last subscription for a key unsubscribes on the gateway."""
        if not isinstance(session_key, str) or not session_key.strip() or len(session_key) > 512:
            raise UsageError("session_key must be a non-empty string of at most 512 characters")
        if agent_id is not None and (not isinstance(agent_id, str) or not agent_id):
            raise UsageError("agent_id must be a non-empty string or None")
        params: dict[str, Any] = {"key": session_key}
        if agent_id:
            params["agentId"] = agent_id
        if include_approvals:
            params["includeApprovals"] = True
        unsubscribe = {k: v for k, v in params.items() if k != "includeApprovals"}
        wanted = {session_key, canonical_session_key(session_key, agent_id)}
        events = ["session.message"] + (["session.approval"] if include_approvals else [])

        def mine(event: Event) -> bool:
            payload = event.payload
            return isinstance(payload, dict) and payload.get("sessionKey") in wanted

        key = ("sessions.messages", canonical_session_key(session_key, agent_id), bool(include_approvals))
        return self._sticky_subscription(key, ("sessions.messages.subscribe", params),
                                         ("sessions.messages.unsubscribe", unsubscribe), events,
                                         accept=mine, maxsize=maxsize)

    def subscribe_sessions(self, *, maxsize: int | None = None) -> Subscription:
        """A :class:`Subscription` of ``sessions.changed`` events (the session list changed),
        kept across reconnects (``sessions.subscribe`` is re-issued on every new socket;
        the gateway has no unsubscribe for it: after the last close it is simply not
        re-issued)."""
        return self._sticky_subscription(("sessions",), ("sessions.subscribe", {}), None, ["sessions.changed"],
                                         maxsize=maxsize)

    def _sticky_subscription(self, key: object, request: tuple[str, Any], unsubscribe: tuple[str, Any] | None,
                             events: list[str], *, accept: Callable[[Event], bool] | None = None,
                             maxsize: int | None = None) -> Subscription:
        from ._connection import DEFAULT

        link = self._channel().link

        def released() -> None:
            entry = self._stickies.get(key)
            if entry is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    del self._stickies[key]
            link.remove_sticky(key, unsubscribe)

        method, params = request
        sub = self._subscribe(events, maxsize, DEFAULT, accept=accept, on_close=released)
        entry = self._stickies.setdefault(key, [method, params, 0])
        entry[2] += 1
        link.add_sticky(key, method, params)
        return sub
