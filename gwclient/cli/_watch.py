"""``gwclient watch``: stream snapshots, events, gaps and connection states until stopped.

With ``--json`` every push is one JSON object per line (every state change included);
for people, one line per push, and one line per reconnect attempt (the ``reconnecting``
state with its delay and reason; ``connecting``/``connected`` are left out: the
``reconnected`` snapshot line follows a successful attempt, with the phases of that
connect from the ``connected`` state change: TCP, TLS, upgrade, challenge, hello).
"""

from __future__ import annotations

import time
from typing import Any

from gwclient import (
    DEFAULT,
    ClientClosed,
    ConnectionState,
    Event,
    GatewayError,
    GatewayTimeout,
    Overflow,
    Push,
    SeqGap,
    Snapshot,
    StateChange,
)

from ._codes import EXIT_OK
from ._render import compact
from ._session import Session, connection

__all__ = ["WatchView", "cmd_watch"]

_PAYLOAD_PREVIEW = 200  # characters of an event payload shown per human-readable line
_QUIET_STATES = frozenset({ConnectionState.CONNECTING, ConnectionState.CONNECTED})


class WatchView:
    """Formats pushes for ``watch``: one JSON object per line, or one human line each."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.snapshots = 0
        self.events = 0
        self.phases: Any = None  # the ConnectPhases of the latest connect (its StateChange)

    def show(self, push: Push) -> None:
        if isinstance(push, Snapshot):
            self.snapshots += 1
            self._snapshot(push, reconnected=self.snapshots > 1)
        elif isinstance(push, Event):
            self.events += 1
            self._event(push)
        elif isinstance(push, SeqGap):
            self._emit({"type": "gap", "expected": push.expected, "received": push.received,
                        "missed": push.missed},
                       f"gap: expected seq {push.expected}, received {push.received} "
                       f"({push.missed} missed; re-read state)")
        elif isinstance(push, StateChange):
            if push.state == ConnectionState.CONNECTED:
                self.phases = push.phases  # shown on the snapshot line that follows
            if self.snapshots == 0 and push.state != ConnectionState.PAUSED:
                return  # the first connect's own states: its snapshot line says it all
            if not self.session.json and push.state in _QUIET_STATES:
                # One human line per retry: "reconnecting (retry in ...: why)" says it;
                # the attempt and its success (the "reconnected" snapshot line) need none.
                return
            detail = f" ({push.detail})" if push.detail else ""
            self._emit({"type": "state", "state": push.state.value, "detail": push.detail},
                       f"state: {push.state.value}{detail}")
        elif isinstance(push, Overflow):
            self._emit({"type": "overflow", "dropped": push.dropped},
                       f"overflow: {push.dropped} item(s) dropped (this watcher was too slow)")

    def _snapshot(self, push: Snapshot, *, reconnected: bool) -> None:
        hello = push.hello
        version = push.state_version
        about = f"connection {push.connection_number}"
        human = (f"{'reconnected' if reconnected else 'connected'} ({about}): gateway "
                 f"{hello.server.version or '?'}, protocol {hello.protocol}, state version "
                 f"presence {version.presence} health {version.health}")
        phases, self.phases = self.phases, None
        if phases is not None:
            human += f"; connect {phases.describe()}"
        self._emit(
            {
                "type": "snapshot",
                "connectPhases": None if phases is None else {
                    name: getattr(phases, name) for name in ("tcp", "tls", "upgrade", "challenge", "hello", "total")},
                "connection": push.connection_number,
                "reconnected": reconnected,
                "protocol": hello.protocol,
                "server": {"version": hello.server.version, "connId": hello.server.conn_id},
                "stateVersion": {"presence": version.presence, "health": version.health},
                "snapshot": hello.snapshot,
            },
            human,
        )
        if reconnected and self.session.json:
            self.session.note(f"reconnected ({about})")

    def _event(self, push: Event) -> None:
        record: dict[str, Any] = {"type": "event", "event": push.event, "seq": push.seq,
                                  "payload": push.payload}
        if push.state_version is not None:
            record["stateVersion"] = {"presence": push.state_version.presence,
                                      "health": push.state_version.health}
        preview = compact(push.payload)
        if len(preview) > _PAYLOAD_PREVIEW:
            preview = preview[: _PAYLOAD_PREVIEW - 3] + "..."
        seq = f" #{push.seq}" if push.seq is not None else ""
        self._emit(record, f"event {push.event}{seq} {preview}")

    def _emit(self, record: dict[str, Any], human: str) -> None:
        if self.session.json:
            self.session.print_json(record)
        else:
            self.session.print(f"{time.strftime('%H:%M:%S')} {human}")


def cmd_watch(session: Session) -> int:
    args = session.args
    config = session.config()
    events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else None
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    view = WatchView(session)

    def remaining() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    connected = False
    with connection(config) as conn:
        try:
            with conn.subscribe(events) as sub:
                # Subscribed before the handshake completes, so the events the gateway sends
                # right after hello-ok (health) are seen too; then wait for the connect, so
                # an unreachable gateway or bad credentials fail fast with one error line
                # instead of an endless stream of reconnecting states.
                left = remaining()
                conn.connect(timeout=DEFAULT if left is None else min(left, 2 * config.connect_timeout))
                connected = True
                while args.count is None or view.events < args.count:
                    left = remaining()
                    if left is not None and left <= 0:
                        raise GatewayTimeout("")
                    push = sub.get(timeout=left)
                    view.show(push)
                    if isinstance(push, StateChange) and push.state == ConnectionState.PAUSED:
                        # Reconnecting cannot help until something changes: say why and stop.
                        raise push.error if push.error is not None else GatewayError(
                            f"connection paused: {push.detail}"
                        )
        except GatewayTimeout:
            if not connected or deadline is None or time.monotonic() < deadline:
                raise  # connect() timed out: a real error
            if args.count is not None:
                raise GatewayTimeout(
                    f"watch ended after {args.timeout:g} s with {view.events} of {args.count} events"
                ) from None
        except ClientClosed:
            pass  # the subscription ended (shut down): nothing more will come
        except KeyboardInterrupt:
            session.note("stopped")  # Ctrl-C is how a watch normally ends: exit 0
    return EXIT_OK
