"""How ``watch`` shows connection states: one line per state, not one per retry.

During an outage the channel goes ``reconnecting -> connecting -> reconnecting ...`` once
per attempt (every 0.2 s for a local gateway's restart window).  :class:`StateFolding`
turns that into one record per *distinct* state: the first ``reconnecting`` after the
drop, then another only when the reason changes (``connection refused`` -> ``gateway
starting``), each with the number of retries so far and the seconds since the drop;
the attempts' own ``connecting`` states are folded away, and the ``connected`` that ends
the outage carries the totals.  Outside an outage (the first connect, a pause, the
shutdown) every state change is a record.  Pure: the clock is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gwclient import ConnectionState, StateChange

__all__ = ["Outage", "StateFolding"]

_RETRY = re.compile(r"retry in (\d+(?:\.\d+)?) s: (.*)", re.S)


@dataclass
class Outage:
    """One outage: from the first ``reconnecting`` to the next ``connected``."""

    since: float  #: clock value of the drop
    retries: int = 0  #: ``reconnecting`` states so far (one per scheduled retry)
    reason: str | None = None  #: the reason of the last record shown

    def seconds(self, now: float) -> float:
        return round(max(0.0, now - self.since), 1)


class StateFolding:
    """Feed every :class:`StateChange` to :meth:`record`; it returns what to show, or
    ``None`` when the change is a repeat folded into the previous record."""

    def __init__(self) -> None:
        self.outage: Outage | None = None
        #: the outage the last ``connected`` ended (for the ``reconnected`` line)
        self.ended: Outage | None = None
        self.ended_seconds = 0.0

    def record(self, push: StateChange, now: float) -> dict[str, Any] | None:
        record: dict[str, Any] = {"type": "state", "state": push.state.value, "detail": push.detail}
        outage = self.outage
        if push.state == ConnectionState.RECONNECTING:
            if outage is None:
                outage = self.outage = Outage(since=now)
            outage.retries += 1
            match = _RETRY.fullmatch(push.detail)
            reason = match.group(2) if match else push.detail
            if reason == outage.reason:
                return None
            outage.reason = reason
            record.update(retries=outage.retries, sinceDrop=outage.seconds(now),
                          retryIn=float(match.group(1)) if match else None)
            return record
        if outage is None:
            return record
        if push.state == ConnectionState.CONNECTING:
            return None  # an attempt of the outage: its failure or success says more
        if push.state == ConnectionState.CONNECTED:
            self.outage, self.ended, self.ended_seconds = None, outage, outage.seconds(now)
        record.update(retries=outage.retries, sinceDrop=outage.seconds(now))
        return record
