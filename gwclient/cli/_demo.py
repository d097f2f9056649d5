"""``gwclient demo``: the main job.

Three consumers in threads share ``GatewayConnection.shared(config)`` (a health poller, an
RPC user and an event watcher); the gateway restarts once midway; the report shows what
happened, above all that the gateway accepted exactly one socket per lifetime.  With no
``url`` it runs on an embedded :class:`~gwclient.testing.DevGateway` on a free loopback
port and a temporary device identity (removed at the end: the embedded demo leaves the
user's home untouched); with a ``url`` it uses that gateway (no restart: it is not ours
to restart) with the user's device identity, and counts this process's TCP connections
to it from the operating system.
"""

from __future__ import annotations

import collections
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from gwclient import (
    Disconnected,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    RetryPolicy,
    SeqGap,
    Snapshot,
    StateChange,
)

from ._netstat import gateway_connections

if TYPE_CHECKING:
    from gwclient.testing import DevGateway

__all__ = ["run_demo"]


@dataclass
class _Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    snapshots: int = 0
    gaps: int = 0
    states: list[str] = field(default_factory=list)
    max_os_connections: int = 0

    def ok(self, what: str) -> None:
        with self.lock:
            self.answered[what] += 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.failed[what] += 1


def _os_connections(port: int) -> int:
    """This process's ESTABLISHED connections to ``port``, as ``gwclient connections`` sees them."""
    report = gateway_connections(port)
    return sum(p.count for p in report.processes if p.pid == os.getpid())


def run_demo(*, out: TextIO, url: str | None = None, token: str | None = None, phase_seconds: float = 2.0) -> int:
    """Run the demo, print the report to ``out``; 0 when every invariant held."""
    if url is not None:
        print(f"gateway {url}", file=out)
        return _run(out, url, token, None, phase_seconds, state_dir=None)
    from gwclient.testing import DevGateway

    token = secrets.token_urlsafe(16)
    # A throwaway gateway gets a throwaway device identity: nothing is written to the
    # user's state dir (a device token keyed to a random port would only pile up there).
    with tempfile.TemporaryDirectory(prefix="gwclient-demo-") as state_dir:
        gateway = DevGateway(token=token, tick_interval_ms=500).start()
        print(f"embedded dev gateway on {gateway.url}", file=out)
        return _run(out, gateway.url, token, gateway, phase_seconds, state_dir=state_dir)


def _run(
    out: TextIO,
    url: str,
    token: str | None,
    gateway: DevGateway | None,
    phase_seconds: float,
    *,
    state_dir: str | None,
) -> int:
    config = GatewayConfig(
        url=url,
        token=token,
        retry=RetryPolicy(initial=0.1, maximum=1.0),
        request_timeout=5.0,
        connect_timeout=5.0,
        state_dir=state_dir,
    )
    tally = _Tally()
    stop = threading.Event()
    reconnected = threading.Event()
    started = time.monotonic()

    def guarded(name: str, call: str, params: object = None) -> None:
        try:
            GatewayConnection.shared(config).request(call, params)
            tally.ok(name)
        except (Disconnected, GatewayTimeout):
            tally.fail(name)  # in flight while the gateway restarted: expected, never replayed

    def poller() -> None:
        while not stop.wait(0.1):
            guarded("poller health", "health")

    def rpc_user() -> None:
        while not stop.wait(0.05):
            guarded("rpc status", "status")
            guarded("rpc system-presence", "system-presence")

    # Subscribed before connecting, so the watcher also sees what follows the first hello.
    subscription = GatewayConnection.shared(config).subscribe()

    def watcher() -> None:
        with subscription as sub:
            while not stop.is_set():
                try:
                    push = sub.get(timeout=0.2)
                except GatewayTimeout:
                    continue
                except GatewayError:
                    return
                with tally.lock:
                    if isinstance(push, Snapshot):
                        tally.snapshots += 1
                        if push.connection_number > 1:
                            reconnected.set()
                    elif isinstance(push, Event):
                        tally.events[push.event] += 1
                    elif isinstance(push, SeqGap):
                        tally.gaps += 1
                    elif isinstance(push, StateChange):
                        tally.states.append(push.state.value)

    port = config.port
    threads = [threading.Thread(target=f, name=f"demo-{f.__name__}") for f in (poller, rpc_user, watcher)]
    code = 1
    try:
        GatewayConnection.shared(config).connect()
        for thread in threads:
            thread.start()
        stop.wait(phase_seconds)
        tally.max_os_connections = max(tally.max_os_connections, _os_connections(port))
        if gateway is not None:
            print("restarting the gateway...", file=out)
            gateway.restart(restart_expected_ms=200)
            if not reconnected.wait(10):
                print("did not reconnect within 10 s", file=out)
            stop.wait(phase_seconds)
        else:
            stop.wait(phase_seconds)
        tally.max_os_connections = max(tally.max_os_connections, _os_connections(port))
        code = 0
    except GatewayError as exc:
        print(f"error: {exc}", file=out)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        GatewayConnection.shutdown_all()
        if gateway is not None:
            gateway.stop()
    return _report(out, tally, gateway, code, time.monotonic() - started)


