"""``gwclient watch``: stream snapshots, events, gaps and connection states until stopped.

With ``--json`` every push is one JSON object per line, the first connection's states
included; for people, one line per push, ``connecting``/``connected`` left out (the
``connected``/``reconnected`` snapshot line says it, with the phases of that connect from
the ``connected`` state change: TCP, TLS, upgrade, challenge, hello).  Either way an outage
is one line per *state*, not one per retry (:mod:`._outage`): the first ``reconnecting``
with its reason, another only when the reason changes, each with the retries so far and the
seconds since the drop; the ``reconnected`` line (``--json``: the ``connected`` state) gives
the totals.

A closed stdout reader (``gwclient watch | head -1``) ends the watch at once, without
waiting for the next push to fail its write (:mod:`._reader_gone`).
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
from ._invocation import Invocation, connection
from ._outage import StateFolding
from ._reader_gone import ReaderGone
from ._render import compact

__all__ = ["WatchView", "cmd_watch"]

_PAYLOAD_PREVIEW = 200  # characters of an event payload shown per human-readable line
_QUIET_STATES = frozenset({ConnectionState.CONNECTING, ConnectionState.CONNECTED})


class WatchView:
    """Formats pushes for ``watch``: one JSON object per line, or one human line each."""

    def __init__(self, session: Invocation) -> None:
        self.session = session
        self.snapshots = 0
        self.events = 0
        self.states = StateFolding()
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
            record = self.states.record(push, time.monotonic())
            if record is None:
                return  # a repeat within an outage: folded into the line already shown
            if not self.session.json and push.state in _QUIET_STATES:
                return  # the snapshot line ("connected"/"reconnected") says it
            detail = push.detail
            if "retries" in record and push.state == ConnectionState.RECONNECTING:
                detail += f"; retry {record['retries']}, {record['sinceDrop']:g} s since the drop"
            self._emit(record, f"state: {push.state.value}" + (f" ({detail})" if detail else ""))
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
        ended = self.states.ended
        if reconnected and ended is not None:
            human += f" (after {self.states.ended_seconds:g} s down, {ended.retries} retries)"
            self.states.ended = None
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


def cmd_watch(session: Invocation) -> int:
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
            with conn.subscribe(events) as sub, ReaderGone(_stdout_fd(session), sub.close) as reader:
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
                    try:
                        push = sub.get(timeout=left)
                    except ClientClosed:
                        if reader.gone.is_set():  # closed by ReaderGone: stdout's reader left
                            raise BrokenPipeError("stdout's reader closed") from None
                        raise
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


def _stdout_fd(session: Invocation) -> int | None:
    try:
        return session.out.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # not a real file (a test's capture)
