"""``stats()`` and ``stats_all()`` for :class:`~gwclient.GatewayConnection` (a mixin; the
counters themselves are in :mod:`gwclient._stats`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._runtime import current_runtime
from ._stats import ConnectionStats, DropTally, idle_stats

if TYPE_CHECKING:
    from ._bus import Channel

__all__ = ["StatsMixin"]


class StatsMixin:
    """What the connection has done, as a frozen snapshot."""

    if TYPE_CHECKING:
        _bound: tuple[Any, Channel] | None
        _closed: bool
        _drops: DropTally

        @property
        def config(self) -> Any: ...

    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters (:class:`ConnectionStats`): state,
        connects and reconnects, requests, answers and errors by code, pending requests,
        events, gaps, dropped events, bytes, the last connect's phases, the last ping's
        round trip.  Cheap (a copy under the channel's lock), never blocks on the network,
        callable from any thread, also from gwclient's own.  The counters belong to the
        socket of the current config; they start again at zero when a config change moves
        this connection to another socket."""
        bound = self._bound
        if self._closed or bound is None:
            return idle_stats("closed" if self._closed else "idle")
        dropped = self._drops.total
        link = bound[1].link
        with link.locked():
            session = link.session
            return session.stats.snapshot(state=session.state.value, connection=session.connections,
                                          pending=len(session.pending) + len(session.waiting), dropped=dropped)

    @classmethod
    def stats_all(cls) -> dict[str, ConnectionStats]:
        """:meth:`stats` of every connection object of this process, keyed by its gateway's
        redacted URL (no credentials; a second connection object for the same URL, e.g. with
        another role, gets ``" #2"`` appended)."""
        rt = current_runtime()
        with rt.lock:
            facades = list(rt.facades.values())
        out: dict[str, ConnectionStats] = {}
        for conn in facades:
            bound = conn._bound if isinstance(conn, StatsMixin) else None
            if bound is None:
                continue
            key = url = bound[0].redacted_url
            n = 1
            while key in out:
                n += 1
                key = f"{url} #{n}"
            out[key] = conn.stats()
        return out
