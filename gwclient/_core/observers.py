"""Which server subscription a session's local observers need (pure: no threads, no sockets).

The gateway keeps **one** ``sessions.messages.subscribe`` entry per connection and
canonical session (PROTOCOL.md R7; checked against 2026.9.6): a subscribe with
``includeApprovals`` upgrades the entry, a plain subscribe after it re-keys the entry
*without* approvals, and ``sessions.messages.unsubscribe`` (which has no approvals flag)
removes it whatever it was.  Keying plain and approvals subscriptions separately on the
client therefore breaks: closing the plain one silences the approvals one.

:class:`SessionObservers` is the coalescing the official coordinator does: it counts the
local plain and approvals observers of every canonical session and says, for each change,
the one server subscription the session needs now (``approvals`` when any approvals
observer is left, else ``plain``, else none) and what to send to get there:

=====================  =====================  ==========================================
before                 after                  send
=====================  =====================  ==========================================
none                   plain                  ``subscribe {key}``
none / plain           approvals              ``subscribe {key, includeApprovals: true}``
approvals              plain (last approvals  ``subscribe {key}`` (re-keys the entry
                       observer closed)       without approvals)
plain / approvals      none                   ``unsubscribe {key}``
anything else          (same level)           nothing
=====================  =====================  ==========================================

:meth:`SessionObservers.sticky` is the request to re-send after every (re)connect (the
gateway forgets subscriptions with the socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "APPROVALS",
    "PLAIN",
    "PUBLISHED_ANSWERS",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "Level",
    "ObserverChange",
    "SessionObservers",
    "answer_event_payload",
    "level_for",
    "sticky_params",
]

Level = Literal["plain", "approvals"]
PLAIN: Level = "plain"
APPROVALS: Level = "approvals"

SUBSCRIBE = "sessions.messages.subscribe"
UNSUBSCRIBE = "sessions.messages.unsubscribe"


def level_for(plain: int, approvals: int) -> Level | None:
    """The server subscription ``plain`` plain and ``approvals`` approvals observers need."""
    if approvals > 0:
        return APPROVALS
    if plain > 0:
        return PLAIN
    return None


@dataclass(frozen=True)
class ObserverChange:
    """What one observer arriving or leaving changes for its session.

    ``before``/``after``: the server subscription levels; ``subscribe``: the params of a
    ``sessions.messages.subscribe`` to send now (None: none); ``unsubscribe``: the params of
    a ``sessions.messages.unsubscribe`` to send now (None: none).  At most one is set."""

    key: str
    before: Level | None
    after: Level | None
    subscribe: dict[str, Any] | None = None
    unsubscribe: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class _Entry:
    params: dict[str, Any]  # {key, agentId?} as the first observer gave them
    plain: int = 0
    approvals: int = 0

    @property
    def level(self) -> Level | None:
        return level_for(self.plain, self.approvals)


class SessionObservers:
    """Local observers per canonical session key.  Not thread-safe: the caller locks."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def level(self, key: str) -> Level | None:
        """The server subscription ``key`` has now."""
        entry = self._entries.get(key)
        return None if entry is None else entry.level

    def counts(self, key: str) -> tuple[int, int]:
        """``(plain, approvals)`` observers of ``key``."""
        entry = self._entries.get(key)
        return (0, 0) if entry is None else (entry.plain, entry.approvals)

    def keys(self) -> list[str]:
        return list(self._entries)

    def add(self, key: str, *, approvals: bool, params: dict[str, Any] | None = None) -> ObserverChange:
        """One more observer of canonical session ``key``; ``params`` are the subscribe
        params without ``includeApprovals`` (default ``{key}``; kept from the first one)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(dict(params) if params else {"key": key})
        before = entry.level
        if approvals:
            entry.approvals += 1
        else:
            entry.plain += 1
        return self._change(key, entry, before)

    def remove(self, key: str, *, approvals: bool) -> ObserverChange:
        """One observer of ``key`` fewer (an unknown one changes nothing)."""
        entry = self._entries.get(key)
        if entry is None:
            return ObserverChange(key, None, None)
        before = entry.level
        if approvals and entry.approvals > 0:
            entry.approvals -= 1
        elif not approvals and entry.plain > 0:
            entry.plain -= 1
        else:
            return ObserverChange(key, before, before)
        if entry.level is None:
            del self._entries[key]
            return ObserverChange(key, before, None, unsubscribe=dict(entry.params))
        return self._change(key, entry, before)

    def forget(self, key: str) -> None:
        """The gateway refused ``key``'s subscription: its observers were ended with it."""
        self._entries.pop(key, None)

    def sticky(self, key: str) -> dict[str, Any] | None:
        """The subscribe params to (re-)send for ``key`` (after every reconnect); None when
        it has no observer."""
        entry = self._entries.get(key)
        if entry is None or entry.level is None:
            return None
        return self._subscribe_params(entry)

    @staticmethod
    def _subscribe_params(entry: _Entry) -> dict[str, Any]:
        params = dict(entry.params)
        if entry.level == APPROVALS:
            params["includeApprovals"] = True
        return params

    def _change(self, key: str, entry: _Entry, before: Level | None) -> ObserverChange:
        after = entry.level
        if after == before:
            return ObserverChange(key, before, after)
        return ObserverChange(key, before, after, subscribe=self._subscribe_params(entry))


# ------------------------------------------------------------- what the gateway can take

#: Sticky requests whose answer is a snapshot subscribers want: it is delivered to them as
#: an :class:`~gwclient.Event` named after the method (``sessions.subscribe`` with list
#: params answers ``{subscribed, list}``, the roster; ``sessions.messages.subscribe`` with
#: ``includeApprovals`` answers with ``approvalReplay``, the pending approvals).
PUBLISHED_ANSWERS = frozenset({"sessions.subscribe", SUBSCRIBE})


def sticky_params(method: str, params: Any, events: list[str] | None) -> Any:
    """``params`` as the connected gateway can take them: ``includeApprovals`` only when it
    advertises the ``session.approval`` event (2026.9; 2026.5.12 and 2026.7.1 refuse the
    flag, and the whole subscription with it).  ``events``: ``hello-ok.features.events``
    (None before a hello)."""
    if (method == SUBSCRIBE and isinstance(params, dict) and params.get("includeApprovals")
            and events is not None and "session.approval" not in events):
        return {k: v for k, v in params.items() if k != "includeApprovals"}
    return params


def answer_event_payload(method: str, params: Any, answer: Any) -> dict[str, Any] | None:
    """The payload of the Event that delivers a sticky ``answer`` (None: deliver nothing):
    the answer plus ``sessionKey`` for a session subscription (so per-session filters
    match), only for an approvals subscription (a plain one has nothing to replay), and a
    ``sessions.subscribe`` answer only when it carries a roster (``list``)."""
    if method not in PUBLISHED_ANSWERS or not isinstance(answer, dict):
        return None
    if method == SUBSCRIBE:
        if not (isinstance(params, dict) and params.get("includeApprovals")):
            return None
        key = answer.get("key") if isinstance(answer.get("key"), str) else params.get("key")
        return {**answer, "sessionKey": key}
    return dict(answer) if "list" in answer else None