_INTRO = (
    "An OpenClaw gateway is a server that AI-agent tools talk to over a websocket.  gwclient\n"
    "lets every part of a Python program share ONE websocket to it.  In this demo three parts\n"
    "of one program (three threads) use the gateway at the same time:"
)

#: What each consumer did, in one sentence (by tally name).
_WHAT = {
    "poller health": "asked `health` (is the gateway up?) every 0.1 s",
    "rpc status": "asked `status` (version, sessions, load) in a loop",
    "rpc system-presence": "asked `system-presence` (who is connected) in the same loop",
}


def _report(out: TextIO, tally: _Tally, gateway: DevGateway | None, code: int, elapsed: float) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    say(f"\nran {elapsed:.1f} s\n")
    say(_INTRO)
    for name in sorted(tally.answered.keys() | tally.failed.keys()):
        failed = tally.failed[name]
        note = (f" ({failed} failed in flight during the restart: a request the gateway may not have "
                "run fails with Disconnected and is never sent twice)") if failed else ""
        what = _WHAT.get(name, "")
        say(f"  {name:<22} answered {tally.answered[name]}{note}" + (f"  -- {what}" if what else ""))
    events = ", ".join(f"{name} {n}" for name, n in sorted(tally.events.items())) or "none"
    say(f"  {'watcher':<22} received events: {events}  -- what the gateway sends unasked "
        "(tick: a heartbeat; health; shutdown: the restart's notice)")
    if gateway is not None:
        say("The gateway was restarted midway (as when it is upgraded); nobody told the three parts.")
    say("\nWhat the result shows:")
    if gateway is not None:
        per_life = gateway.sockets_accepted_per_lifetime
        say(f"gateway lifetimes: {len(per_life)}; sockets accepted per lifetime: {per_life}")
        say(f"  -> the gateway ran {len(per_life)} time(s) (before and after the restart) and accepted "
            "one websocket each time: the three parts shared one, and reconnected once, together.")
        say(f"peak sockets open at once: {gateway.max_open_sockets}")
        if any(n != 1 for n in per_life) or gateway.max_open_sockets != 1:
            code = 1
    say(f"peak TCP connections from this process (OS count): {tally.max_os_connections}")
    say("  -> the operating system's own count of this program's connections to the gateway.")
    if tally.max_os_connections > 1:
        code = 1
    say(f"snapshots: {tally.snapshots}   seq gaps: {tally.gaps}")
    say("  -> on every (re)connect the watcher got a snapshot, a fresh copy of the gateway's state, and\n"
        "     events are numbered: a gap would have said some were lost.")
    say(f"states: {' -> '.join(tally.states) or 'none'}")
    say("  -> the connection's life as every part of the program sees it.")
    if gateway is not None and tally.snapshots != len(gateway.sockets_accepted_per_lifetime):
        code = 1
    if not tally.answered:
        code = 1
    say("OK: one gateway socket per process per lifetime" if code == 0 else "FAILED")
    return code
