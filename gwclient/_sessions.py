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

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import UsageError
from ._observers import SUBSCRIBE, UNSUBSCRIBE, SessionObservers
from ._pushes import Event

if TYPE_CHECKING:
    from ._bus import Channel
    from ._connection import Default
    from ._subscription import Subscription

__all__ = ["SessionsMixin", "canonical_session_key"]


def canonical_session_key(key: str, agent_id: str | None = None) -> str:
    """The gateway's canonical form: ``"main"`` -> ``agent:main:main``; a key without the
    ``agent:<id>:`` prefix gets it (``agent_id`` or ``main``)."""
    key = key.strip()
    return key if key.startswith("agent:") else f"agent:{agent_id or 'main'}:{key}"


class SessionsMixin:
    """``subscribe_session`` / ``subscribe_sessions`` on top of the bus and sticky requests."""

    _stickies: dict[object, list[Any]]
    _observers_lock = threading.Lock()

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
        Closing the last subscription for a key unsubscribes on the gateway.

        All subscriptions of one canonical session share one server subscription (the
        gateway keeps one per connection and session), with approvals while any of them
        wants approvals (:mod:`gwclient._observers`).  An approvals subscription also
        gets the subscribe answer after every (re)connect, as an
        ``Event("sessions.messages.subscribe", {..., "approvalReplay": [...]})`` (2026.9;
        on older releases, which have no approvals, it is a plain subscription)."""
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
        canonical = canonical_session_key(session_key, agent_id)
        wanted = {session_key, canonical}
        events = ["session.message"] + (["session.approval", SUBSCRIBE] if include_approvals else [])

        def mine(event: Event) -> bool:
            payload = event.payload
            return isinstance(payload, dict) and payload.get("sessionKey") in wanted

        return self._observe(canonical, bool(include_approvals), unsubscribe, events, accept=mine, maxsize=maxsize)

    def _observe(self, canonical: str, approvals: bool, params: dict[str, Any], events: list[str], *,
                 accept: Callable[[Event], bool], maxsize: int | None) -> Subscription:
        """One more observer of a session: the server subscription follows the coalesced
        level (:class:`SessionObservers`); one sticky request per canonical session."""
        from ._connection import DEFAULT

        link = self._channel().link
        key = ("sessions.messages", canonical)

        def apply(subscribe: dict[str, Any] | None, unsubscribe: dict[str, Any] | None) -> None:
            if subscribe is not None:  # first observer, upgrade or downgrade: replace the spec
                if key in self._stickies:
                    link.remove_sticky(key)
                self._stickies[key] = [SUBSCRIBE, subscribe, 1]
                link.add_sticky(key, SUBSCRIBE, subscribe)
            elif unsubscribe is not None:  # the last observer left
                self._stickies.pop(key, None)
                link.remove_sticky(key, (UNSUBSCRIBE, unsubscribe))

        def released() -> None:
            with self._observers_lock:
                change = self.__observers().remove(canonical, approvals=approvals)
                apply(change.subscribe, change.unsubscribe)

        sub = self._subscribe(events, maxsize, DEFAULT, accept=accept, on_close=released)
        with self._observers_lock:
            change = self.__observers().add(canonical, approvals=approvals, params=params)
            apply(change.subscribe, change.unsubscribe)
        return sub

    def __observers(self) -> SessionObservers:
        observers: SessionObservers | None = self.__dict__.get("_session_observers")
        if observers is None:
            observers = self.__dict__["_session_observers"] = SessionObservers()
        return observers

    def subscribe_sessions(self, *, maxsize: int | None = None, list_params: dict[str, Any] | None = None
                           ) -> Subscription:
        """A :class:`Subscription` of ``sessions.changed`` events (the session list changed),
        kept across reconnects (``sessions.subscribe`` is re-issued on every new socket;
        the gateway has no unsubscribe for it: after the last close it is simply not
        re-issued).

        After every (re)connect it also yields the subscribe answer, the roster snapshot,
        as an ``Event("sessions.subscribe", {"subscribed": True, "list": {...}})``; the
        list is read with ``list_params`` (``sessions.list`` params; default
        ``{"limit": 60}``).  Releases before 2026.9 ignore the params and answer without
        a ``list``: call ``sessions.list`` there."""
        if list_params is not None and not isinstance(list_params, dict):
            raise UsageError("list_params must be a dict of sessions.list params or None")
        params = dict(list_params) if list_params else {"limit": 60}
        key = ("sessions", tuple(sorted((k, repr(v)) for k, v in params.items())))
        return self._sticky_subscription(key, ("sessions.subscribe", params), None,
                                         ["sessions.changed", "sessions.subscribe"], maxsize=maxsize)

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
