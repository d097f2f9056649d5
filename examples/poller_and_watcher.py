#!/usr/bin/env python3
"""A health poller and an event watcher in one process, sharing one gateway socket.

Two independent parts of a program each ask for ``GatewayConnection.shared(config)``;
they get the same object and the same websocket.  At the end the script asks the
operating system how many TCP connections this process holds to the gateway: one.

    OPENCLAW_GATEWAY_URL=... OPENCLAW_GATEWAY_TOKEN=... python examples/poller_and_watcher.py

Needs psutil (for that count), which the library itself does not: from a checkout,
``pip install -e '.[cli]'`` (or ``pip install psutil``).
"""

from __future__ import annotations

import os
import sys
import threading
import time

try:
    import psutil
except ImportError:
    sys.exit("poller_and_watcher.py needs psutil: pip install -e '.[cli]' from the checkout, or pip install psutil")

from gwclient import (
    ClientClosed,
    Event,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    GatewayTimeout,
    Snapshot,
)

POLLS = 10
POLL_INTERVAL = 0.2
WATCH_SECONDS = 3.0


def sockets_to(port: int) -> int:
    """ESTABLISHED TCP connections from this process to ``port``, as the OS sees them."""
    conns = psutil.Process(os.getpid()).net_connections(kind="inet")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def poller(config: GatewayConfig, stop: threading.Event, errors: list[BaseException]) -> None:
    conn = GatewayConnection.shared(config)  # the same object the watcher got
    try:
        for i in range(POLLS):
            health = conn.request("health", timeout=10)
            print(f"poller: health #{i + 1} {'ok' if health.get('ok') else 'not ok'}")
            if stop.wait(POLL_INTERVAL):
                return
    except GatewayError as exc:
        errors.append(exc)


def watcher(config: GatewayConfig, stop: threading.Event, errors: list[BaseException]) -> None:
    conn = GatewayConnection.shared(config)
    deadline = time.monotonic() + WATCH_SECONDS
    try:
        with conn.subscribe(include_state=False) as sub:
            while not stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
                try:
                    item = sub.get(timeout=min(remaining, 0.5))
                except GatewayTimeout:
                    continue
                if isinstance(item, Snapshot):
                    print(f"watcher: snapshot (connection {item.connection_number})")
                elif isinstance(item, Event):
                    print(f"watcher: event {item.event}")
    except ClientClosed:
        pass
    except GatewayError as exc:
        errors.append(exc)


def main() -> int:
    config = GatewayConfig.from_environment()
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=poller, args=(config, stop, errors), name="poller"),
        threading.Thread(target=watcher, args=(config, stop, errors), name="watcher"),
    ]
    for thread in threads:
        thread.start()
    threads[0].join()  # the poller finishes its rounds
    count = sockets_to(config.port)
    stop.set()
    threads[1].join()
    GatewayConnection.shared(config).shutdown()
    if errors:
        print(f"gateway error: {errors[0]}", file=sys.stderr)
        return 1
    print(f"sockets from this process to the gateway: {count}")
    return 0 if count == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
