"""``chat.history`` reads of one session that use the gateway's cursors (2026.9).

A tail read (``{sessionKey, limit}``) answers ``messages`` plus an opaque ``deltaCursor``;
passing it back as ``cursor`` answers only what changed since: ``{kind: "delta", messages,
deltaCursor, sessionInfo}`` (replay each message like a live ``session.message``), or
``{kind: "reset"}`` when the cursor is stale (another session, a reset, compaction, too far
behind): then read the tail again (``docs/gateway/protocol/rpc-session-control.md``).

:class:`HistoryCursor` keeps the merged view: the last tail plus every delta since, with
messages of the same ``__openclaw.id`` replaced in place.  A gateway without cursors
(2026.7.1 and older: closed params, ``cursor`` refused; or no ``deltaCursor`` in the
answer) gets tail reads only.  ``request`` is the connection's ``request`` (called on the
caller's thread)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._errors import GatewayError, RequestError

__all__ = ["HistoryCursor", "merge_messages"]

log = logging.getLogger("gwclient.runs")

_KEEP = 400  # messages kept in the merged view


def _message_id(message: Any) -> str | None:
    meta = message.get("__openclaw") if isinstance(message, dict) else None
    mid = meta.get("id") if isinstance(meta, dict) else None
    return mid if isinstance(mid, str) else None


def merge_messages(old: list[dict[str, Any]], new: list[Any]) -> list[dict[str, Any]]:
    """``old`` with the delta's ``new`` messages applied: same ``__openclaw.id`` replaced in
    place, others appended (pure)."""
    merged = list(old)
    index = {mid: i for i, m in enumerate(merged) if (mid := _message_id(m)) is not None}
    for message in new:
        if not isinstance(message, dict):
            continue
        mid = _message_id(message)
        if mid is not None and mid in index:
            merged[index[mid]] = message
        else:
            if mid is not None:
                index[mid] = len(merged)
            merged.append(message)
    return merged[-_KEEP:]


class HistoryCursor:
    """Successive ``chat.history`` reads of ``session_key``: a tail first, then deltas."""

    def __init__(self, request: Callable[..., Any], session_key: str, *, limit: int = 50) -> None:
        self._request = request
        self.session_key = session_key
        self.limit = limit
        self._cursor: str | None = None
        self._messages: list[dict[str, Any]] = []
        self._last: dict[str, Any] = {}
        self.supported = True
        """False once the gateway refused a cursor (then tail reads only)."""
        self.reads = {"tail": 0, "delta": 0, "reset": 0}

    def read(self, *, tail: bool = False) -> dict[str, Any] | None:
        """The session's history, as a ``chat.history`` answer: ``messages`` (merged), and
        the other fields of the latest answer (a delta answer has no ``pendingInputs`` or
        ``inFlightRun``; ``tail=True`` forces a tail read, for them).  None if the gateway
        could not be asked."""
        if not tail and self.supported and self._cursor is not None:
            try:
                answer = self._request("chat.history", {"sessionKey": self.session_key, "cursor": self._cursor},
                                       timeout=10.0)
            except RequestError as err:
                if err.code != "INVALID_REQUEST":
                    log.debug("chat.history (cursor) failed: %s", err)
                    return None
                log.debug("chat.history refused a cursor (%s): tail reads only", err)
                self.supported = False
            except GatewayError as err:
                log.debug("chat.history (cursor) failed: %s", err)
                return None
            else:
                if isinstance(answer, dict) and answer.get("kind") == "delta":
                    self.reads["delta"] += 1
                    new = answer.get("messages")
                    self._messages = merge_messages(self._messages, new if isinstance(new, list) else [])
                    cursor = answer.get("deltaCursor")
                    self._cursor = cursor if isinstance(cursor, str) and cursor else self._cursor
                    self._last = {k: v for k, v in self._last.items() if k not in ("pendingInputs", "inFlightRun")}
                    self._last.update({k: v for k, v in answer.items() if k not in ("messages", "kind")})
                    return {**self._last, "messages": list(self._messages)}
                self.reads["reset"] += 1  # "reset" (or an answer without a kind): read the tail
        return self._tail()

    def _tail(self) -> dict[str, Any] | None:
        try:
            answer = self._request("chat.history", {"sessionKey": self.session_key, "limit": self.limit},
                                   timeout=10.0)
        except GatewayError as err:
            log.debug("chat.history failed: %s", err)
            return None
        if not isinstance(answer, dict):
            return None
        self.reads["tail"] += 1
        messages = answer.get("messages")
        self._messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        cursor = answer.get("deltaCursor")
        self._cursor = cursor if isinstance(cursor, str) and cursor else None
        self._last = {k: v for k, v in answer.items() if k != "messages"}
        return {**self._last, "messages": list(self._messages)}
