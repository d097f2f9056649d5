"""Session subscriptions as pure values: what to send, what to keep, what to release.

The gateway keys ``sessions.messages.subscribe`` and ``sessions.subscribe`` by connection:
after a reconnect they are gone until the client asks again (PROTOCOL.md R5).  A
:class:`Sticky` is such a request: the channel's core sends it when the first subscriber
of its ``key`` appears, re-sends it after every hello-ok **before** the fresh Snapshot is
published, counts its users (once, there) and fires ``unsubscribe`` when the last one
leaves.  "Session" here always means the gateway's chat session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import UsageError
from .pushes import Event

__all__ = ["SessionSubscription", "Sticky", "canonical_session_key", "session_messages", "sessions_list"]


@dataclass(frozen=True)
class Sticky:
    """A request re-sent on every new socket while anyone uses ``key``."""

    key: tuple[Any, ...]
    method: str
    params: Any = field(compare=False)
    #: What the last user's departure sends (``None``: the gateway has no unsubscribe).
    unsubscribe: tuple[str, Any] | None = field(default=None, compare=False)

    @property
    def group(self) -> tuple[Any, ...]:
        """The key of the one request the connection core sends for this spec: session
        observers of one canonical session share one (``("sessions.messages", canonical)``)."""
        return self.key[:2] if self.key[0] == "sessions.messages" else self.key


@dataclass(frozen=True)
class SessionSubscription:
    """Everything a facade needs to open one session subscription."""

    sticky: Sticky
    events: tuple[str, ...]
    accept: Callable[[Event], bool] | None = None


def canonical_session_key(key: str, agent_id: str | None = None) -> str:
    """The gateway's canonical form: ``"main"`` -> ``agent:main:main``; a key without the
    ``agent:<id>:`` prefix gets it (``agent_id`` or ``main``)."""
    key = key.strip()
    return key if key.startswith("agent:") else f"agent:{agent_id or 'main'}:{key}"


def session_messages(session_key: str, *, agent_id: str | None = None,
                     include_approvals: bool = False) -> SessionSubscription:
    """``sessions.messages.subscribe`` for one session (``session.message`` events, and
    ``session.approval`` with ``include_approvals``).  Raises :class:`UsageError`."""
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
    wanted = frozenset({session_key, canonical})

    def mine(event: Event) -> bool:
        payload = event.payload
        return isinstance(payload, dict) and payload.get("sessionKey") in wanted

    # An approvals subscription also gets the subscribe answer after every (re)connect, as
    # an Event named after the method (its approvalReplay: pending approvals).
    events = ("session.message",) + (("session.approval", "sessions.messages.subscribe") if include_approvals else ())
    sticky = Sticky(("sessions.messages", canonical, bool(include_approvals)), "sessions.messages.subscribe",
                    params, ("sessions.messages.unsubscribe", unsubscribe))
    return SessionSubscription(sticky, events, mine)


def sessions_list(list_params: dict[str, Any] | None = None) -> SessionSubscription:
    """``sessions.subscribe``: ``sessions.changed`` events (the gateway has no unsubscribe
    for it: after the last close it is simply not re-issued), and after every (re)connect
    the answer, the roster snapshot, as an ``Event("sessions.subscribe", {subscribed,
    list})``; the list is read with ``list_params`` (``sessions.list`` params; default
    ``{"limit": 60}``).  Releases before 2026.9 answer without a ``list``."""
    if list_params is not None and not isinstance(list_params, dict):
        raise UsageError("list_params must be a dict of sessions.list params or None")
    params = dict(list_params) if list_params else {"limit": 60}
    key = ("sessions", tuple(sorted((k, repr(v)) for k, v in params.items())))
    return SessionSubscription(Sticky(key, "sessions.subscribe", params), ("sessions.changed", "sessions.subscribe"))
